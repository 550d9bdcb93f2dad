"""Process state a fit touches: the BLAS thread count is restored however fits overlap or nest."""

import threading

import pytest
from threadpoolctl import ThreadpoolController, threadpool_limits

import skmixed
from skmixed import datasets
from skmixed.blas import single_blas_thread

WAIT = 30  # seconds: a generous bound, only reached if the hand-over below deadlocks


def blas_threads() -> set[int]:
    """The thread counts of the loaded BLAS libraries that have threads (a serial build, such as the system's
    OpenBLAS that CHOLMOD may use, always has one)."""
    libraries = ThreadpoolController().select(user_api="blas").info()
    info = [lib for lib in libraries if lib.get("threading_layer") not in ("disabled", "sequential")]
    assert info, "no threaded BLAS library is loaded: numpy should have loaded one"
    return {lib["num_threads"] for lib in info}


def test_overlapping_fits_in_threads_restore_the_original_count():
    """A enters, B enters, A leaves while B still works, B leaves: B keeps one thread, the end restores 2."""
    a_inside, b_inside, a_left = threading.Event(), threading.Event(), threading.Event()
    seen = {}
    errors = []

    def fit_a():
        try:
            with single_blas_thread():
                a_inside.set()
                assert b_inside.wait(WAIT)
                seen["both inside"] = blas_threads()
            a_left.set()
        except Exception as e:  # noqa: BLE001 -- reported by the main thread
            errors.append(e)
            a_left.set()

    def fit_b():
        try:
            assert a_inside.wait(WAIT)
            with single_blas_thread():
                b_inside.set()
                assert a_left.wait(WAIT)
                seen["B alone after A left"] = blas_threads()
        except Exception as e:  # noqa: BLE001
            errors.append(e)
            b_inside.set()

    with threadpool_limits(limits=2, user_api="blas"):
        assert blas_threads() == {2}
        threads = [threading.Thread(target=fit_a), threading.Thread(target=fit_b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
        assert not errors, errors
        assert seen == {"both inside": {1}, "B alone after A left": {1}}
        assert blas_threads() == {2}


def test_nested_use_keeps_the_limit_until_the_outer_leaves():
    with threadpool_limits(limits=2, user_api="blas"):
        with single_blas_thread():
            with single_blas_thread():
                assert blas_threads() == {1}
            assert blas_threads() == {1}
        assert blas_threads() == {2}


def test_concurrent_and_failing_fits_restore_the_count():
    sleep = datasets.load("sleepstudy")
    with threadpool_limits(limits=2, user_api="blas"):
        fits = [
            threading.Thread(target=skmixed.lmer, args=("Reaction ~ Days + (Days | Subject)", sleep)) for _ in range(3)
        ]
        for t in fits:
            t.start()
        for t in fits:
            t.join(WAIT)
        assert blas_threads() == {2}
        with pytest.raises(skmixed.OptionError, match="fixef"):  # raised inside the limited block
            skmixed.glmer(
                "cbind(incidence, size - incidence) ~ period + (1 | herd)",
                datasets.load("cbpp"),
                start={"fixef": [1.0]},
            )
        assert blas_threads() == {2}
