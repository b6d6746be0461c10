"""The running set of models: their load state, and lookup by (name, task) for the services.

Tasks are resolved at start-up from config.json (cheap), so health and ListModels are right
before any weights load. Weights load one model at a time in a worker thread; a model that fails
is marked FAILED with its reason while the others serve.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..config import ModelSpec
from ..errors import FailedPrecondition, NotFound, Unavailable
from ..tasks import Task
from .loader import LoadedModel, ModelLoadError, load_model, read_architecture, resolve_tasks

log = logging.getLogger(__name__)


class ModelState(enum.Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass
class ModelEntry:
    spec: ModelSpec
    tasks: tuple[Task, ...]
    architecture: str
    state: ModelState = ModelState.LOADING
    error: str = ""
    loaded: LoadedModel | None = None


Loader = Callable[[ModelSpec], LoadedModel]


class ModelRegistry:
    def __init__(self, specs: tuple[ModelSpec, ...], loader: Loader = load_model) -> None:
        self._loader = loader
        self.entries: dict[str, ModelEntry] = {}
        for spec in specs:
            try:
                config, architecture = read_architecture(spec)
                entry = ModelEntry(spec, resolve_tasks(spec, architecture, config), architecture)
            except ModelLoadError as exc:
                entry = ModelEntry(spec, spec.tasks, "", ModelState.FAILED, str(exc))
                log.error("model %s failed: %s", spec.name, exc)
            self.entries[spec.name] = entry

    async def load_all(
        self, on_change: Callable[[], Awaitable[None]], on_loaded: Callable[[LoadedModel], None] | None = None
    ) -> None:
        """Load every LOADING entry in order, calling `on_change` after each settles.

        `on_loaded` runs in the loader thread right after a model loads, before it turns
        READY (the engines start there); an exception from it fails the model like a load
        error does."""
        for entry in self.entries.values():
            if entry.state is ModelState.LOADING:
                try:
                    entry.loaded = await asyncio.to_thread(self._load, entry.spec, on_loaded)
                    entry.tasks = entry.loaded.tasks
                    entry.state = ModelState.READY
                    log.info("model %s ready (%s)", entry.spec.name, ", ".join(t.value for t in entry.tasks))
                except Exception as exc:  # any failure isolates this model only
                    entry.state, entry.error = ModelState.FAILED, str(exc)
                    log.error("model %s failed to load: %s", entry.spec.name, exc)
            await on_change()

    def _load(self, spec: ModelSpec, on_loaded: Callable[[LoadedModel], None] | None) -> LoadedModel:
        model = self._loader(spec)
        if on_loaded is not None:
            on_loaded(model)
        return model

    def entry(self, name: str) -> ModelEntry:
        """The entry called `name`, or NOT_FOUND listing the models there are."""
        try:
            return self.entries[name]
        except KeyError:
            available = ", ".join(sorted(self.entries)) or "none"
            if not name:
                raise NotFound(f"model is required; available models: {available}") from None
            raise NotFound(f"model {name!r} not found; available models: {available}") from None

    def resolve(self, name: str, task: Task | None = None) -> LoadedModel:
        """A READY model that serves `task` (any task when None), or the right error."""
        entry = self.entry(name)
        if task is not None and task not in entry.tasks:
            tasks = ", ".join(t.value for t in entry.tasks) or "none"
            raise FailedPrecondition(f"model {name!r} cannot do {task.value}; its tasks are: {tasks}")
        if entry.state is ModelState.LOADING:
            raise Unavailable(f"model {name!r} is still loading; retry shortly")
        if entry.state is ModelState.FAILED or entry.loaded is None:
            raise FailedPrecondition(f"model {name!r} failed to load: {entry.error}")
        return entry.loaded

    def services_state(self, service_of_task: dict[Task, str]) -> dict[str, bool]:
        """Per gRPC service: serving once every model it depends on settled, one READY."""
        settled: dict[str, bool] = {}
        ready: dict[str, bool] = {}
        for entry in self.entries.values():
            for service in {service_of_task[t] for t in entry.tasks}:
                settled[service] = settled.get(service, True) and entry.state is not ModelState.LOADING
                ready[service] = ready.get(service, False) or entry.state is ModelState.READY
        return {s: settled[s] and ready[s] for s in settled}
