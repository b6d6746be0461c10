"""The model registry file (TOML) → validated, immutable dataclasses.

    [server]                     # optional; command-line flags override it
    host = "127.0.0.1"
    port = 50051
    core_threads = 8             # threads of the C++ decoding core per model (default: the
                                 #   cores this process may run on, its CPU affinity)
    torch_threads = 1            # torch's intra-op CPU threads (default: torch's own choice)

    [[models]]
    name = "tiny-llama"          # required, unique; what clients put in `model`
    path = "models/tiny-llama"   # required: local directory (relative to this file) or hub id
    tasks = ["generate"]         # optional: inferred from config.json "architectures"
    dtype = "auto"               # auto | float32 | float16 | bfloat16
    quantization = "none"        # none | int8 | nf4 | fp4 (bitsandbytes)
    device_map = "auto"          # optional: auto | balanced | balanced_low_0 | sequential |
                                 #   cpu | cuda | cuda:N | { module = device, ... }
    max_memory = { "0" = "20GiB", cpu = "64GiB" }
    kv_cache_reserve = "auto"    # auto | a size: memory kept free for the KV cache
    offload_folder = "offload"   # where disk-offloaded weights go (default: a temp dir)
    max_input_tokens = 2048      # limits; defaults derive from the model
    max_new_tokens = 512
    max_batch_size = 32
    ray_replicas = 2             # `tokenwire ray serve` only: Serve replicas (or ray_min_replicas
    ray_num_cpus = 1             #   + ray_max_replicas to autoscale), Ray CPUs / GPUs per replica
    ray_num_gpus = 0             #   (docs/ray.md)

Every problem is reported at once, each naming the model and the key, so a typo costs one
restart, not five. Unknown keys are errors (with a "did you mean" hint), never ignored.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .tasks import Task

QUANTIZATIONS = ("none", "int8", "nf4", "fp4")
DTYPES = ("auto", "float32", "float16", "bfloat16")
DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
_DEVICE_RE = re.compile(r"^(cpu|disk|cuda|cuda:\d+|\d+|mps)$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$", re.I)
_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


@dataclass(frozen=True)
class ModelSpec:
    """One `[[models]]` table, validated. Field docs are the README's config reference."""

    name: str
    path: str
    """Resolved local directory, or a hub id when `is_local` is false."""
    is_local: bool = True
    tasks: tuple[Task, ...] = ()
    """Empty means: infer from the checkpoint's architecture at load time."""
    dtype: str = "auto"
    quantization: str = "none"
    bnb_4bit_compute_dtype: str = "auto"
    bnb_4bit_use_double_quant: bool = False
    llm_int8_threshold: float = 6.0
    llm_int8_skip_modules: tuple[str, ...] | None = None
    device_map: str | Mapping[str, str] | None = None
    """None: the whole model on one device (the first GPU, else the CPU)."""
    max_memory: Mapping[str, int] | None = None
    """Bytes per device ("0", "1", …, "cpu", "disk")."""
    kv_cache_reserve: int | None = None
    """Bytes kept free for the KV cache of all layers; None: derived from max_batch_size and the
    context (see tokenwire.models.placement)."""
    offload_folder: str | None = None
    """Directory for disk-offloaded weights (resolved); None: a temporary directory."""
    max_input_tokens: int | None = None
    max_new_tokens: int = 256
    max_batch_size: int = 32
    max_batch_tokens: int = 16384
    """Most padded prompt tokens in one forward: a generation prefill, or a one-shot batch."""
    prefill_chunk_tokens: int = 2048
    """Generation: a prompt longer than this is prefilled this many tokens at a time, with a
    decode step of the running batch between chunks; 0: whole prompts in one forward."""
    max_wait_ms: float = 2.0
    """One-shot tasks: how long the first request of a batch waits for company."""
    cuda_graphs: bool = True
    """Generation on one GPU: decode steps replay CUDA graphs captured at load, per batch bucket."""
    max_queue: int = 256
    trust_remote_code: bool = False
    allow_pickle_weights: bool = False
    """Also load pickled (.bin / .pt) weights, which run code when loaded; off: safetensors only."""
    adapter: str | None = None
    """A LoRA adapter directory (peft), merged into the weights at load time."""
    revision: str | None = None
    # `tokenwire ray serve` only (the plain server ignores them): Serve replicas of this model,
    # a fixed count or autoscaling bounds, and the Ray resources each replica reserves.
    ray_replicas: int | None = None
    """None: `--replicas`, else 1."""
    ray_min_replicas: int | None = None
    ray_max_replicas: int | None = None
    """Both set: Serve autoscales the model between them (excludes `ray_replicas`)."""
    ray_num_cpus: float = 1.0
    ray_num_gpus: float = 0.0


@dataclass(frozen=True)
class ServerSpec:
    host: str = "127.0.0.1"
    port: int = 50051
    grace_period_s: float = 10.0
    max_receive_message_bytes: int = 64 * 2**20
    max_send_message_bytes: int = 64 * 2**20
    metrics_port: int | None = None
    """Prometheus /metrics on this port (same host); None = off, 0 = any free port."""
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    """With it, clients must present a certificate it signed (mutual TLS)."""
    auth_token_file: str | None = None
    auth_exempt: tuple[str, ...] = ("health", "reflection")
    """Services callable without a token when auth is on: any of health, reflection."""
    log_format: str = "text"
    max_image_bytes: int = 32 * 2**20
    """Largest encoded image accepted (Multimodal RPCs)."""
    max_image_pixels: int = 50_000_000
    """Largest decoded image (width × height): decompression bombs stop here."""
    max_image_aspect_ratio: float = 100.0
    max_images_per_request: int = 8
    core_threads: int | None = None
    """Threads of the C++ decoding core per generative model; None: the cores this process may
    run on (its CPU affinity, see tokenwire.engine.engines.available_cores)."""
    torch_threads: int | None = None
    """torch's intra-op threads for CPU forwards (torch.set_num_threads); None: torch's default
    (every core). Small models on a CPU serve faster with fewer: their ops are too small to
    share, and idle-spinning OpenMP threads take cores from the event loop."""


@dataclass(frozen=True)
class Config:
    server: ServerSpec = field(default_factory=ServerSpec)
    models: tuple[ModelSpec, ...] = ()


def parse_memory(value: object) -> int:
    """'20GiB' / '500MB' / 1234 → bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and (m := _MEMORY_RE.match(value)):
        return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    raise ValueError(f"must be a positive byte count or a size like '20GiB', got {value!r}")


class _Problems:
    """Collects problems under a location prefix, so every message names model and key."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")


def _check_keys(table: Mapping[str, Any], allowed: list[str], where: str, problems: _Problems) -> None:
    for key in table:
        if key not in allowed:
            hint = difflib.get_close_matches(key, allowed, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            problems.add(where, f"unknown key {key!r}{suggestion}; allowed keys: {', '.join(allowed)}")


def _typed(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ValueError(f"must be {what}, got {value!r}")
    if not isinstance(value, kind):
        raise ValueError(f"must be {what}, got {value!r}")
    return value


def _positive_int(value: Any) -> int:
    _typed(value, int, "a positive integer")
    if value <= 0:
        raise ValueError(f"must be a positive integer, got {value!r}")
    return int(value)


def _nonnegative_int(value: Any) -> int:
    _typed(value, int, "an integer >= 0")
    if value < 0:
        raise ValueError(f"must be an integer >= 0, got {value!r}")
    return int(value)


def _nonnegative_number(value: Any) -> float:
    _typed(value, (int, float), "a number >= 0")
    if value < 0:
        raise ValueError(f"must be a number >= 0, got {value!r}")
    return float(value)


def _positive_number(value: Any) -> float:
    _typed(value, (int, float), "a number > 0")
    if value <= 0:
        raise ValueError(f"must be a number > 0, got {value!r}")
    return float(value)


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {value!r}")
        return str(value)

    return check


def _tasks(value: Any) -> tuple[Task, ...]:
    _typed(value, list, "a list of task names")
    valid = [t.value for t in Task]
    out = []
    for item in value:
        if item not in valid:
            raise ValueError(f"unknown task {item!r}; tasks are {', '.join(valid)}")
        out.append(Task(item))
    if not out:
        raise ValueError("must not be empty (omit the key to infer tasks from the model)")
    return tuple(dict.fromkeys(out))


def _device_map(value: Any) -> str | dict[str, str]:
    if isinstance(value, str):
        if value in DEVICE_MAP_STRATEGIES or _DEVICE_RE.match(value):
            return value
        raise ValueError(
            f"must be one of {', '.join(DEVICE_MAP_STRATEGIES)}, a device "
            f"(cpu, cuda, cuda:N) or a table of module = device, got {value!r}"
        )
    _typed(value, dict, "a string or a table of module = device")
    out = {}
    for module, device in value.items():
        device = str(device)
        if not _DEVICE_RE.match(device):
            raise ValueError(f"device for module {module!r} must be cpu, disk, cuda:N or a GPU index, got {device!r}")
        out[str(module)] = device
    return out


def _max_memory(value: Any) -> dict[str, int]:
    _typed(value, dict, "a table of device = size")
    out = {}
    for device, size in value.items():
        if not _DEVICE_RE.match(str(device)):
            raise ValueError(f"device {device!r} must be cpu, disk or a GPU index")
        try:
            out[str(device)] = parse_memory(size)
        except ValueError as exc:
            raise ValueError(f"size for {device!r} {exc}") from None
    return out


def _kv_cache_reserve(value: Any) -> int | None:
    if value == "auto":
        return None
    if value == 0 and not isinstance(value, bool):
        return 0
    try:
        return parse_memory(value)
    except ValueError:
        raise ValueError(f"must be \"auto\", 0 or a size like '8GiB', got {value!r}") from None


# key → converter; the converter raises ValueError with a message that completes "<key> ...".
_MODEL_KEYS: dict[str, Callable[[Any], Any]] = {
    "name": lambda v: _typed(v, str, "a string"),
    "path": lambda v: _typed(v, str, "a string"),
    "tasks": _tasks,
    "dtype": _choice(DTYPES),
    "quantization": _choice(QUANTIZATIONS),
    "bnb_4bit_compute_dtype": _choice(DTYPES),
    "bnb_4bit_use_double_quant": lambda v: _typed(v, bool, "true or false"),
    "llm_int8_threshold": lambda v: float(_typed(v, (int, float), "a number")),
    "llm_int8_skip_modules": lambda v: tuple(_typed(v, list, "a list of module names")),
    "device_map": _device_map,
    "max_memory": _max_memory,
    "kv_cache_reserve": _kv_cache_reserve,
    "offload_folder": lambda v: _typed(v, str, "a directory path"),
    "max_input_tokens": _positive_int,
    "max_new_tokens": _positive_int,
    "max_batch_size": _positive_int,
    "max_batch_tokens": _positive_int,
    "prefill_chunk_tokens": lambda v: _nonnegative_int(v),
    "max_wait_ms": lambda v: _nonnegative_number(v),
    "cuda_graphs": lambda v: _typed(v, bool, "true or false"),
    "max_queue": _positive_int,
    "trust_remote_code": lambda v: _typed(v, bool, "true or false"),
    "allow_pickle_weights": lambda v: _typed(v, bool, "true or false"),
    "adapter": lambda v: _typed(v, str, "a directory path"),
    "revision": lambda v: _typed(v, str, "a string"),
    "ray_replicas": _positive_int,
    "ray_min_replicas": lambda v: _nonnegative_int(v),
    "ray_max_replicas": _positive_int,
    "ray_num_cpus": lambda v: _positive_number(v),
    "ray_num_gpus": lambda v: _nonnegative_number(v),
}
_SERVER_KEYS: dict[str, Callable[[Any], Any]] = {
    "host": lambda v: _typed(v, str, "a string"),
    "port": lambda v: _port(v),
    "grace_period_s": lambda v: float(_typed(v, (int, float), "a number of seconds")),
    "max_receive_message_bytes": parse_memory,
    "max_send_message_bytes": parse_memory,
    "metrics_port": lambda v: _port(v),
    "tls_cert": lambda v: _existing_file(v),
    "tls_key": lambda v: _existing_file(v),
    "tls_client_ca": lambda v: _existing_file(v),
    "auth_token_file": lambda v: _existing_file(v),
    "auth_exempt": lambda v: _exempt(v),
    "log_format": _choice(("text", "json")),
    "max_image_bytes": parse_memory,
    "max_image_pixels": _positive_int,
    "max_image_aspect_ratio": lambda v: max(1.0, _nonnegative_number(v)),
    "max_images_per_request": _positive_int,
    "core_threads": _positive_int,
    "torch_threads": _positive_int,
}


def _existing_file(value: Any) -> str:
    _typed(value, str, "a file path")
    if not Path(value).expanduser().is_file():
        raise ValueError(f"must be an existing file, got {value!r}")
    return str(Path(value).expanduser())


def _exempt(value: Any) -> tuple[str, ...]:
    _typed(value, list, "a list of service kinds")
    for item in value:
        if item not in ("health", "reflection"):
            raise ValueError(f"entries must be 'health' or 'reflection', got {item!r}")
    return tuple(value)


def _port(value: Any) -> int:
    _typed(value, int, "a port number in [0, 65535]")
    if not 0 <= value <= 65535:
        raise ValueError(f"must be in [0, 65535], got {value!r}")
    return int(value)


def _resolve_path(raw: str, base_dir: Path) -> tuple[str, bool]:
    """A local directory (absolute or relative to the config file), else a hub id."""
    candidate = Path(raw).expanduser()
    if not candidate.is_absolute():
        candidate = base_dir / candidate
    if candidate.is_dir():
        return str(candidate.resolve()), True
    looks_local = raw.startswith(("/", ".", "~")) or Path(raw).expanduser().is_absolute()
    if not looks_local and _HUB_ID_RE.match(raw):
        return raw, False
    raise ValueError(
        f"must be an existing directory or a hub id like 'org/name', got {raw!r} ({candidate} does not exist)"
    )


def _parse_model(index: int, table: Any, base_dir: Path, problems: _Problems) -> ModelSpec | None:
    where = f"models[{index}]"
    if not isinstance(table, dict):
        problems.add(where, "must be a table ([[models]])")
        return None
    if isinstance(table.get("name"), str):
        where = f"model {table['name']!r} (models[{index}])"
    _check_keys(table, list(_MODEL_KEYS), where, problems)
    values: dict[str, Any] = {}
    for key, convert in _MODEL_KEYS.items():
        if key in table:
            try:
                values[key] = convert(table[key])
            except (ValueError, TypeError) as exc:
                problems.add(f"{where}, key {key!r}", str(exc))
    for required in ("name", "path"):
        if required not in table:
            problems.add(where, f"missing required key {required!r}")
    if "name" in values and not _NAME_RE.match(values["name"]):
        problems.add(
            f"{where}, key 'name'",
            f"must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit, got {values['name']!r}",
        )
    if "path" in values:
        try:
            values["path"], values["is_local"] = _resolve_path(values["path"], base_dir)
        except ValueError as exc:
            problems.add(f"{where}, key 'path'", str(exc))
    if "offload_folder" in values:  # relative to the registry file, like 'path'; made at load time
        values["offload_folder"] = str((base_dir / Path(values["offload_folder"]).expanduser()).resolve())
    if "adapter" in values:
        adapter = Path(values["adapter"]).expanduser()
        adapter = adapter if adapter.is_absolute() else base_dir / adapter
        if adapter.is_dir():
            values["adapter"] = str(adapter.resolve())
        else:
            problems.add(f"{where}, key 'adapter'", f"must be an existing directory, got {values['adapter']!r}")
    for problem in _check_ray_keys(values):
        problems.add(where, problem)
    if "name" not in values or "path" not in values or "is_local" not in values:
        return None
    known = {f.name for f in fields(ModelSpec)}
    return ModelSpec(**{k: v for k, v in values.items() if k in known})


def _check_ray_keys(values: Mapping[str, Any]) -> list[str]:
    """Cross-key rules of the Ray keys: a fixed count or autoscaling bounds, not both."""
    autoscaling = [k for k in ("ray_min_replicas", "ray_max_replicas") if k in values]
    if autoscaling and "ray_replicas" in values:
        return [f"key 'ray_replicas' excludes {' and '.join(map(repr, autoscaling))} (fixed count or autoscaling)"]
    if len(autoscaling) == 1:
        other = ({"ray_min_replicas", "ray_max_replicas"} - set(autoscaling)).pop()
        return [f"key {autoscaling[0]!r} needs {other!r} (autoscaling bounds come in pairs)"]
    if autoscaling and values["ray_min_replicas"] > values["ray_max_replicas"]:
        return [
            f"key 'ray_min_replicas' must be <= 'ray_max_replicas', "
            f"got {values['ray_min_replicas']} > {values['ray_max_replicas']}"
        ]
    return []


def parse_config(data: Mapping[str, Any], base_dir: Path) -> Config:
    """Validate a parsed TOML document; raise ConfigError listing every problem."""
    problems = _Problems()
    _check_keys(data, ["server", "models"], "top level", problems)
    server_values: dict[str, Any] = {}
    server_table = data.get("server", {})
    if not isinstance(server_table, dict):
        problems.add("[server]", "must be a table")
        server_table = {}
    _check_keys(server_table, list(_SERVER_KEYS), "[server]", problems)
    for key, convert in _SERVER_KEYS.items():
        if key in server_table:
            try:
                server_values[key] = convert(server_table[key])
            except (ValueError, TypeError) as exc:
                problems.add(f"[server], key {key!r}", str(exc))
    models_raw = data.get("models", [])
    if not isinstance(models_raw, list) or not models_raw:
        problems.add("top level", "needs at least one [[models]] table")
        models_raw = [] if not isinstance(models_raw, list) else models_raw
    models = [m for i, t in enumerate(models_raw) if (m := _parse_model(i, t, base_dir, problems))]
    seen: set[str] = set()
    for spec in models:
        if spec.name in seen:
            problems.add(f"model {spec.name!r}", "key 'name' is used by more than one model")
        seen.add(spec.name)
    server = ServerSpec(**server_values)
    for problem in check_server(server):
        problems.add("[server]", problem)
    if problems.items:
        raise ConfigError(problems.items)
    return Config(server=server, models=tuple(models))


def check_server(server: ServerSpec) -> list[str]:
    """Cross-key rules of [server] (also applied after command-line overrides)."""
    problems = []
    if (server.tls_cert is None) != (server.tls_key is None):
        problems.append("keys 'tls_cert' and 'tls_key' must be given together")
    if server.tls_client_ca is not None and server.tls_cert is None:
        problems.append("key 'tls_client_ca' (mutual TLS) needs 'tls_cert' and 'tls_key'")
    return problems


def load_config(path: Path) -> Config:
    """Read and validate a registry file."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    return parse_config(data, path.resolve().parent)
