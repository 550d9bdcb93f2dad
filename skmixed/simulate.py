"""Responses simulated from a fitted model (lme4's ``simulate.merMod``): new random effects and new noise.

A replicate draws, for every term not conditioned on, one ``b_j ~ N(0, σ²TT')`` per level
(``b_j = σTu_j``, u standard normal; σ = 1 in a GLMM without dispersion), and then the response
given the linear predictor ``η = Xβ̂ + Σ Z_i b_i + offset`` plus the conditioned terms' BLUPs: for an
LMM ``y = η + σε/√w``, for a GLMM a draw from the family at μ = g⁻¹(η).  ``re_form`` names the
terms conditioned on, as lme4's ``re.form``: by default none (lme4's ``NA``), ``use_u=True`` all of
them (lme4's ``use.u``, ``re.form = NULL``), a formula such as ``"~(1 | g)"`` those it lists.

Each replicate has its own random stream, spawned from ``seed`` (numpy's ``SeedSequence``): replicate
i is the same whether drawn alone, among others or in another process, and the parametric bootstrap
(:mod:`skmixed.bootstrap`) refits exactly the responses ``simulate`` returns for the same seed.

Two choices differ from lme4 on purpose: an LMM's noise has variance σ²/w with prior weights w (lme4
draws σ² whatever the weights, unlike the model it fitted), and an inverse Gaussian's shape is w/σ²
(lme4 passes w/σ, not the dispersion's inverse).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .exceptions import DataError, OptionError
from .families import Binomial, Gamma, Gaussian, InverseGaussian, NegativeBinomial, Poisson
from .grouping import grouping_factor
from .model_matrix import encode_new
from .prediction import select_terms
from .variables import model_variables, prepare_data


def replicate_seeds(nsim: int, seed) -> list[np.random.SeedSequence]:
    """One independent seed per replicate, spawned from ``seed`` (an int, a SeedSequence or None)."""
    if isinstance(nsim, bool) or not isinstance(nsim, (int, np.integer)) or nsim < 1:
        raise OptionError(f"nsim must be a whole number of at least 1, not {nsim!r}")
    if seed is not None and not isinstance(seed, (int, np.integer, np.random.SeedSequence)):
        raise OptionError(f"seed must be None, an int or a numpy SeedSequence, not {type(seed).__name__}")
    root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return root.spawn(int(nsim))


@dataclass
class _Term:
    """A term whose random effects are drawn: the rows' level codes (−1: none), their values, and T·σ."""

    codes: np.ndarray
    values: np.ndarray
    n_levels: int
    scale: np.ndarray  # σT (k × k)


class Simulator:
    """The fixed part of the simulation (η of the conditioned terms, the terms to draw, weights) and its draws."""

    def __init__(self, result, newdata: pd.DataFrame | None = None, re_form=None, use_u: bool = False):
        from .glmm_results import GlmerResult

        self.result, self.glmm = result, isinstance(result, GlmerResult)
        re = result.re
        if use_u and re_form is not None:
            raise OptionError("give either use_u=True (condition on every random effect) or re_form, not both")
        conditioned = list(range(len(re.terms))) if use_u else [] if re_form is None else select_terms(re, re_form)
        drawn = [i for i in range(len(re.terms)) if i not in conditioned]
        keep = "~0" if not conditioned else "+".join(f"({re.terms[i].bar})" for i in conditioned)
        self.eta = result.predict(newdata, re_form=keep if conditioned else "~0")
        sigma = 1.0 if self.glmm else result.sigma  # a GLMM's b ~ N(0, ΛΛ'), unscaled, as lme4 draws it
        self.sigma = result.sigma
        thetas = [re.term_theta(result.theta, i) for i in range(len(re.terms))]
        if newdata is None:
            terms = [re.terms[i] for i in drawn]
            self.terms = [
                _Term(t.factor.codes, t.values, t.n_levels, sigma * t.T(thetas[i])) for i, t in zip(drawn, terms)
            ]
            self.weights = result.frame.weights
            self.index = result.frame.data.index
        else:
            self.terms = self._new_terms(newdata, drawn, thetas, sigma)
            self.weights = np.ones(len(newdata))  # as lme4: new data carry no prior weights
            self.index = newdata.index
        self.family = result.family if self.glmm else None
        self._check_family()

    def _new_terms(self, newdata: pd.DataFrame, drawn: list[int], thetas, sigma) -> list[_Term]:
        """The drawn terms on new data: every level present (fitted or new) gets its own draw."""
        result, re = self.result, self.result.re
        bars = [re.terms[i].bar for i in drawn]
        variables = model_variables(result.parsed, newdata, response=False, bars=bars)
        prepared, _ = prepare_data(variables, newdata, fit=False)
        out = []
        for i in drawn:
            t = re.terms[i]
            factor = grouping_factor(t.group, prepared)
            values = np.asarray(encode_new(t.spec, prepared, f"random-effects term {t.bar}"), dtype=float)
            out.append(_Term(factor.codes, np.nan_to_num(values), len(factor.levels), sigma * t.T(thetas[i])))
        return out

    def _check_family(self) -> None:
        family, w = self.family, self.weights
        if isinstance(family, Binomial) and np.any(np.abs(w - np.round(w)) > 1e-8):
            raise DataError(
                "cannot simulate a binomial response with non-integer prior weights (the numbers of trials), as lme4"
            )
        if isinstance(family, (Poisson, NegativeBinomial)) and np.any(w != 1):
            warnings.warn(f"ignoring prior weights: a {family.name} draw has no weights, as in lme4", UserWarning, 4)

    def linear_predictor(self, rng: np.random.Generator) -> np.ndarray:
        """η plus one draw of the terms not conditioned on."""
        eta = self.eta.copy()
        for t in self.terms:
            b = rng.standard_normal((t.n_levels, t.scale.shape[0])) @ t.scale.T
            contribution = np.einsum("rk,rk->r", t.values, b[np.maximum(t.codes, 0)])
            eta += np.where(t.codes >= 0, contribution, 0.0)
        return eta

    def response(self, rng: np.random.Generator) -> np.ndarray:
        """One replicate's response on the model's scale (a binomial's as the proportion of its trials)."""
        eta = self.linear_predictor(rng)
        w = self.weights
        if not self.glmm:
            return eta + self.sigma * rng.standard_normal(len(eta)) / np.sqrt(w)
        family = self.family
        mu = family.linkinv(eta)
        if isinstance(family, Binomial):
            trials = np.round(w).astype(np.int64)
            return np.divide(rng.binomial(trials, np.clip(mu, 0, 1)), trials, out=np.zeros(len(mu)), where=trials > 0)
        if isinstance(family, Poisson):
            return rng.poisson(mu).astype(float)
        if isinstance(family, NegativeBinomial):
            return rng.negative_binomial(family.theta, family.theta / (family.theta + mu)).astype(float)
        shape = w / self.sigma**2
        if isinstance(family, Gamma):
            return rng.gamma(shape, mu / shape)
        if isinstance(family, InverseGaussian):
            return rng.wald(mu, shape)
        if isinstance(family, Gaussian):
            return mu + self.sigma * rng.standard_normal(len(mu)) / np.sqrt(w)
        raise OptionError(f"simulation is not available for the {family.name} family")


def simulate(
    result, nsim: int = 1, seed=None, newdata: pd.DataFrame | None = None, re_form=None, use_u: bool = False
) -> pd.DataFrame:
    """``nsim`` responses simulated from the fitted model, as columns ``sim_1``, ... (see the module docstring).

    A binomial response given as ``cbind(successes, failures)`` is simulated as successes (the failures are
    the trials less these); other binomial responses as the proportion of their trials (0/1 for one trial).
    """
    seeds = replicate_seeds(nsim, seed)
    sim = Simulator(result, newdata, re_form, use_u)
    columns = {f"sim_{i + 1}": sim.response(np.random.default_rng(s)) for i, s in enumerate(seeds)}
    frame = result.frame
    if newdata is None and frame.trials is not None:  # cbind(s, f): successes, as lme4's first column
        columns = {name: np.round(y * frame.weights) for name, y in columns.items()}
    return pd.DataFrame(columns, index=sim.index)
