"""One BLAS thread for a fit's dense work, as a process-wide, reference-counted limit.

The dense matrices of a fit are at most a few thousand square, where a second thread gains
little on an idle machine and loses badly on a busy one (the benchmarks' history records the
measurements); inside ``GridSearchCV(n_jobs=...)`` threads would also be oversubscribed.
"""

from __future__ import annotations

import functools
import threading
from contextlib import contextmanager
from functools import lru_cache


@lru_cache(maxsize=1)
def _blas_controller():
    from threadpoolctl import ThreadpoolController  # lazily: import cost

    return ThreadpoolController()  # inspecting the loaded libraries: once, not per fit


class _OneBlasThread:
    """A process-wide, reference-counted BLAS limit: the first fit to enter sets one thread, the last to leave
    restores the counts the first one found.

    The thread count is a property of the process, not of a fit.  A limiter per fit would restore
    the count it saw on entry, which an overlapping fit in another thread may already have
    lowered to one: A saves 2 and sets 1, B saves 1, A restores 2 while B still runs, B restores
    1, and the process stays on one thread for good.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._users = 0
        self._limiter = None  # threadpoolctl's limiter of the first entrant: it holds the original counts

    def __enter__(self):
        with self._lock:
            if self._users == 0:
                with _openblas_control():
                    self._limiter = _blas_controller().limit(limits=1, user_api="blas")
            self._users += 1
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                with _openblas_control():
                    self._limiter.restore_original_limits()
                self._limiter = None


@contextmanager
def _openblas_control():
    """Let this thread set OpenBLAS's process-wide pool size, and let go of it afterwards.

    threadpoolctl ≥ 3.8 lets only one thread, the first to set a limit, change a process-wide
    (pthreads) OpenBLAS pool, and silently ignores the others until that thread lets go; the
    first and last fits here may run in different threads, so each change takes and releases
    that control.  Older threadpoolctl has no such control (nothing to do).
    """
    import threadpoolctl

    release = getattr(getattr(threadpoolctl, "OpenBLASController", None), "clear_controlling_thread", None)
    if release is not None:
        release(force=True)
    try:
        yield
    finally:
        if release is not None:
            release(force=True)


_ONE_BLAS_THREAD = _OneBlasThread()


def single_blas_thread() -> _OneBlasThread:
    """Run a fit's dense work on one BLAS thread (a context manager; fits may overlap in threads and nest)."""
    return _ONE_BLAS_THREAD


def one_blas_thread(stage):
    """``stage`` (a function) run under :func:`single_blas_thread`: every stage of a fit is, called alone or from
    ``lmer``/``glmer`` (which hold the limit over all four, so that it is set once)."""

    @functools.wraps(stage)
    def limited(*args, **kwargs):
        with _ONE_BLAS_THREAD:
            return stage(*args, **kwargs)

    return limited
