"""Servers for tests: in-process on port 0 (protocol tests), or a real `tokenwire serve` subprocess."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from tokenwire.app import TokenwireServer
from tokenwire.config import Config, ServerSpec
from tokenwire.models.registry import ModelRegistry

T = TypeVar("T")


class InProcessServer:
    """A TokenwireServer on its own event loop in a background thread, bound to a free port."""

    def __init__(self, config: Config, registry_factory: Any = None, load: bool = True) -> None:
        self.config = Config(server=ServerSpec(host="127.0.0.1", port=0, grace_period_s=1.0), models=config.models)
        self._registry_factory = registry_factory
        self._load = load
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: TokenwireServer | None = None
        self.port = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> int:
        registry = self._registry_factory(self.config) if self._registry_factory else ModelRegistry(self.config.models)
        self.server = TokenwireServer(self.config, registry)
        port = await self.server.start()
        if self._load:
            await self.server.load_models()
        else:
            self.loading = asyncio.ensure_future(self.server.load_models())
        return port

    def start(self) -> InProcessServer:
        self._thread.start()
        self.port = self.run(self._start())
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.run(self.server.stop(0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def __enter__(self) -> InProcessServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServeProcess:
    """`tokenwire serve …` as a user runs it, on a free port read from its first line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.args = [str(Path(sys.executable).with_name("tokenwire")), "serve", "--port", "0", *args]
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.output: list[str] = []

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> ServeProcess:
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("server exited early:\n" + "".join(self.output))
            self.output.append(line)
            if m := re.search(r"serving on [\d.]+:(\d+)", line):
                self.port = int(m.group(1))
                threading.Thread(target=self._drain, daemon=True).start()
                return self
        raise TimeoutError("server did not start:\n" + "".join(self.output))

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def wait_serving(client: Any, service: str = "", timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.is_serving(service):
            return
        time.sleep(0.1)
    raise TimeoutError(f"health of {service!r} never turned SERVING")
