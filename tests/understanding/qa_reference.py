"""The reference for AnswerQuestion: transformers 4.57's question-answering pipeline, run live.

transformers 5 (which tokenwire needs) removed that pipeline, so 4.57 — its last release with
it — is installed with pip, without its dependencies, into a side folder,
build/reference/transformers-4.57: torch, numpy, safetensors and the rest come from the venv. The reference
(make_qa_golden.py) then runs in a subprocess with that folder first on PYTHONPATH, so it never
sees transformers 5 or imports tokenwire.

The install is done once: a stamp in the folder names what was installed, and a folder whose
stamp matches is reused (pip's cache makes a reinstall cheap too). It is built in a temporary
folder and renamed into place, so a half-done install is never used; a lock file beside it makes
two pytest processes that race install it once. By hand:

    .venv/bin/python tests/understanding/qa_reference.py     # installs, prints the folder
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SIDE_DIR = REPO / "build" / "reference" / "transformers-4.57"
STAMP = "tokenwire-reference.stamp"

# Exact pins keep the reference the same from run to run. transformers 4.57 needs
# huggingface_hub < 1.0 and tokenizers < 0.23 (older than the venv's), and that
# huggingface_hub imports requests; everything else it imports is in the venv already.
REQUIREMENTS = (
    "transformers==4.57.6",
    "huggingface_hub==0.36.2",
    "tokenizers==0.22.2",
    "requests==2.34.2",
    "urllib3==2.8.0",
    "charset_normalizer==3.5.3",
    "certifi==2026.10.19.post1",
)


class ReferenceUnavailable(RuntimeError):
    """The side install or the reference run failed; the message says why and what to do."""


def _stamp_text() -> str:
    # tokenizers is a compiled wheel: a folder made for another Python or platform is stale.
    tags = {"requirements": list(REQUIREMENTS), "python": sys.implementation.cache_tag}
    return json.dumps({**tags, "platform": sysconfig.get_platform()}, sort_keys=True) + "\n"


def _is_current(folder: Path) -> bool:
    try:
        return (folder / STAMP).read_text() == _stamp_text()
    except OSError:
        return False


def ensure_side_install(side_dir: Path = SIDE_DIR) -> Path:
    """The side folder with transformers 4.57, installed unless a current one is already there."""
    if _is_current(side_dir):
        return side_dir
    side_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(side_dir.with_name(f".{side_dir.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a racing process waits here, then finds the folder current
        if not _is_current(side_dir):
            _install(side_dir)
    return side_dir


def _install(side_dir: Path) -> None:
    tmp = side_dir.with_name(f".{side_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    stale = side_dir.with_name(f".{side_dir.name}.stale-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    command = [sys.executable, "-m", "pip", "install", "--target", str(tmp), "--no-deps", "--only-binary=:all:"]
    command += ["--disable-pip-version-check", "--no-input", "--retries", "2", "--timeout", "30", *REQUIREMENTS]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise ReferenceUnavailable(
                f"could not install the AnswerQuestion reference (transformers 4.57) into {side_dir}: "
                f"`pip install` exited {done.returncode}. It needs PyPI (or pip's cache) once; "
                f"then the folder is reused.\n{' '.join(command)}\n{(done.stdout + done.stderr)[-3000:]}"
            )
        (tmp / STAMP).write_text(_stamp_text())
        if side_dir.exists():  # stale (or half-removed by hand): moved aside, so the swap is two renames
            side_dir.rename(stale)
        tmp.rename(side_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(stale, ignore_errors=True)


def reference_answers(models_dir: Path, out: Path, side_dir: Path = SIDE_DIR) -> dict[str, Any]:
    """make_qa_golden.py's answers for every case in qa_cases.CASES on `models_dir`, computed by
    transformers 4.57 in a subprocess and written to `out` (JSON, also returned)."""
    side = ensure_side_install(side_dir)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(side), str(HERE)]), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, str(HERE / "make_qa_golden.py"), str(models_dir), str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise ReferenceUnavailable(
            f"the AnswerQuestion reference (make_qa_golden.py under {side}) exited {done.returncode}:\n"
            f"{(done.stdout + done.stderr)[-3000:]}"
        )
    result: dict[str, Any] = json.loads(out.read_text())
    return result


if __name__ == "__main__":
    try:
        print(ensure_side_install())
    except ReferenceUnavailable as exc:
        sys.exit(str(exc))
