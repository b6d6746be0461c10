"""The Serve application of a registry `Config`: one deployment per model, one ingress.

Per model, the deployment options come from its registry keys (`ray_replicas`, or
`ray_min_replicas` + `ray_max_replicas` for Serve's autoscaling; `ray_num_cpus`,
`ray_num_gpus`). A replica takes as many calls at once as the model's own admission does
(`max_batch_size` + `max_queue`), so tokenwire's scheduler batches them and answers
RESOURCE_EXHAUSTED past its queue, as the plain server does; Serve's router spreads calls over
the replicas by their in-flight counts.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve.config import gRPCOptions

from ..config import Config, ModelSpec
from ..services.multimodal import image_limits_from
from .ingress import Ingress
from .methods import SERVICER_FUNCTIONS
from .replica import ModelReplica

APP_NAME = "tokenwire"
_deployment: Any = serve.deployment  # its overloads hide `.options` from mypy
INGRESS_MAX_ONGOING = 4096
"""The ingress only routes; what bounds the work is each model's admission."""


def grpc_options(port: int) -> gRPCOptions:
    """Serve's gRPC proxy with tokenwire's services (reflection is registered by
    `proxy_services.add_reflection`, so Serve's own is off)."""
    return gRPCOptions(port=port, grpc_servicer_functions=list(SERVICER_FUNCTIONS), enable_reflection=False)


def deployment_options(spec: ModelSpec, replicas: int | None = None, grace_s: float = 10.0) -> dict[str, Any]:
    """Serve options of `spec`'s deployment; `replicas` (the CLI's --replicas) applies to the
    models whose registry entry sets no count of its own; `grace_s` is what calls in flight on
    a stopping replica get to finish ([server] grace_period_s)."""
    options: dict[str, Any] = {
        "name": f"model-{spec.name}",
        "graceful_shutdown_timeout_s": grace_s,
        "max_ongoing_requests": spec.max_batch_size + spec.max_queue,
        "ray_actor_options": {"num_cpus": spec.ray_num_cpus, "num_gpus": spec.ray_num_gpus},
    }
    if spec.ray_min_replicas is not None and spec.ray_max_replicas is not None:
        options["autoscaling_config"] = {
            "min_replicas": spec.ray_min_replicas,
            "max_replicas": spec.ray_max_replicas,
            "target_ongoing_requests": spec.max_batch_size,
        }
    else:
        options["num_replicas"] = spec.ray_replicas or replicas or 1
    return options


def build_app(config: Config, replicas: int | None = None) -> Any:
    """The bound application: `serve.run(build_app(config), name=APP_NAME)`."""
    limits = image_limits_from(config.server)
    models = {
        spec.name: _deployment(ModelReplica)
        .options(**deployment_options(spec, replicas, config.server.grace_period_s))
        .bind(spec, config.server.core_threads, limits)
        for spec in config.models
    }
    ingress = _deployment(Ingress).options(
        name="ingress", max_ongoing_requests=INGRESS_MAX_ONGOING, ray_actor_options={"num_cpus": 0.1}
    )
    return ingress.bind(models)
