"""One Scheduler per generative model, started when the model loads (so its KV pool is
allocated before the model serves) and closed on shutdown."""

from __future__ import annotations

import os
import threading

from ..models.loader import LoadedModel
from ..tasks import Task
from .decode_info import DecodeInfo
from .scheduler import Scheduler

GENERATIVE_TASKS = (Task.GENERATE, Task.MULTIMODAL_CHAT)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), not the machine's count."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity API (macOS)
        return max(1, os.cpu_count() or 1)


class Engines:
    def __init__(self, core_threads: int | None = None) -> None:
        """`core_threads`: threads of the C++ decoding core per model (None: every core this
        process may run on)."""
        self.core_threads = core_threads or available_cores()
        self._schedulers: dict[str, Scheduler] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(model: LoadedModel, task: Task) -> str:
        return model.spec.name if task is Task.GENERATE else f"{model.spec.name}:{task.value}"

    def start(self, model: LoadedModel) -> None:
        """Start the schedulers of every generative task of `model` (allocates its KV pool).
        Blocking: call it off the event loop, once the model has loaded."""
        started: list[Task] = []
        try:
            for task in GENERATIVE_TASKS:
                if task in model.tasks and task in model.modules:
                    self.get(model, task)
                    started.append(task)
        except BaseException:  # the model fails to load: free what its other tasks took
            with self._lock:
                schedulers = [self._schedulers.pop(self._key(model, t)) for t in started]
            for scheduler in schedulers:
                scheduler.close()
            raise

    def get(self, model: LoadedModel, task: Task = Task.GENERATE) -> Scheduler:
        """The scheduler decoding `model.modules[task]` (keyed "name", or "name:task" for
        tasks other than generate). A new one is built outside the lock: building allocates
        the KV pool and runs its probe, and the event loop looks schedulers up here."""
        key = self._key(model, task)
        with self._lock:
            scheduler = self._schedulers.get(key)
            if scheduler is not None and scheduler.model is model:
                return scheduler
        built = Scheduler(model, task, core_threads=self.core_threads)
        with self._lock:
            current = self._schedulers.get(key)
            if current is not None and current.model is model:  # another thread was quicker
                stale: Scheduler | None = built
            else:
                stale, self._schedulers[key] = current, built
                current = built
        if stale is not None:
            stale.close()
        return current

    def decode_info(self, name: str) -> DecodeInfo | None:
        """The decode path of model `name`'s text generation (GENERATE, else MULTIMODAL_CHAT);
        None when no scheduler runs for it."""
        with self._lock:
            for key in (name, f"{name}:{Task.MULTIMODAL_CHAT.value}"):
                scheduler = self._schedulers.get(key)
                if scheduler is not None:
                    return scheduler.decode_info
        return None

    def close(self) -> None:
        with self._lock:
            schedulers, self._schedulers = list(self._schedulers.values()), {}
        for scheduler in schedulers:
            scheduler.close()
