"""``lmer(..., residual="us(visit | subject)")``: build, optimise and wrap an LMM with a residual covariance
structure (the stages of :mod:`skmixed.stages` for these models).

Why an argument and not a formula term: a term ``us(visit | subject)`` inside the formula would read, in lme4 2.0
and glmmTMB, as a random effect with an unstructured covariance (the formula's structures, which differ), and in
lme4 as a random-effects term.  A separate ``residual=`` says which covariance it is, as nlme's
``correlation=``/``weights=`` and mmrm's covariance term do, spelled as mmrm and glmmTMB spell the structures.

Without random effects (nlme's ``gls``, an MMRM) φ is found by L-BFGS-B on the analytic gradient of
:class:`~skmixed.residual_deviance.GlsDeviance`; with random effects, (θ, φ) by BOBYQA on
:class:`~skmixed.residual_deviance.WhitenedDeviance`.  Both end in the convergence checks of
:func:`skmixed.convergence.minimize`.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .checks import check_identifiable
from .convergence import minimize
from .covstruct import parse_structure
from .exceptions import DataError, OptionError, SingularFitWarning
from .formula import ParsedFormula, parse_formula
from .frame import ModelFrame, model_frame
from .optimizers import OptSummary, bobyqa, lbfgsb_symmetric
from .pls import PlsSolution
from .residual import ResidualDesign, bind, check_bounded
from .residual_deviance import GlsDeviance, WhitenedDeviance
from .reterms import RandomEffects, random_effects


@dataclass(frozen=True)
class StructuredModel:
    """An LMM with residual covariance σ²R_i(φ) per subject: formula, frame, random effects (possibly none),
    the structure bound to the rows, and the criterion."""

    formula: str
    parsed: ParsedFormula
    frame: ModelFrame
    re: RandomEffects
    design: ResidualDesign
    REML: bool
    data_name: str | None = None

    @property
    def y(self) -> np.ndarray:
        return self.frame.y - self.frame.offset

    def objective(self):
        """The deviance function: of φ without random effects, of (θ, φ) with them."""
        if self.re.terms:
            return WhitenedDeviance(self.design, self.frame.X, self.y, self.re, self.REML)
        return GlsDeviance(self.design, self.frame.X, self.y, self.REML)


def build_structured(formula: str, data: pd.DataFrame, residual, REML: bool, weights=None, offset=None):
    """The model record (checks included: the structure's needs of the data, a bounded likelihood)."""
    if weights is not None:
        raise OptionError(
            "weights= and residual= together are not supported: the residual structure already sets each "
            "observation's variance (diag or a heterogeneous structure gives one per visit)"
        )
    spec = parse_structure(residual)
    parsed = parse_formula(formula)
    frame = model_frame(parsed, data, offset=offset)
    re = random_effects(parsed.bars, frame.data) if parsed.bars else RandomEffects([])
    if re.structured:
        raise OptionError(
            "residual= with random-effect covariance structures (diag(...), cs(...), ...) is not supported: write "
            "the random effects unstructured, e.g. (1 + x | g) or (1 + x || g)"
        )
    if parsed.bars:
        check_identifiable(re, len(frame.y))
    design = bind(spec, data[frame.keep])
    s = design.structure
    n_par = frame.X.shape[1] + re.n_theta + s.n_sigma_par
    if n_par >= len(frame.y):
        raise DataError(
            f"the model has {n_par} parameters ({s.n_sigma_par} of them in the {spec.name} structure) for "
            f"{len(frame.y)} observations: use a structure with fewer parameters or fewer fixed effects"
        )
    check_bounded(design, frame.X, frame.x_names)
    name = data.attrs.get("name")
    return StructuredModel(parsed.text, parsed, frame, re, design, bool(REML), name if isinstance(name, str) else None)


def _start_phi(model: StructuredModel) -> np.ndarray:
    """φ from the covariance of the least-squares residuals over the pairs of visits observed together."""
    X, y, design = model.frame.X, model.y, model.design
    e = y - X @ np.linalg.lstsq(X, y, rcond=None)[0]
    T = design.structure.T
    total, count = np.zeros((T, T)), np.zeros((T, T))
    for p in design.patterns:
        E = e[p.rows]
        total[np.ix_(p.visits, p.visits)] += E.T @ E
        count[np.ix_(p.visits, p.visits)] += len(E)
    with np.errstate(invalid="ignore", divide="ignore"):
        S = np.where(count > 0, total / count, np.nan)
    phi = design.structure.start(S)
    if model.re.terms and design.structure.kind != "none":  # the random effects take up the correlation at first
        phi[: design.structure.n_corr] = design.structure.start(np.diag(np.diag(S)))[: design.structure.n_corr]
    return phi


def _start(model: StructuredModel, start) -> np.ndarray:
    n_theta, n_phi = model.re.n_theta, model.design.structure.n_par
    if start is None:
        return np.concatenate([model.re.theta_init if n_theta else np.zeros(0), _start_phi(model)])
    if not isinstance(start, dict) or set(start) - {"theta", "phi"}:
        raise OptionError("start= of a model with residual= is a dict with 'theta' and/or 'phi', e.g. result.start")
    theta = np.asarray(start.get("theta", model.re.theta_init if n_theta else []), dtype=float).ravel()
    phi = np.asarray(start["phi"], dtype=float).ravel() if "phi" in start else _start_phi(model)
    if theta.shape != (n_theta,) or phi.shape != (n_phi,) or not np.all(np.isfinite(np.r_[theta, phi])):
        raise OptionError(f"start must have {n_theta} finite theta and {n_phi} finite phi values")
    return np.concatenate([theta, phi])


def optimize_structured(model: StructuredModel, devfun, start=None, check_conv=True, maxeval=100_000) -> OptSummary:
    """Minimise the model's deviance over (θ, φ); the summary's parameters are (θ, φ)."""
    x0 = _start(model, start)
    n_theta = model.re.n_theta
    lower = np.concatenate([model.re.theta_lower if n_theta else np.zeros(0), np.full(len(x0) - n_theta, -np.inf)])
    hessian = len(x0) < 10 and model.frame.X.shape[0] < 10_000
    if n_theta == 0:
        return minimize(
            lambda x: lbfgsb_symmetric(devfun.value_and_gradient, x, canonical=lambda v: v, maxfun=maxeval),
            x0,
            lower,
            f_and_grad=devfun.value_and_gradient,
            check=check_conv,
            hessian=hessian,
        )
    return minimize(
        lambda x: bobyqa(devfun, x, lower, maxeval=maxeval), x0, lower, f=devfun, check=check_conv, hessian=hessian
    )


def final_solution(model: StructuredModel, devfun, x: np.ndarray) -> PlsSolution:
    """The solution at (θ, φ) as a :class:`~skmixed.pls.PlsSolution` (for a model without random effects: no b,
    RX the Cholesky factor of X'R⁻¹X)."""
    sol = devfun.solve(x)
    if sol is None:
        raise ArithmeticError("the deviance is not defined at the optimum")
    if model.re.terms:
        return sol
    RX = np.linalg.cholesky(np.linalg.inv(sol.xrx_inverse)).T
    empty = np.zeros(0)
    return PlsSolution(empty, sol.beta, empty, empty, sol.pwrss, 0.0, sol.log_det_xrx, RX, sol.deviance, sol.sigma)


def fit_structured(model: StructuredModel, start=None, check_conv=True, maxeval=100_000):
    """Fit ``model``: the :class:`~skmixed.residual_result.StructuredLmerResult`."""
    from .residual_result import StructuredLmerResult

    devfun = model.objective()
    optsum = optimize_structured(model, devfun, start, check_conv, maxeval)
    solution = final_solution(model, devfun, optsum.theta)
    result = StructuredLmerResult(model=model, solution=solution, optsum=optsum, devfun=devfun)
    if result.re.terms and result.is_singular:
        warnings.warn(
            "boundary (singular) fit: see result.varcorr (the residual structure may take up the random effects' "
            "variance)",
            SingularFitWarning,
            stacklevel=3,
        )
    return result


def refit(model: StructuredModel, REML: bool, start=None):
    """The same model by the other criterion."""
    return fit_structured(dataclasses.replace(model, REML=bool(REML)), start=start)
