#!/usr/bin/env bash
# The GPU checks of issues 4 and 5 in one device call (docs/gpu.md says how to prepare .gpu/).
# Installs the carried wheels, builds tokenwire with the machine's own compiler and Python, then
# runs the jobs named on the command line, in order (default: load check):
#   load            bench/generate_load.py --device cuda --size 1b   (issue 4: engine vs generate())
#   profile         bench/step_profile.py: model step vs served step (batch 1 and $PROFILE_STREAMS
#                   streams, default 16), the engine's decode path, py-spy stacks of the server
#   eager           step_profile with cuda_graphs = false (the A/B for the graphs)
#   check[:CONFIGS] bench/gpu_check.py [--configs CONFIGS]           (issue 5: bf16/nf4/int8/split)
# Each writes its JSON under $OUT as soon as it has it, so a run cut short keeps what it measured;
# all logs go to $OUT/gpu_session.log (the device tool brings back at most 8 files).
# GPU_SESSION_BUDGET_S (default 530) bounds the whole script; run it with timeout_s ≥ that + 20.
set -u -o pipefail
OUT=${OUT:-/tmp/gpu-session}
mkdir -p "$OUT"
BUDGET=${GPU_SESSION_BUDGET_S:-530}
log() { echo "[gpu_session $SECONDS s] $*" | tee -a "$LOG"; }
left() { echo $((BUDGET - SECONDS)); }
cap() { local want=$1 have; have=$(left); echo $(( want < have ? want : have )); }

LOG="$OUT/gpu_session.log"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$LOG"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl || exit 1
cp -r .gpu/site/. /tmp/site/
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false PATH=$PATH:/tmp/site/bin
log "wheels in place; building"
if ! python3 -m pip install --no-build-isolation --no-deps --no-index -Cbuild-dir=/tmp/twbuild . >"$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"; exit 1
fi
python3 -c "import torch, transformers, bitsandbytes, grpc, tokenwire._core as c; print('torch', torch.__version__, 'transformers', transformers.__version__, 'bitsandbytes', bitsandbytes.__version__, 'grpc', grpc.__version__, 'core', c.__file__)" \
  | tee -a "$LOG" || exit 1
log "built"

jobs=("$@")
(( ${#jobs[@]} )) || jobs=(load check)
for job in "${jobs[@]}"; do
  if (( $(left) <= 10 )); then log "no time left for $job"; continue; fi
  case $job in
    load)
      timeout "$(cap 200)" python3 bench/generate_load.py --json --device cuda --size 1b --cache /tmp/bench-models \
        >"$OUT/generate_load_1b.json" 2>>"$LOG"
      log "generate_load rc=$?"; cat "$OUT/generate_load_1b.json" ;;
    profile)
      timeout "$(cap 120)" python3 bench/step_profile.py --steps 64 --streams "${PROFILE_STREAMS:-16}" \
        --out "$OUT/step_profile.json" >/dev/null 2>>"$LOG"
      log "step_profile rc=$?"; grep -o '"[a-z_0-9]*step_ms": [0-9.]*' "$OUT/step_profile.json" ;;
    eager)
      timeout "$(cap 120)" python3 bench/step_profile.py --steps 64 --streams "${PROFILE_STREAMS:-16}" --no-graphs \
        --out "$OUT/step_profile_eager.json" >/dev/null 2>>"$LOG"
      log "step_profile --no-graphs rc=$?"; grep -o '"[a-z_0-9]*step_ms": [0-9.]*' "$OUT/step_profile_eager.json" ;;
    check|check:*)
      configs=${job#check}; configs=${configs#:}
      deadline=$(( $(left) - 100 ))
      timeout "$(cap 600)" python3 bench/gpu_check.py --workdir /tmp/gpu-check --out "$OUT/gpu_check.json" \
        ${configs:+--configs "$configs"} --deadline-s $(( deadline > 1 ? deadline : 1 )) 2>>"$LOG" >/dev/null
      log "gpu_check rc=$?"; grep '^\[gpu_check\]' "$LOG" ;;
    *) log "unknown job $job" ;;
  esac
done
