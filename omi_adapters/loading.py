"""Load a model once per process under any of the three policies, and tell the truth about it.

- ``eager``: :meth:`Loader.start` loads before the server accepts traffic.
- ``lazy``: the first request loads; concurrent first requests wait for that one load.
- ``background``: :meth:`Loader.start` loads in a thread; requests wait for it up to a timeout.

A failed load is kept (state ``FAILED`` and the error) and is not retried behind the user's
back: only ``load(retry=True)`` (or :meth:`Loader.reload`) runs the loader again.
:meth:`Loader.unload` takes a model out of service until :meth:`Loader.reload`.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from omi_adapters.errors import ModelLoadError, ModelNotReadyError, ModelUnloadedError

__all__ = ["LoadPolicy", "LoadState", "Loader"]

T = TypeVar("T")
log = logging.getLogger("omi_adapters")


class LoadPolicy(str, enum.Enum):
    """When a model loads: at start-up, on the first request, or in a background thread."""

    EAGER = "eager"
    LAZY = "lazy"
    BACKGROUND = "background"


class LoadState(str, enum.Enum):
    """Where a model's load stands."""

    UNLOADED = "UNLOADED"
    LOADING = "LOADING"
    READY = "READY"
    FAILED = "FAILED"


#: The states a request checks, as module names: an Enum member read through its class costs
#: more than the rest of the check.
_READY, _FAILED = LoadState.READY, LoadState.FAILED


class Loader(Generic[T]):
    """Runs ``load_fn`` at most once (until a retry is asked for) and keeps its result."""

    def __init__(self, name: str, load_fn: Callable[[], T], policy: LoadPolicy) -> None:
        self.name = name
        self.policy = policy
        self._load_fn = load_fn
        self._lock = threading.Lock()  # held for the whole load
        self._thread_lock = threading.Lock()  # guards starting the background thread only
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        self.state = LoadState.UNLOADED
        self.error: BaseException | None = None
        self.value: T | None = None
        self.seconds: float | None = None
        #: Taken out of service by :meth:`unload`: nothing loads it again but :meth:`reload`.
        self.unloaded = False
        #: Loads run to their end, successful or not, and successful reloads of a ready model.
        self.loads = 0

    @property
    def ready(self) -> bool:
        """True once the loader has succeeded."""
        return self.state is _READY

    def loaded(self) -> T | None:
        """The loaded value if the loader has succeeded, else None: no waiting, no loading."""
        return self.value if self.state is _READY else None

    def start(self) -> None:
        """Begin loading as the policy says: now (eager), in a thread (background), or not (lazy)."""
        if self.policy is LoadPolicy.EAGER:
            try:
                self.load()
            except ModelLoadError:
                pass  # recorded; readiness and every request report it
        elif self.policy is LoadPolicy.BACKGROUND:
            self._start_thread()

    def load(self, retry: bool = False) -> T:
        """Load unless loaded; with ``retry``, run the loader again after a failure."""
        with self._lock:
            if self.state is LoadState.READY:
                return self.value  # type: ignore[return-value]
            if self.state is LoadState.FAILED and not retry:
                raise self._failure()
            self.state = LoadState.LOADING
            self._finished.clear()
            started = time.perf_counter()
            try:
                value = self._load_fn()
            except BaseException as exc:  # SystemExit from a loader is its failure, not ours
                self.seconds = time.perf_counter() - started
                self.loads += 1
                self.state, self.error = LoadState.FAILED, exc
                log.error("model %r failed to load in %.3fs", self.name, self.seconds, exc_info=exc)
                self._finished.set()
                raise self._failure() from exc
            self.seconds = time.perf_counter() - started
            self.loads += 1
            self.value, self.error, self.state = value, None, LoadState.READY
            log.info("model %r loaded in %.3fs", self.name, self.seconds)
            self._finished.set()
            return value

    def reload(self) -> T:
        """Run the loader again, whatever the state, and bring an unloaded model back into service.

        A ready model serves its loaded value until the new load has finished; if the new load
        fails, the loaded value serves on (as Triton keeps a model whose reload failed) and the
        failure is raised. A failed, unloaded or never loaded model loads as :meth:`load` does.
        """
        with self._lock:
            self.unloaded = False
            if self.state is LoadState.READY:
                started = time.perf_counter()
                try:
                    value = self._load_fn()
                except BaseException as exc:  # the loader's failure, reported to the caller
                    # The state, its timing and the load count stay the loaded model's.
                    log.error(
                        "model %r failed to reload in %.3fs", self.name, time.perf_counter() - started, exc_info=exc
                    )
                    raise ModelLoadError(
                        f"model '{self.name}' failed to reload: {_describe(exc)}; the loaded model serves on"
                    ) from exc
                self.seconds = time.perf_counter() - started
                self.loads += 1
                self.value = value
                log.info("model %r reloaded in %.3fs", self.name, self.seconds)
                return value
        return self.load(retry=True)

    def unload(self) -> None:
        """Take the model out of service: not ready, and every request refused, until :meth:`reload`.

        A load in progress finishes first; requests already running finish with the loaded value.
        """
        with self._lock:
            self.unloaded = True
            self.state, self.value, self.error = LoadState.UNLOADED, None, None
            self._thread = None
            log.info("model %r unloaded", self.name)

    def check_in_service(self) -> None:
        """Raise :class:`ModelUnloadedError` if :meth:`unload` took the model out of service."""
        if self.unloaded:
            raise ModelUnloadedError(f"model '{self.name}' is unloaded (the model repository extension loads it again)")

    def wait(self, timeout: float | None) -> T:
        """Return the loaded value, loading it first if the policy lets a request do that.

        Under ``background`` the caller waits up to ``timeout`` seconds for the loading thread,
        then gets :class:`ModelNotReadyError`; a failure gets :class:`ModelLoadError`.
        """
        if self.state is _READY:
            return self.value  # type: ignore[return-value]
        if self.state is _FAILED:
            raise self._failure()
        self.check_in_service()
        if self.policy is not LoadPolicy.BACKGROUND:
            return self.load()
        self._start_thread()
        if not self._finished.wait(timeout):
            raise ModelNotReadyError(f"model '{self.name}' is still loading")
        return self.wait(0)

    def load_in_background(self) -> None:
        """Start loading in a thread unless a load has already started (any policy)."""
        self._start_thread()

    def _start_thread(self) -> None:
        with self._thread_lock:
            if self._thread is not None or self.state is not LoadState.UNLOADED or self.unloaded:
                return
            self._thread = threading.Thread(target=self._load_quietly, name=f"load-{self.name}", daemon=True)
            self._thread.start()

    def _load_quietly(self) -> None:
        try:
            self.load()
        except ModelLoadError:
            pass  # recorded in state/error

    def _failure(self) -> ModelLoadError:
        return ModelLoadError(f"model '{self.name}' failed to load: {_describe(self.error)}")


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
