"""`tokenwire ray serve`: deploy the registry on a Ray cluster behind Serve's gRPC proxy.

With `--address` it joins that cluster and, on SIGTERM/SIGINT, drains and deletes its own
application only; without it, it starts a local cluster that it owns, and stops Serve and the
cluster on exit. Shutdown order: the ingress turns health NOT_SERVING and new calls UNAVAILABLE,
then the application is deleted, which gives calls in flight `grace_period_s` to finish on each
replica before it stops.

Ray is imported only when the command runs, so the rest of the CLI works without the extra.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from ..config import Config

SERVE_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0"}
"""Serve's throughput profile (user code on the replica's own event loop, buffered request
logs, gRPC between deployments), keeping its proxies (direct ingress off): about twice the
tokens/s of Serve's defaults through the proxy (docs/ray.md). Read by every Ray process when it
starts, so it is set here for the local cluster this command starts; on a cluster of your own,
`ray start` needs it in its environment. A value already set wins."""

MISSING_RAY = "tokenwire: `tokenwire ray serve` needs Ray Serve: pip install 'tokenwire[ray]'"


def _load(args: argparse.Namespace) -> Config | None:
    from ..errors import ConfigError

    try:
        if args.config:
            from ..config import load_config

            return load_config(Path(args.config))
        from ..demo_config import demo_config

        return demo_config(Path(args.demo_dir) if args.demo_dir else None)
    except ConfigError as exc:
        print(f"tokenwire: {exc}", file=sys.stderr)
        return None


def _ray_serve(args: argparse.Namespace) -> int:
    config = _load(args)
    if config is None:
        return 2
    try:
        import ray
        from ray import serve
        from ray.serve.config import HTTPOptions, ProxyLocation
    except ImportError:
        print(MISSING_RAY, file=sys.stderr)
        return 2
    from .app import APP_NAME, build_app, grpc_options

    owns_cluster = args.address is None
    for key, value in SERVE_ENV.items():
        os.environ.setdefault(key, value)
    if owns_cluster:
        ray.init(include_dashboard=False)
    else:
        ray.init(address=args.address)
    # After ray.init, which installs a SIGTERM handler of its own (log and die).
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(
            http_options=HTTPOptions(host=args.host, port=args.http_port),
            grpc_options=grpc_options(args.port),
            proxy_location=ProxyLocation(args.proxy_location),
        )
        serve.run(build_app(config, args.replicas), name=APP_NAME)
        print(f"tokenwire serving on {args.host}:{args.port} (Ray Serve gRPC proxy)", flush=True)
        while not stop.wait(1.0):
            pass
        print("tokenwire: draining", flush=True)
        _drain(serve, APP_NAME)
        serve.delete(APP_NAME)
        if owns_cluster:
            serve.shutdown()  # type: ignore[no-untyped-call]
    finally:
        ray.shutdown()
    return 0


def _drain(serve: Any, app_name: str) -> None:
    """Health NOT_SERVING and new calls UNAVAILABLE before replicas start stopping."""
    try:
        serve.get_app_handle(app_name).drain.remote().result(timeout_s=10)
    except Exception as exc:  # the app may already be gone; deletion still follows
        print(f"tokenwire: could not drain the ingress: {exc}", file=sys.stderr)


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def add_ray_command(sub: Any) -> None:
    """Register `tokenwire ray serve` on the top-level subparsers."""
    group = sub.add_parser(
        "ray",
        help="run on a Ray cluster (Ray Serve; needs the 'ray' extra)",
        epilog="example:\n  tokenwire ray serve --demo --port 50051",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ray_sub = group.add_subparsers(dest="ray_command", required=True, metavar="COMMAND")
    serve = ray_sub.add_parser(
        "serve",
        help="deploy the models on Ray Serve behind its gRPC proxy",
        epilog="example:\n  tokenwire ray serve --demo --port 50051\n"
        "  tokenwire ray serve --config models.toml --address head:6379 --port 50051 --replicas 2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = serve.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", metavar="FILE", help="model registry file (TOML)")
    source.add_argument("--demo", action="store_true", help="serve the built-in demo models")
    serve.add_argument("--demo-dir", metavar="DIR", help="where demo models are built")
    serve.add_argument("--port", type=int, default=50051, help="gRPC port of Serve's proxies (default 50051)")
    serve.add_argument(
        "--address", metavar="HOST:PORT", help="join this Ray cluster (default: start a local one, stopped on exit)"
    )
    serve.add_argument(
        "--replicas", type=_positive_int, metavar="N", help="replicas of models that set no ray_replicas (default 1)"
    )
    serve.add_argument("--host", default="0.0.0.0", help="HTTP host of Serve's proxies (gRPC binds every interface)")
    serve.add_argument("--http-port", type=int, default=8000, help="HTTP port of Serve's proxies (default 8000)")
    serve.add_argument(
        "--proxy-location",
        choices=["EveryNode", "HeadOnly"],
        default="EveryNode",
        help="where Serve runs proxies (default EveryNode; HeadOnly for several nodes on one machine)",
    )
    serve.set_defaults(func=_ray_serve)
