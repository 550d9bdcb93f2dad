"""Link functions ``η = g(μ)`` for GLMMs, with R's numerics (``make.link`` and its C code's clamps)."""

from __future__ import annotations

import numpy as np
from scipy import special

EPS = np.finfo(float).eps


class Link:
    """``η = g(μ)``: ``linkfun`` g, ``linkinv`` g⁻¹, ``mu_eta`` dμ/dη (clamped as R's C code clamps them)
    and ``mu_eta2`` d²μ/dη² (for Newton steps of PIRLS and the Laplace gradient)."""

    name = ""

    def linkfun(self, mu):
        raise NotImplementedError

    def linkinv(self, eta):
        raise NotImplementedError

    def mu_eta(self, eta):
        raise NotImplementedError

    def mu_eta2(self, eta):
        raise NotImplementedError


def _within(eta, bound: float) -> bool:
    """Whether ``eta`` is a non-empty numpy array (at least 1-d) of numbers all within ±``bound`` (NaN is not)."""
    return isinstance(eta, np.ndarray) and eta.ndim > 0 and eta.size > 0 and bool(np.abs(eta).max() <= bound)


class Logit(Link):
    name = "logit"

    def linkfun(self, mu):
        return np.log(mu / (1 - mu))

    # PIRLS calls these a few times per iteration on small arrays, where numpy's per-call overhead is the cost:
    # R's clamps at ±30 are applied (np.minimum(np.maximum(...)): np.clip value for value without its overhead)
    # only when some η is there (or is NaN), or η is not an array of numbers (a Series, a scalar)
    def linkinv(self, eta):
        if _within(eta, 30.0):
            e = np.exp(eta)
            return e / (1 + e)
        e = np.exp(np.minimum(np.maximum(eta, -30.0), 30.0))
        return np.where(eta < -30, EPS, np.where(eta > 30, 1 / (1 + EPS), e / (1 + e)))

    def mu_eta(self, eta):
        if _within(eta, 30.0):
            e = np.exp(eta)
            return e / (1 + e) ** 2
        e = np.exp(np.minimum(np.maximum(eta, -30.0), 30.0))
        return np.where(np.abs(eta) > 30, EPS, e / (1 + e) ** 2)

    def mu_eta2(self, eta):
        mu = special.expit(eta)
        return mu * (1 - mu) * (1 - 2 * mu)


class Probit(Link):
    name = "probit"
    _thresh = -special.ndtri(EPS)

    def linkfun(self, mu):
        return special.ndtri(mu)

    def linkinv(self, eta):
        return special.ndtr(np.clip(eta, -self._thresh, self._thresh))

    def mu_eta(self, eta):
        return np.maximum(np.exp(-0.5 * eta**2) / np.sqrt(2 * np.pi), EPS)

    def mu_eta2(self, eta):
        return -eta * np.exp(-0.5 * eta**2) / np.sqrt(2 * np.pi)


class Cauchit(Link):
    name = "cauchit"
    _thresh = -np.tan(np.pi * (EPS - 0.5))

    def linkfun(self, mu):
        return np.tan(np.pi * (mu - 0.5))

    def linkinv(self, eta):
        return 0.5 + np.arctan(np.clip(eta, -self._thresh, self._thresh)) / np.pi

    def mu_eta(self, eta):
        return np.maximum(1 / (np.pi * (1 + eta**2)), EPS)

    def mu_eta2(self, eta):
        return -2 * eta / (np.pi * (1 + eta**2) ** 2)


class CLogLog(Link):
    name = "cloglog"

    def linkfun(self, mu):
        return np.log(-np.log1p(-mu))

    def linkinv(self, eta):
        return np.clip(-np.expm1(-np.exp(np.minimum(eta, 700.0))), EPS, 1 - EPS)

    def mu_eta(self, eta):
        eta = np.minimum(eta, 700.0)
        return np.maximum(np.exp(eta - np.exp(eta)), EPS)

    def mu_eta2(self, eta):
        eta = np.minimum(eta, 700.0)
        return np.exp(eta - np.exp(eta)) * (1 - np.exp(eta))


class Log(Link):
    name = "log"

    def linkfun(self, mu):
        return np.log(mu)

    def linkinv(self, eta):
        return np.maximum(np.exp(np.minimum(eta, 700.0)), EPS)

    def mu_eta(self, eta):
        return np.maximum(np.exp(np.minimum(eta, 700.0)), EPS)

    def mu_eta2(self, eta):
        return np.exp(np.minimum(eta, 700.0))


class Identity(Link):
    name = "identity"

    def linkfun(self, mu):
        return np.asarray(mu, dtype=float)

    def linkinv(self, eta):
        return np.asarray(eta, dtype=float)

    def mu_eta(self, eta):
        return np.ones_like(eta, dtype=float)

    def mu_eta2(self, eta):
        return np.zeros_like(eta, dtype=float)


class Inverse(Link):
    name = "inverse"

    def linkfun(self, mu):
        return 1 / mu

    def linkinv(self, eta):
        return 1 / eta

    def mu_eta(self, eta):
        return -1 / eta**2

    def mu_eta2(self, eta):
        return 2 / eta**3


class Sqrt(Link):
    name = "sqrt"

    def linkfun(self, mu):
        return np.sqrt(mu)

    def linkinv(self, eta):
        return eta**2

    def mu_eta(self, eta):
        return 2 * eta

    def mu_eta2(self, eta):
        return np.full_like(eta, 2.0, dtype=float)


class InverseSquare(Link):
    name = "1/mu^2"

    def linkfun(self, mu):
        return 1 / mu**2

    def linkinv(self, eta):
        return 1 / np.sqrt(eta)

    def mu_eta(self, eta):
        return -1 / (2 * eta**1.5)

    def mu_eta2(self, eta):
        return 3 / (4 * eta**2.5)


LINKS = {c.name: c for c in (Logit, Probit, Cauchit, CLogLog, Log, Identity, Inverse, Sqrt, InverseSquare)}
