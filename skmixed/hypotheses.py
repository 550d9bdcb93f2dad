"""The hypothesis matrices L (one per term, Lβ = 0) of lmerTest's F tables: types 1, 2 and 3, and the marginal
tests of drop1 (lmerTest's ``get_contrasts_type1``, ``_type2_unfolded``, ``_type3``, ``_marginal`` and
``get_Ldiffmat2``).

Type 1 (sequential): the rows of the Doolittle factor of X'X that belong to the term (X'X = LDL', rows of L').
lmerTest computes the factor by a Doolittle elimination that zeroes entries below 10⁻⁶; here the rows of R from a
QR decomposition of X divided by their diagonal (R = D^½L'), without the threshold, so they do not depend on the
units of the covariates.  The scale of the rows matters: Satterthwaite's df of a test of several rows depend on
it (through the eigenvectors of LVL'), and lmerTest's rows have a unit diagonal.
Type 2: a term no other contains gets the marginal test (its own coefficients); a contained term the type 1 rows
of X with its columns ordered [unrelated terms, the term, the terms that contain it].
Type 3: lmerTest's construction, followed step by step: X remade with treatment contrasts, the complete design
(every level of every factor of each term), L = (X⁺ X_complete)' rounded by R's ``zapsmall``, the columns of each
contained term orthogonalised against those of the terms containing it (higher-order terms first), the rows named
as X's columns kept, and the result mapped to the model's own coding by X⁺X_model.  So a model with sum or
polynomial contrasts is tested with the hypotheses lmerTest tests, which are "type 3 for treatment coding"
carried over.
"""

from __future__ import annotations

import warnings

import numpy as np

from .exceptions import OptionError
from .fixed_terms import FixedTerms


def zapsmall(x: np.ndarray, digits: int = 7) -> np.ndarray:
    """R's ``zapsmall`` (R 4.2): rounded to ``digits − log10(max |x|)`` decimal places, a number R's ``round``
    takes to the nearest integer."""
    x = np.asarray(x, dtype=float)
    largest = np.max(np.abs(x)) if x.size else 0.0
    if not largest > 0:
        return x
    return np.round(x, int(np.floor(max(0.0, digits - np.log10(largest)) + 0.5)))


def _residuals(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Y less its least-squares fit on the columns of X (R's ``resid(lm.fit(X, Y))``)."""
    if X.shape[1] == 0:
        return Y
    return Y - X @ np.linalg.lstsq(X, Y, rcond=None)[0]


def _no_terms(ft: FixedTerms) -> bool:
    return ft.X.shape[1] <= 1 or len(ft.terms) <= 1


def _doolittle_rows(X: np.ndarray) -> np.ndarray:
    """L' of X'X = LDL' (unit diagonal): R of X = QR with each row divided by its diagonal."""
    R = np.linalg.qr(X, mode="r")
    return R / np.diag(R)[:, None]


def type1(ft: FixedTerms) -> dict[str, np.ndarray]:
    """Sequential hypotheses: the rows of the Doolittle factor for each term's columns."""
    if not ft.terms:
        return {}
    rows = _doolittle_rows(ft.X)
    return {t.label: rows[t.columns] for t in ft.terms}


def marginal(ft: FixedTerms, which: list[str] | None = None) -> dict[str, np.ndarray]:
    """Each term's own coefficients (lmerTest's ``get_contrasts_marginal``)."""
    if which is None and _no_terms(ft):
        return type1(ft)
    identity = np.eye(ft.X.shape[1])
    return {label: identity[ft[label].columns] for label in (which or ft.labels)}


def type2(ft: FixedTerms) -> dict[str, np.ndarray]:
    """lmerTest's type 2 (``get_contrasts_type2_unfolded``): marginal for terms no other contains, else the type
    1 rows with the term placed after every term unrelated to it and before those that contain it."""
    if _no_terms(ft):
        return type1(ft)
    contained = ft.containment()
    out = marginal(ft, [label for label in ft.labels if not contained[label]])
    for label in ft.labels:
        if contained[label]:
            own = list(ft[label].columns)
            later = own + [j for c in contained[label] for j in ft[c].columns]
            order = [j for j in range(ft.X.shape[1]) if j not in later] + later
            rows = _doolittle_rows(ft.X[:, order])[[order.index(j) for j in own]]
            out[label] = rows[:, np.argsort(order)]
    return {label: out[label] for label in ft.labels}


def type3(ft: FixedTerms) -> dict[str, np.ndarray]:
    """lmerTest's type 3 (``get_contrasts_type3`` and ``extract_contrasts_type3``), see the module docstring."""
    if _no_terms(ft):
        return type1(ft)
    Xt, keys_t = ft.treatment_matrix()
    Xc, keys_c = ft.complete_matrix()
    empty = [k for k, col in zip(keys_c, Xc.T) if not np.any(col)]
    if empty:
        warnings.warn(
            f"missing cells for {', '.join(map(ft.column_name, empty))}: interpret type 3 hypotheses with care",
            UserWarning,
            stacklevel=4,
        )
    L = zapsmall(np.linalg.lstsq(Xt, Xc, rcond=None)[0].T)  # rows: complete columns; columns: Xt's
    owner = [k[0] for k in keys_t]
    columns = {label: [j for j, o in enumerate(owner) if o == label] for label in ft.labels}
    contained = ft.containment()
    for label in sorted(ft.labels, key=ft.order, reverse=True):  # higher-order terms first (a stable sort)
        if contained[label] and columns[label]:
            bigger = [j for c in contained[label] for j in columns[c]]
            L[:, columns[label]] = zapsmall(_residuals(L[:, bigger], L[:, columns[label]]))
    position = {k: i for i, k in enumerate(keys_c)}
    missing = [k for k in keys_t if k not in position]
    if missing:
        raise OptionError(
            f"type 3 tests need every column of X to be a cell of its term, but {ft.column_name(missing[0])} is not "
            "(a term whose margins are coded in an unusual way): use type=1 or type=2"
        )
    L = L[[position[k] for k in keys_t]]
    to_model = zapsmall(np.linalg.lstsq(Xt, ft.X, rcond=None)[0])
    out = {}
    for label in ft.labels:
        rows = L[:, columns[label]].T @ to_model
        out[label] = rows[np.abs(rows).sum(axis=1) > 1e-8]
    return out


def drop1_hypotheses(ft: FixedTerms, design: np.ndarray, design_owner: list[str], labels: list[str]):
    """For each marginal term, the hypothesis that its columns add nothing (lmerTest's ``get_Ldiffmat2``, for a
    rank-deficient X): the part of X orthogonal to the design without the term, as orthonormal contrasts."""
    out = {}
    for label in labels:
        X0 = design[:, [j for j, o in enumerate(design_owner) if o != label]]
        R = _residuals(X0, ft.X)
        R = R[:, np.abs(R).sum(axis=0) > 1e-8]
        if R.shape[1] == 0:
            out[label] = np.full((1, ft.X.shape[1]), np.nan)
            continue
        Q = np.linalg.qr(ft.X.T @ R, mode="reduced")[0]
        out[label] = zapsmall(Q).T
    return out
