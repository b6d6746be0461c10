"""One Scheduler per generative model, started on first use and closed on shutdown."""

from __future__ import annotations

import threading

from ..models.loader import LoadedModel
from ..tasks import Task
from .scheduler import Scheduler


class Engines:
    def __init__(self, core_threads: int = 1) -> None:
        self._core_threads = core_threads
        self._schedulers: dict[str, Scheduler] = {}
        self._lock = threading.Lock()

    def get(self, model: LoadedModel, task: Task = Task.GENERATE) -> Scheduler:
        """The scheduler decoding `model.modules[task]` (keyed "name", or "name:task" for
        tasks other than generate)."""
        key = model.spec.name if task is Task.GENERATE else f"{model.spec.name}:{task.value}"
        with self._lock:
            scheduler = self._schedulers.get(key)
            if scheduler is None or scheduler.model is not model:
                if scheduler is not None:
                    scheduler.close()
                scheduler = Scheduler(model, task, core_threads=self._core_threads)
                self._schedulers[key] = scheduler
            return scheduler

    def close(self) -> None:
        with self._lock:
            schedulers, self._schedulers = list(self._schedulers.values()), {}
        for scheduler in schedulers:
            scheduler.close()
