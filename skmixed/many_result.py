"""What ``lmer_many`` returns: tables with one row per response, and each response's full fit on demand.

:class:`ResponseFits` holds the responses of one design (one pattern of missing rows) while they are
fitted; :class:`ManyResult` joins the designs in the order of the responses given.  The estimates
are those of ``lmer`` at each response's θ, mapped to the user's scale as
:class:`~skmixed.standardize.Standardization` maps them: β = γ + s S⁻¹β̃, σ = s√c σ̃,
Cov(β) = s²σ̃² S⁻¹(R̃X'R̃X)⁻¹S⁻ᵀ, θ = θ̃/√c.
"""

from __future__ import annotations

import dataclasses
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.linalg as la

from .convergence import SINGULAR_TOL
from .deviance import ProfiledDeviance
from .formula import parse_formula
from .many_newton import X_TOL, BatchedOptimum
from .many_pls import block_size
from .model import LinearMixedModel
from .optimizers import OptSummary
from .results import LmerResult, lmer_result
from .standardize import Standardization
from .variance import group_names

BATCHED = "batched Newton (lmer_many)"


class ResponseFits:
    """The responses of one design: their data, standardized cross-products, and fits as they are made."""

    def __init__(self, model, names, columns, Y, Y_tilde, gamma, s, Zty, Xty, yty, rhs: str, placeholder: str):
        self.model, self.names, self.columns = model, list(names), np.asarray(columns)
        self.Y, self.Y_tilde, self.gamma, self.s = Y, Y_tilde, gamma, s
        self.Zty, self.Xty, self.yty = Zty, Xty, yty
        self.rhs, self.placeholder = rhs, placeholder
        m, k = len(self.names), model.re.n_theta
        self.theta_tilde = np.zeros((m, k))
        self.converged = np.zeros(m, dtype=bool)
        self.optsums: dict[int, OptSummary] = {}  # fits by lmer's optimizer
        self.devfuns: dict[int, ProfiledDeviance] = {}  # and the deviance functions they ran on
        self._batched: list = []
        self.c = model.standardization.c

    def set_batched(self, rows: np.ndarray, starts: np.ndarray, optimum: BatchedOptimum) -> None:
        self.theta_tilde[rows] = optimum.theta
        self.converged[rows] = optimum.converged
        self._batched.append((rows, starts, optimum))

    def optsum(self, j: int) -> OptSummary:
        """What the optimizer did for response j, on the user's scale (as ``lmer``'s ``optsum``)."""
        if j in self.optsums:
            return self.optsums[j]
        for rows, starts, optimum in self._batched:
            hit = np.flatnonzero(rows == j)
            if len(hit):
                i, std, root_c = hit[0], self.std(j), np.sqrt(self.c)
                return OptSummary(
                    optimizer=BATCHED,
                    theta_init=starts[i] / root_c,
                    objective_init=std.objective(optimum.objective_init[i], self.model.REML),
                    theta=optimum.theta[i] / root_c,
                    objective=float(self.objective[j]),
                    n_evaluations=int(optimum.n_evaluations[i]),
                    converged=True,
                    return_code="XTOL_REACHED",
                    lower=self.model.re.theta_lower,
                    tolerances={"xtol_abs": X_TOL},
                )
        raise KeyError(j)

    def evaluations(self) -> np.ndarray:
        out = np.zeros(len(self.names), dtype=int)
        for rows, _, optimum in self._batched:
            out[rows] = optimum.n_evaluations
        for j, optsum in self.optsums.items():
            out[j] += optsum.n_evaluations
        return out

    def std(self, j: int) -> Standardization:
        """Response j's change of variables (:mod:`skmixed.standardize`): the design's S and c, its γ and s."""
        shared = self.model.standardization
        return Standardization(shared.S, self.gamma[j], float(self.s[j]), shared.c, shared.n)

    def set_optimized(self, j: int, optsum: OptSummary, devfun: ProfiledDeviance) -> None:
        """The fit of response j by lmer's optimizer (θ on the user's scale) on ``devfun``, kept for its estimates."""
        self.optsums[j], self.devfuns[j] = optsum, devfun
        self.theta_tilde[j] = optsum.theta * np.sqrt(self.c)
        self.converged[j] = optsum.converged

    def model_of(self, j: int) -> LinearMixedModel:
        """Response j's model record, as ``skmixed.build`` makes it for ``lmer``."""
        base, name = self.model, str(self.names[j])
        y = self.Y[:, j]
        cp = dataclasses.replace(base.cp, Zty=self.Zty[:, j].copy(), Xty=self.Xty[:, j].copy(), yty=float(self.yty[j]))
        data = base.frame.data.drop(columns=[self.placeholder]).assign(**{name: y})
        frame = dataclasses.replace(base.frame, y=y, data=data)
        parsed = parse_formula(f"{name if name.isidentifier() else f'`{name}`'} ~ {self.rhs}")
        return dataclasses.replace(
            base,
            formula=parsed.text,
            parsed=parsed,
            frame=frame,
            y=self.Y_tilde[:, j].copy(),
            standardization=self.std(j),
            cp=cp,
        )

    def result(self, j: int) -> LmerResult:
        devfun = self.devfuns.get(j) or ProfiledDeviance(self.model_of(j))
        return lmer_result(devfun.model, devfun, self.optsum(j))

    def estimates_from(self, batched) -> None:
        """β, their standard errors, σ and the objective of every response at its θ (see the module docstring)."""
        model, m = self.model, len(self.names)
        which = np.arange(m)
        if batched is not None:
            beta_t, RX_t, pwrss, objective_t = batched.estimates(self.theta_tilde, which, block_size(model))
        else:
            sols = [self.devfuns[j].standardized.solve(self.theta_tilde[j]) for j in which]
            beta_t = np.array([s.beta for s in sols]).reshape(m, -1)
            RX_t = np.array([s.RX for s in sols]).reshape(m, beta_t.shape[1], beta_t.shape[1])
            pwrss = np.array([s.pwrss for s in sols])
            objective_t = np.array([s.deviance for s in sols])
        std0 = model.standardization
        s, gamma = self.s, self.gamma
        dof = model.cp.n - model.X.shape[1] if model.REML else model.cp.n
        sigma_t = np.sqrt(pwrss / dof)
        self.sigma = s * np.sqrt(self.c) * sigma_t
        p = beta_t.shape[1]
        if p:
            self.beta = gamma + s[:, None] * la.solve_triangular(std0.S, beta_t.T).T
            K = np.einsum("ij,mjk->mik", la.solve_triangular(std0.S, np.eye(p)), np.linalg.inv(RX_t))  # S⁻¹R̃X⁻¹
            self.se = (s * sigma_t)[:, None] * np.sqrt(np.einsum("mij,mij->mi", K, K))
        else:
            self.beta = self.se = np.zeros((m, 0))
        shift = 2 * dof * np.log(s) + (2 * std0.log_det_S if model.REML else 0.0)
        self.objective = objective_t + shift


@dataclasses.dataclass(frozen=True)
class ManyResult:
    """One LMM design fitted to many responses (:func:`skmixed.lmer_many`).

    The tables have one row per response, indexed by its name: :attr:`table` (objective, σ, observations,
    evaluations, convergence, singularity, optimizer), :attr:`fixef`, :attr:`fixef_se`, :attr:`theta`,
    :attr:`varcorr` (variances and covariances, lme4's names) and :attr:`sdcor` (standard deviations and
    correlations).  ``result[i]`` (by position) or ``result[name]`` is the :class:`~skmixed.LmerResult` ``lmer``
    would give for that response, built when asked for (an integer that is also a response's name is read as
    the name); iterating gives them all in order.
    """

    formula: str
    REML: bool
    names: pd.Index
    fits: tuple
    _where: dict = dataclasses.field(repr=False)
    _cache: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def combine(cls, fits: list[ResponseFits], names: list, rhs: str, REML: bool) -> ManyResult:
        where = {}
        for g, f in enumerate(fits):
            for j, position in enumerate(f.columns):
                where[position] = (g, j)
        return cls(formula=f"~ {rhs}", REML=REML, names=pd.Index(names), fits=tuple(fits), _where=where)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, key) -> LmerResult:
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool) and key not in self.names:
            if not -len(self) <= key < len(self):
                raise IndexError(f"response {key} out of range: there are {len(self)}")
            position = int(key) % len(self)
        elif key in self.names:
            position = self.names.get_loc(key)
        else:
            raise KeyError(f"no response named {key!r}")
        cache = self._cache.setdefault("results", {})
        if position not in cache:
            g, j = self._where[position]
            cache[position] = self.fits[g].result(j)
        return cache[position]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def _stack(self, per_design) -> pd.DataFrame:
        """One row per response in the order given, from a function of a design's fits giving a DataFrame."""
        out = pd.concat([per_design(f).set_axis(f.columns, axis=0) for f in self.fits]).sort_index()
        out.index = self.names
        return out

    @cached_property
    def table(self) -> pd.DataFrame:
        """Per response: objective (REML criterion or −2 log-likelihood), sigma, nobs, evaluations, converged,
        singular, optimizer."""

        def rows(f: ResponseFits) -> pd.DataFrame:
            lower = f.model.re.theta_lower
            singular = np.any(np.abs(f.theta_tilde[:, lower == 0]) < SINGULAR_TOL, axis=1)
            return pd.DataFrame(
                {
                    "objective": f.objective,
                    "sigma": f.sigma,
                    "nobs": f.model.cp.n,
                    "evaluations": f.evaluations(),
                    "converged": f.converged,
                    "singular": singular,
                    "optimizer": [f.optsums[j].optimizer if j in f.optsums else BATCHED for j in range(len(f.names))],
                }
            )

        return self._stack(rows)

    @cached_property
    def fixef(self) -> pd.DataFrame:
        """β̂ per response (columns: X's, by R's names)."""
        return self._stack(lambda f: pd.DataFrame(f.beta, columns=f.model.frame.x_names))

    @cached_property
    def fixef_se(self) -> pd.DataFrame:
        """The standard errors of β̂ per response."""
        return self._stack(lambda f: pd.DataFrame(f.se, columns=f.model.frame.x_names))

    @cached_property
    def theta(self) -> pd.DataFrame:
        """θ per response, as lme4's ``getME(m, "theta")`` names it (``group.effect``, ``group.row.column``)."""
        return self._stack(lambda f: pd.DataFrame(f.theta_tilde / np.sqrt(f.c), columns=_theta_names(f.model.re)))

    @cached_property
    def varcorr(self) -> pd.DataFrame:
        """Variances and covariances per response (``group.effect``, ``group.effect1.effect2``, ``Residual``)."""
        return self._stack(lambda f: _variances(f)[0])

    @cached_property
    def sdcor(self) -> pd.DataFrame:
        """Standard deviations and correlations per response, with :attr:`varcorr`'s columns."""
        return self._stack(lambda f: _variances(f)[1])

    @property
    def converged(self) -> pd.Series:
        return self.table["converged"]

    def __repr__(self) -> str:
        t = self.table
        return (
            f"ManyResult: {self.formula} fitted to {len(self)} responses by {'REML' if self.REML else 'ML'}; "
            f"{int(t['converged'].sum())} converged, {int(t['singular'].sum())} singular"
        )


def _theta_names(re) -> list[str]:
    out = []
    for name, t in zip(group_names(re), re.terms):
        for i, j in t.tril:
            out.append(f"{name}.{t.effects[i]}" if i == j else f"{name}.{t.effects[i]}.{t.effects[j]}")
    return out


def _variances(f: ResponseFits) -> tuple[pd.DataFrame, pd.DataFrame]:
    """σ²TT' per term for every response, in ``varcorr_table``'s order: variances, then covariances."""
    re, theta = f.model.re, f.theta_tilde / np.sqrt(f.c)
    var, sd = {}, {}
    sigma2 = f.sigma**2
    for i, (name, t) in enumerate(zip(group_names(re), re.terms)):
        T = np.zeros((len(theta), t.k, t.k))
        for c, (a, b) in enumerate(t.tril):
            T[:, a, b] = theta[:, re.theta_offsets[i] + c]
        V = sigma2[:, None, None] * T @ np.swapaxes(T, 1, 2)
        s = np.sqrt(np.diagonal(V, axis1=1, axis2=2))
        for a in range(t.k):
            var[f"{name}.{t.effects[a]}"], sd[f"{name}.{t.effects[a]}"] = V[:, a, a], s[:, a]
        for a in range(t.k):
            for b in range(a + 1, t.k):
                key = f"{name}.{t.effects[a]}.{t.effects[b]}"
                with np.errstate(invalid="ignore", divide="ignore"):
                    corr = np.where((s[:, a] > 0) & (s[:, b] > 0), V[:, b, a] / (s[:, a] * s[:, b]), np.nan)
                var[key], sd[key] = V[:, b, a], corr
    var["Residual"], sd["Residual"] = sigma2, f.sigma
    return pd.DataFrame(var), pd.DataFrame(sd)
