"""One Scheduler per generative model, started on first use and closed on shutdown."""

from __future__ import annotations

import threading

from ..models.loader import LoadedModel
from .scheduler import Scheduler


class Engines:
    def __init__(self, core_threads: int = 1) -> None:
        self._core_threads = core_threads
        self._schedulers: dict[str, Scheduler] = {}
        self._lock = threading.Lock()

    def get(self, model: LoadedModel) -> Scheduler:
        with self._lock:
            scheduler = self._schedulers.get(model.spec.name)
            if scheduler is None or scheduler.model is not model:
                scheduler = Scheduler(model, core_threads=self._core_threads)
                self._schedulers[model.spec.name] = scheduler
            return scheduler

    def close(self) -> None:
        with self._lock:
            schedulers, self._schedulers = list(self._schedulers.values()), {}
        for scheduler in schedulers:
            scheduler.close()
