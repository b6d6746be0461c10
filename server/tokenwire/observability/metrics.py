"""Prometheus metrics (served on --metrics-port). Names are documented in the README.

One process-wide registry: the servicers, the interceptor and the schedulers record into it
from any thread (prometheus_client is thread-safe).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

REGISTRY = CollectorRegistry(auto_describe=True)
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_TOKEN_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5)

REQUESTS = Counter(
    "tokenwire_requests_total",
    "RPCs answered, by RPC, model and status code",
    ["rpc", "model", "code"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "tokenwire_request_duration_seconds", "End-to-end RPC time", ["rpc", "model"], buckets=_LATENCY, registry=REGISTRY
)
QUEUE_SECONDS = Histogram(
    "tokenwire_queue_seconds",
    "Time a generation waited before its prefill",
    ["model"],
    buckets=_LATENCY,
    registry=REGISTRY,
)
TTFT_SECONDS = Histogram(
    "tokenwire_time_to_first_token_seconds",
    "Arrival to first generated token",
    ["model"],
    buckets=_LATENCY,
    registry=REGISTRY,
)
ITL_SECONDS = Histogram(
    "tokenwire_inter_token_latency_seconds",
    "Time between a sequence's tokens",
    ["model"],
    buckets=_TOKEN_LATENCY,
    registry=REGISTRY,
)
STEP_SECONDS = Histogram(
    "tokenwire_step_seconds",
    "Scheduler work by phase: prefill, prefill_chunk and forward (a decode step's "
    "forward pass, logits on the host included) run the model; select runs the "
    "decoding core and emits the tokens",
    ["model", "phase"],
    buckets=(*_TOKEN_LATENCY, 5, 10, 30),
    registry=REGISTRY,
)
BATCH_ROWS = Histogram(
    "tokenwire_batch_rows",
    "Rows in each decode step",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
    registry=REGISTRY,
)
PROMPT_TOKENS = Counter("tokenwire_prompt_tokens_total", "Prompt tokens prefilled", ["model"], registry=REGISTRY)
GENERATED_TOKENS = Counter("tokenwire_generated_tokens_total", "Tokens generated", ["model"], registry=REGISTRY)
FINISH_REASONS = Counter(
    "tokenwire_finish_reasons_total", "Sequences ended, by finish reason", ["model", "reason"], registry=REGISTRY
)
ACTIVE_REQUESTS = Gauge("tokenwire_active_requests", "Requests being decoded", ["model"], registry=REGISTRY)
WAITING_REQUESTS = Gauge("tokenwire_waiting_requests", "Requests queued for a batch slot", ["model"], registry=REGISTRY)
KV_CACHE_TOKENS = Gauge(
    "tokenwire_kv_cache_tokens",
    "KV pool tokens by state: used (held by running sequences) and capacity",
    ["model", "state"],
    registry=REGISTRY,
)


class _GpuMemory:
    """tokenwire_gpu_memory_bytes{device, kind} read at scrape time: "allocated" and "reserved"
    now, and "peak_allocated" since the process started — what the models' weights plus their
    serving reservation (GetModelInfo) must cover."""

    def collect(self):  # type: ignore[no-untyped-def]
        import torch

        family = GaugeMetricFamily("tokenwire_gpu_memory_bytes", "CUDA memory per device", labels=["device", "kind"])
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                family.add_metric([f"cuda:{i}", "allocated"], torch.cuda.memory_allocated(i))
                family.add_metric([f"cuda:{i}", "reserved"], torch.cuda.memory_reserved(i))
                family.add_metric([f"cuda:{i}", "peak_allocated"], torch.cuda.max_memory_allocated(i))
        yield family


REGISTRY.register(_GpuMemory())


def serve_metrics(port: int, host: str = "127.0.0.1") -> int:
    """Start the /metrics HTTP endpoint; returns the bound port (0 picks a free one)."""
    server, _ = start_http_server(port, addr=host, registry=REGISTRY)
    return int(server.server_address[1])
