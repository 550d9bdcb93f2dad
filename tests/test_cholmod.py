"""skmixed._cholmod: one sparse Cholesky interface over scikit-sparse 0.4.16 (SuiteSparse 5) and 0.5 (SuiteSparse 7).

Every factor mode and ordering is checked against dense linear algebra, with whichever scikit-sparse is
installed.  Where that is 0.4.16, the 0.5 adapter also runs against ``StandIn05``: scikit-sparse 0.5's
``cholmod`` module as its documented signatures and CHOLMOD's semantics say (``perm`` with
``PAP' = A[p][:, p]``; ``factorize(A, ldl=)`` leaving a simplicial LL' or LDL' factor; ``solve`` systems
``"A"``, ``"L"``, ``"Lt"`` of which only ``"A"`` permutes; a warning when ``(min/max diagonal)²`` < n·eps),
built on 0.4.16's CHOLMOD calls, so that the adapter's own steps (permutation, diagonal, systems) are tested
wherever the suite runs.
"""

import types
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sksparse import cholmod as installed

from skmixed import _cholmod
from skmixed._cholmod import NotPositiveDefinite, SparseCholesky

MODES = [("simplicial", "amd"), ("simplicial", "metis"), ("supernodal", "metis"), ("supernodal", "nesdis")]


def crossed_gram(q1=120, q2=40, n=900, scale=1.7, seed=0):
    """Lower triangle (CSC) of ``A = s²Z'Z + I`` for two crossed factors: the matrix lme4 factors."""
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n), 2)
    cols = np.column_stack([rng.integers(0, q1, n), q1 + rng.integers(0, q2, n)]).ravel()
    Z = sp.csc_matrix((np.ones(2 * n), (rows, cols)), shape=(n, q1 + q2))
    A = (scale**2 * (Z.T @ Z) + sp.identity(q1 + q2)).tocsc()
    return sp.tril(A, format="csc")


def dense(A_lower) -> np.ndarray:
    A = A_lower.toarray()
    return A + np.tril(A, -1).T


class StandIn05:
    """scikit-sparse 0.5's ``sksparse.cholmod`` (the parts skmixed uses), on scikit-sparse 0.4.16's CHOLMOD calls."""

    CholmodError = installed.CholmodError
    CholmodNotPositiveDefiniteError = installed.CholmodNotPositiveDefiniteError

    class CholmodWarning(UserWarning):
        pass

    class CholeskyFactor:
        def __init__(self, A, *, lower=True, order="default", sym_kind=None, supernodal_mode=None):
            assert lower and sym_kind is None
            self._f = installed.analyze(A, mode=supernodal_mode or "auto", ordering_method=order)
            self.perm = self._f.P()
            self.perm.flags.writeable = False  # 0.5's perm is a read-only view
            self._ldl = None

        def factorize(self, A, ldl=None, beta=0.0):
            self._f.cholesky_inplace(A, beta=beta)
            self._ldl = bool(ldl)
            # 0.5 sets CHOLMOD's final_super = False and final_ll = not ldl: a simplicial factor in the form asked
            diag = self.factor.diagonal()
            self.rcond = (diag.min() / diag.max()) ** (1 if self._ldl else 2)

        @property
        def factor(self):
            L = sp.csc_array(self._f.LD() if self._ldl else self._f.L())
            L.sort_indices()  # CHOLMOD keeps each column's diagonal entry first
            L.data.flags.writeable = False
            return L

        def solve(self, b, system="A"):
            if self.rcond < len(self.perm) * np.finfo(float).eps:
                warnings.warn(
                    f"Matrix is nearly singular. (rcond={self.rcond:.2e})", StandIn05.CholmodWarning, stacklevel=2
                )
            if system == "A":
                return self._f.solve_A(b)
            solve = {"L": self._f.solve_L, "Lt": self._f.solve_Lt}[system]
            return solve(b, use_LDLt_decomposition=self._ldl)


BACKENDS = ["installed"] + ([] if hasattr(installed, "CholeskyFactor") else ["stand-in 0.5"])


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    if request.param == "stand-in 0.5":
        monkeypatch.setattr(_cholmod, "cholmod", types.SimpleNamespace(**vars(StandIn05)))
        monkeypatch.setattr(_cholmod, "_Factor", _cholmod._Factor05)
    return request.param


@pytest.mark.parametrize("mode, ordering", MODES)
def test_factor_solves_as_dense_algebra(backend, monkeypatch, mode, ordering):
    monkeypatch.setattr(_cholmod, "_candidates", lambda q: [(mode, ordering)])
    A_lower = crossed_gram()
    A = dense(A_lower)
    chol = SparseCholesky(A_lower)
    assert (chol.mode, chol.ordering) == (mode, ordering)
    rng = np.random.default_rng(1)
    b, c = rng.normal(size=(A.shape[0], 3)), rng.normal(size=(A.shape[0], 3))

    assert chol.logdet() == pytest.approx(np.linalg.slogdet(A)[1], rel=1e-12)
    np.testing.assert_allclose(chol.solve(b), np.linalg.solve(A, b), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(chol.solve(b[:, 0]), np.linalg.solve(A, b[:, 0]), rtol=1e-10, atol=1e-13)
    # one factor LL' = PAP': L⁻¹PAP'L'⁻¹ = I, ‖L⁻¹Pb‖² = b'A⁻¹b, P'L'⁻¹L⁻¹P = A⁻¹, and solve_Lt is solve_L's adjoint
    np.testing.assert_allclose(chol.solve_L(chol.solve_L(A).T), np.eye(len(A)), atol=1e-12)
    np.testing.assert_allclose(
        (chol.solve_L(b) ** 2).sum(0), np.einsum("ij,ij->j", b, np.linalg.solve(A, b)), rtol=1e-11
    )
    np.testing.assert_allclose(chol.solve_Lt(chol.solve_L(b)), np.linalg.solve(A, b), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(c.T @ chol.solve_L(b), chol.solve_Lt(c).T @ b, rtol=1e-11)
    for v in (b[:, 1], c[:, 2]):  # vectors as well as matrices
        np.testing.assert_allclose(chol.solve_L(v), chol.solve_L(v[:, None])[:, 0], rtol=1e-14)
        np.testing.assert_allclose(chol.solve_Lt(v), chol.solve_Lt(v[:, None])[:, 0], rtol=1e-14)


@pytest.mark.parametrize("mode, ordering", [MODES[0], MODES[2]])
def test_refactor_keeps_the_pattern_and_takes_the_new_values(backend, monkeypatch, mode, ordering):
    monkeypatch.setattr(_cholmod, "_candidates", lambda q: [(mode, ordering)])
    chol = SparseCholesky(crossed_gram(scale=1.7))
    A2_lower = crossed_gram(scale=0.3)
    chol.refactor(A2_lower)
    A2 = dense(A2_lower)
    b = np.random.default_rng(2).normal(size=len(A2))
    assert chol.logdet() == pytest.approx(np.linalg.slogdet(A2)[1], rel=1e-12)
    np.testing.assert_allclose(chol.solve_Lt(chol.solve_L(b)), np.linalg.solve(A2, b), rtol=1e-10)


@pytest.mark.parametrize("mode, ordering", [MODES[0], MODES[2]])
def test_not_positive_definite_is_one_exception(backend, monkeypatch, mode, ordering):
    monkeypatch.setattr(_cholmod, "_candidates", lambda q: [(mode, ordering)])
    A_lower = crossed_gram()
    indefinite = A_lower.copy()
    indefinite.data = -indefinite.data
    with pytest.raises(NotPositiveDefinite):
        SparseCholesky(indefinite)
    chol = SparseCholesky(A_lower)
    with pytest.raises(NotPositiveDefinite):
        chol.refactor(indefinite)


@pytest.mark.parametrize("mode, ordering", [MODES[0], MODES[2]])
def test_an_ill_conditioned_matrix_solves_without_a_warning(backend, monkeypatch, mode, ordering):
    """lme4 does not warn about cond(Λ'Z'ZΛ + I); 0.5's rcond warning is not passed on (0.4.16 has none)."""
    monkeypatch.setattr(_cholmod, "_candidates", lambda q: [(mode, ordering)])
    A_lower = crossed_gram(scale=1e8)  # (min/max diagonal)² far below n·eps
    A = dense(A_lower)
    b = np.random.default_rng(3).normal(size=len(A))
    chol = SparseCholesky(A_lower)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = chol.solve_Lt(chol.solve_L(b))
        y = chol.solve(b)
    for z in (x, y):  # backward stable: a residual of the order of eps·‖A‖‖x‖
        assert np.abs(A @ z - b).max() <= 1e-13 * np.abs(A).sum(1).max() * np.abs(z).max()


def test_the_measured_choice_is_one_of_the_candidates(backend):
    small = SparseCholesky(crossed_gram())
    assert (small.mode, small.ordering) == ("simplicial", "amd")
    large_lower = crossed_gram(q1=1500, q2=60, n=6000)
    large = SparseCholesky(large_lower)
    assert (large.mode, large.ordering) in _cholmod._candidates(large_lower.shape[0])
    b = np.random.default_rng(4).normal(size=large_lower.shape[0])
    A = large_lower + sp.tril(large_lower, -1, format="csc").T
    np.testing.assert_allclose(A @ large.solve(b), b, rtol=0, atol=1e-9)
