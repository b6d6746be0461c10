"""The grpc.aio server: services, health, reflection, the error interceptor, and shutdown.

Start-up order matters for clients that poll health: the port opens first with every service
NOT_SERVING, models load one by one in a worker thread, and each service turns SERVING once
its models have settled (at least one READY). On SIGTERM/SIGINT health turns NOT_SERVING
first (load balancers stop routing), then the server stops with a grace period for in-flight
calls (after `server.stop`, open health watches would get UNAVAILABLE at once).
"""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .config import Config
from .engine.engines import Engines
from .interceptor import ServerInterceptor
from .models.cuda_attention import configure_cuda_attention
from .models.registry import ModelRegistry, ModelState
from .reflection import enable_reflection
from .security import TokenAuth, server_credentials
from .services.generation import GenerationServicer
from .services.models import ModelsServicer
from .services.multimodal import MultimodalServicer, image_limits_from
from .services.understanding import UnderstandingServicer
from .tasks import SERVICE_OF_TASK
from .v1 import (
    generation_pb2,
    generation_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    multimodal_pb2,
    multimodal_pb2_grpc,
    understanding_pb2,
    understanding_pb2_grpc,
)

log = logging.getLogger(__name__)

MODELS_SERVICE = models_pb2.DESCRIPTOR.services_by_name["Models"].full_name
SERVICE_NAMES: tuple[str, ...] = (
    generation_pb2.DESCRIPTOR.services_by_name["Generation"].full_name,
    understanding_pb2.DESCRIPTOR.services_by_name["Understanding"].full_name,
    multimodal_pb2.DESCRIPTOR.services_by_name["Multimodal"].full_name,
    MODELS_SERVICE,
)
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class TokenwireServer:
    """One server process: build with a Config, `start()`, `load_models()`, `stop()`."""

    def __init__(self, config: Config, registry: ModelRegistry | None = None) -> None:
        self.config = config
        self.options = options = config.server
        self.registry = registry or ModelRegistry(config.models)
        self.health = health.aio.HealthServicer()
        self.engines = Engines(core_threads=options.core_threads)
        if options.torch_threads is not None:
            import torch

            torch.set_num_threads(options.torch_threads)  # process-wide: every model's CPU forwards
        self.port = 0
        auth = TokenAuth.from_file(options.auth_token_file, options.auth_exempt) if options.auth_token_file else None
        self.interceptor = ServerInterceptor(auth)
        self._server = grpc.aio.server(
            interceptors=[self.interceptor],
            options=[
                ("grpc.max_receive_message_length", options.max_receive_message_bytes),
                ("grpc.max_send_message_length", options.max_send_message_bytes),
                ("grpc.so_reuseport", 0),
            ],
        )
        models_pb2_grpc.add_ModelsServicer_to_server(ModelsServicer(self.registry, self.engines), self._server)
        generation_pb2_grpc.add_GenerationServicer_to_server(
            GenerationServicer(self.registry, self.engines), self._server
        )
        self.understanding = UnderstandingServicer(self.registry)
        understanding_pb2_grpc.add_UnderstandingServicer_to_server(self.understanding, self._server)
        self.multimodal = MultimodalServicer(self.registry, self.engines, image_limits_from(options))
        multimodal_pb2_grpc.add_MultimodalServicer_to_server(self.multimodal, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        enable_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server)

    async def start(self) -> int:
        """Open the port (health all NOT_SERVING) and return the bound port."""
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, _NOT_SERVING)
        address = f"{self.options.host}:{self.options.port}"
        if self.options.tls_cert and self.options.tls_key:
            credentials = server_credentials(self.options.tls_cert, self.options.tls_key, self.options.tls_client_ca)
            self.port = self._server.add_secure_port(address, credentials)
        else:
            self.port = self._server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot listen on {address}")
        await self._server.start()
        log.info("listening on %s:%d", self.options.host, self.port)
        return self.port

    async def load_models(self) -> None:
        """Load every model, updating health as each settles."""
        configure_cuda_attention()
        # Each model's engines start (their KV pools allocated) before it turns READY, so
        # health never reports a model serving whose pool could not be allocated.
        await self.registry.load_all(self._update_health, on_loaded=self.engines.start)

    async def _update_health(self) -> None:
        states = self.registry.services_state(SERVICE_OF_TASK)
        for service in SERVICE_NAMES:
            await self.health.set(service, _SERVING if states.get(service) else _NOT_SERVING)
        # The Models service answers as soon as the port is open; the server as a whole is
        # SERVING once no model is loading any more and at least one is ready.
        await self.health.set(MODELS_SERVICE, _SERVING)
        all_settled = all(e.state is not ModelState.LOADING for e in self.registry.entries.values())
        any_ready = any(e.state is ModelState.READY for e in self.registry.entries.values())
        await self.health.set("", _SERVING if all_settled and any_ready else _NOT_SERVING)

    async def stop(self, grace: float | None = None) -> None:
        """Health NOT_SERVING first, new calls UNAVAILABLE, then in-flight calls get the grace
        period to finish before the server stops."""
        await self.health.enter_graceful_shutdown()
        self.interceptor.draining = True
        await self._server.stop(self.options.grace_period_s if grace is None else grace)
        await asyncio.to_thread(self.engines.close)
        self.understanding.close()
        self.multimodal.close()

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()


async def serve(config: Config) -> None:
    """Run until SIGTERM/SIGINT, then drain and return (exit status 0)."""
    server = TokenwireServer(config)
    options = config.server
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    if options.metrics_port is not None:
        from .observability.metrics import serve_metrics

        metrics_port = serve_metrics(options.metrics_port, options.host)
        print(f"tokenwire metrics on http://{options.host}:{metrics_port}/metrics", flush=True)
    print(f"tokenwire serving on {options.host}:{server.port}", flush=True)
    loading = asyncio.create_task(server.load_models())
    await stop.wait()
    log.info("shutting down (grace %.1fs)", options.grace_period_s)
    loading.cancel()
    await server.stop()
