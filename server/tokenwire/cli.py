"""The `tokenwire` command: `serve`, `demo-models`, and client subcommands (see cli_client.py).

Heavy imports (torch, transformers) happen inside the subcommands that need them, so
`tokenwire --help` and the client commands start fast.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from pathlib import Path

from . import __version__
from .cli_client import add_client_commands
from .config import ServerSpec, parse_memory


def _positive_int(text: str) -> int:
    """argparse type for counts: an int > 0 (the [server] table's own rule)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _serve(args: argparse.Namespace) -> int:
    from .config import check_server, load_config
    from .errors import ConfigError
    from .observability.logs import configure_logging

    try:
        if args.config:
            config = load_config(Path(args.config))
        else:
            from .demo_config import demo_config

            config = demo_config(Path(args.demo_dir) if args.demo_dir else None)
    except ConfigError as exc:
        print(f"tokenwire: {exc}", file=sys.stderr)
        return 2
    overrides = {
        k: v
        for k, v in {
            "host": args.host,
            "port": args.port,
            "grace_period_s": args.grace_period,
            "max_receive_message_bytes": args.max_receive_message_bytes,
            "metrics_port": args.metrics_port,
            "tls_cert": args.tls_cert,
            "tls_key": args.tls_key,
            "tls_client_ca": args.tls_client_ca,
            "auth_token_file": args.auth_token_file,
            "log_format": args.log_format,
            "core_threads": args.core_threads,
            "torch_threads": args.torch_threads,
        }.items()
        if v is not None
    }
    config = dataclasses.replace(config, server=dataclasses.replace(config.server, **overrides))
    if problems := check_server(config.server):
        print(f"tokenwire: {ConfigError(problems)}", file=sys.stderr)
        return 2
    configure_logging(args.log_level, config.server.log_format)
    if not args.demo:
        from .models.loader import ModelLoadError, preflight

        problems = []
        for spec in config.models:
            try:
                preflight(spec)
            except ModelLoadError as exc:
                problems.append(str(exc))
        if problems:
            print(f"tokenwire: {ConfigError(problems)}", file=sys.stderr)
            return 2

    from .app import serve

    asyncio.run(serve(config))
    return 0


def _demo_models(args: argparse.Namespace) -> int:
    from .models.demo import DEMO_MODEL_NAMES, build_demo_models

    names = args.names or list(DEMO_MODEL_NAMES)
    unknown = sorted(set(names) - set(DEMO_MODEL_NAMES))
    if unknown:
        print(f"tokenwire: unknown demo models {unknown}; choose from {list(DEMO_MODEL_NAMES)}", file=sys.stderr)
        return 2
    for name, path in build_demo_models(Path(args.out), names).items():
        print(f"{name}\t{path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokenwire", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"tokenwire {__version__}")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="run the gRPC server",
        epilog="example:\n  tokenwire serve --demo --port 50051\n"
        "  tokenwire serve --config models.toml --metrics-port 9090",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = serve.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", metavar="FILE", help="model registry file (TOML)")
    source.add_argument("--demo", action="store_true", help="serve the built-in demo models")
    serve.add_argument(
        "--demo-dir", metavar="DIR", help="where demo models are built (default ~/.cache/tokenwire/demo-models)"
    )
    defaults = ServerSpec()
    serve.add_argument("--host", help=f"address to bind (default {defaults.host})")
    serve.add_argument("--port", type=int, help=f"port, 0 = any free one (default {defaults.port})")
    serve.add_argument(
        "--grace-period",
        type=float,
        metavar="SECONDS",
        help=f"time in-flight calls get on shutdown (default {defaults.grace_period_s})",
    )
    serve.add_argument(
        "--max-receive-message-bytes",
        type=parse_memory,
        metavar="SIZE",
        help="largest request accepted, e.g. 64MiB (default 64MiB)",
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics on this port (0 = any free one; default off)",
    )
    serve.add_argument("--tls-cert", metavar="PEM", help="server certificate chain (enables TLS)")
    serve.add_argument("--tls-key", metavar="PEM", help="server private key")
    serve.add_argument("--tls-client-ca", metavar="PEM", help="require client certificates signed by this CA (mTLS)")
    serve.add_argument(
        "--auth-token-file",
        metavar="FILE",
        help="require 'authorization: Bearer <token>' with a token from this file (one per line)",
    )
    serve.add_argument("--log-format", choices=["text", "json"], help="log line format (default text)")
    serve.add_argument(
        "--core-threads",
        type=_positive_int,
        metavar="N",
        help="threads of the C++ decoding core per generative model (default: the cores this process may run on)",
    )
    serve.add_argument(
        "--torch-threads",
        type=_positive_int,
        metavar="N",
        help="torch's intra-op CPU threads (default: torch's own, every core; 1 suits small models on a CPU)",
    )
    serve.set_defaults(func=_serve)

    demo = sub.add_parser(
        "demo-models",
        help="build the tiny demo models into a directory",
        epilog="example:\n  tokenwire demo-models --out ./demo-models tiny-llama tiny-bert",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--out", required=True, metavar="DIR")
    demo.add_argument("names", nargs="*", help="which demo models (default: all)")
    demo.set_defaults(func=_demo_models)

    add_client_commands(sub)
    from .ray.cli import add_ray_command

    add_ray_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .observability.logs import configure_logging

    configure_logging(args.log_level)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
