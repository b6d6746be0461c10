"""Run the ghz load configs of this directory against a tokenwire server.

    .venv/bin/python bench/ghz/run.py                      # every config, reflection and protoset
    .venv/bin/python bench/ghz/run.py --smoke              # short runs, zero errors required
    .venv/bin/python bench/ghz/run.py --target HOST:PORT models-tokenize generation-generate

Without --target it starts `tokenwire serve --demo --port 0` itself (demo models built into
--demo-dir) and stops it at the end. Each config (NAME.json, ghz's own config format) holds
the call, the load shape and a data template that varies prompts per request; --total,
--concurrency and --duration override the load shape. Each run is made once per --modes
entry: `reflection` (ghz asks the server for the descriptors) and `protoset` (ghz reads a
FileDescriptorSet compiled here from proto/). A JSON report per run lands in --report-dir.

Exit status: 1 when a run fails to start, or (with --smoke, or --require-ok) when any call
of a run does not end OK. Configs whose name ends in "-first-token" cancel each stream
after its first message by design; their CANCELLED results are expected and they are left
out of --smoke.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
EXPECTED_CANCEL_SUFFIX = "-first-token"


def build_protoset(out: Path) -> Path:
    """Compile proto/ into a FileDescriptorSet (imports included) with grpcio-tools' protoc."""
    out.parent.mkdir(parents=True, exist_ok=True)
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{ROOT / 'proto'}",
            "--include_imports",
            f"--descriptor_set_out={out}",
            *protos,
        ],
        check=True,
        cwd=ROOT / "proto",
    )
    return out


class DemoServer:
    """`tokenwire serve --demo --port 0`, stopped with SIGTERM."""

    def __init__(self, tokenwire: str, demo_dir: str) -> None:
        self.log = tempfile.NamedTemporaryFile("w+", prefix="tokenwire-ghz-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [tokenwire, "serve", "--demo", "--demo-dir", demo_dir, "--host", "127.0.0.1", "--port", "0"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.target = ""

    def wait(self, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = Path(self.log.name).read_text(errors="replace")
            if m := re.search(r"tokenwire serving on ([\d.]+):(\d+)", text):
                self.target = f"{m.group(1)}:{m.group(2)}"
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"tokenwire serve exited:\n{text}")
            time.sleep(0.1)
        else:
            raise TimeoutError("tokenwire serve printed no serving line")
        wait_serving(self.target, deadline - time.monotonic())
        return self.target

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        os.unlink(self.log.name)


def wait_serving(target: str, timeout: float) -> None:
    """Health of "" turns SERVING once every model has settled."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                if (
                    stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise TimeoutError(f"health of {target} never turned SERVING")


def run_ghz(
    ghz: str, config: Path, mode: str, protoset: Path | None, target: str, overrides: list[str], timeout: float
) -> dict[str, Any]:
    cmd = [ghz, "--config", str(config), "-O", "json", *overrides]
    if mode == "protoset":
        assert protoset is not None
        cmd += ["--protoset", str(protoset)]
    cmd.append(target)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    try:
        report: dict[str, Any] = json.loads(proc.stdout)
    except json.JSONDecodeError:
        message = (proc.stdout + proc.stderr).strip()
        return {"failed": message or f"ghz exited {proc.returncode}"}
    return report


def summarize(name: str, mode: str, r: dict[str, Any]) -> str:
    if "failed" in r:
        return f"{name:<42} {mode:<10} FAILED: {r['failed'][:300]}"
    lat = {d["percentage"]: d["latency"] / 1e6 for d in r.get("latencyDistribution") or []}
    codes = ", ".join(f"{k} {v}" for k, v in sorted((r.get("statusCodeDistribution") or {}).items()))
    return (
        f"{name:<42} {mode:<10} {r['count']:>6} calls {r['rps']:>8.1f}/s  "
        f"p50 {lat.get(50, 0):7.2f} ms  p90 {lat.get(90, 0):7.2f} ms  p99 {lat.get(99, 0):7.2f} ms  [{codes}]"
    )


def all_ok(r: dict[str, Any]) -> bool:
    codes = r.get("statusCodeDistribution") or {}
    return "failed" not in r and r.get("count", 0) > 0 and set(codes) == {"OK"} and not r.get("errorDistribution")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("configs", nargs="*", help="config names (default: every *.json here)")
    p.add_argument("--target", help="HOST:PORT of a running server (default: start the demo server)")
    p.add_argument("--modes", default="reflection,protoset", help="comma-separated: reflection, protoset")
    p.add_argument(
        "--smoke", action="store_true", help="short runs (-n 24 -c 4 unless overridden), zero errors required"
    )
    p.add_argument("--require-ok", action="store_true", help="fail unless every call of every run is OK")
    p.add_argument("--skip", default="", help="comma-separated config names (or prefixes ending in *) to leave out")
    p.add_argument("--total", type=int, help="override each config's total calls")
    p.add_argument("--concurrency", type=int, help="override each config's concurrency")
    p.add_argument("--duration", help="run each config for this long instead (e.g. 10s)")
    p.add_argument("--ghz", default=str(ROOT / "build/tools/bin/ghz"))
    p.add_argument("--tokenwire", default=str(Path(sys.executable).with_name("tokenwire")))
    p.add_argument("--demo-dir", default=str(ROOT / "build/demo-models"))
    p.add_argument("--report-dir", default=str(ROOT / "build/ghz/reports"))
    p.add_argument(
        "--stream-load",
        metavar="ARGS",
        default=None,
        help="then run bench/stream_load.py against the same server with these arguments",
    )
    args = p.parse_args(argv)

    names = args.configs or sorted(c.stem for c in HERE.glob("*.json"))
    skips = [s.strip() for s in args.skip.split(",") if s.strip()]
    if args.smoke:
        skips.append("*" + EXPECTED_CANCEL_SUFFIX)

    def skipped(name: str) -> bool:
        return any(
            name == s or (s.endswith("*") and name.startswith(s[:-1])) or (s.startswith("*") and name.endswith(s[1:]))
            for s in skips
        )

    names = [n for n in names if not skipped(n)]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if unknown := set(modes) - {"reflection", "protoset"}:
        p.error(f"unknown modes {sorted(unknown)}")
    overrides: list[str] = []
    total = args.total if args.total is not None else (24 if args.smoke and not args.duration else None)
    concurrency = args.concurrency if args.concurrency is not None else (4 if args.smoke else None)
    if total is not None:
        overrides += ["-n", str(total)]
    if concurrency is not None:
        overrides += ["-c", str(concurrency)]
    if args.duration:
        overrides += ["-z", args.duration]

    report_dir = Path(args.report_dir).resolve()  # protoc runs in proto/: no relative output path
    report_dir.mkdir(parents=True, exist_ok=True)
    protoset = build_protoset(report_dir.parent / "tokenwire.protoset") if "protoset" in modes else None

    server = None
    target = args.target
    if target is None:
        server = DemoServer(args.tokenwire, args.demo_dir)
    failures: list[str] = []
    results: list[tuple[str, dict[str, Any]]] = []
    try:
        if server is not None:
            target = server.wait()
            print(f"tokenwire demo server on {target}", flush=True)
        assert target is not None
        for name in names:
            for mode in modes:
                r = run_ghz(args.ghz, HERE / f"{name}.json", mode, protoset, target, overrides, timeout=900)
                (report_dir / f"{name}.{mode}.json").write_text(json.dumps(r, indent=1))
                results.append((mode, r))
                print(summarize(name, mode, r), flush=True)
                if "failed" in r or ((args.smoke or args.require_ok) and not all_ok(r)):
                    failures.append(f"{name} ({mode})")
        if args.stream_load is not None:
            cmd = [sys.executable, str(ROOT / "bench/stream_load.py"), "--target", target, *args.stream_load.split()]
            print("$ " + " ".join(cmd[1:]), flush=True)
            if subprocess.run(cmd).returncode != 0:
                failures.append("stream_load.py")
    finally:
        if server is not None:
            server.stop()
    if failures:
        print(f"FAILED: {', '.join(failures)}", file=sys.stderr)
        if any(mode == "reflection" and "Symbol not found" in r.get("failed", "") for mode, r in results):
            print(
                "note: 'Symbol not found' by reflection means the server could not resolve a method's full"
                " name (grpcio-reflection over the upb descriptor pool knows services and messages only);"
                " see docs/clients.md, 'Reflection'",
                file=sys.stderr,
            )
        return 1
    print(f"ghz: {len(names) * len(modes)} runs OK; reports in {report_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
