"""Exponential families for GLMMs, with R's numerics (links: :mod:`skmixed.links`).

A family gives, for the conditional distribution of y given the random effects,
the link ``η = g(μ)``, the variance function ``V(μ)``, the deviance residuals
``d_i(y, μ)`` (``Σ d_i`` is the deviance) and ``aic(...)``: −2 log-likelihood of the
observations, as R's ``family()$aic`` computes it.  lme4's Laplace objective uses
``aic`` and the penalized IRLS uses the deviance.  For families with a dispersion
(Gamma, inverse Gaussian, Gaussian) ``aic`` plugs in ``φ̂ = deviance / Σw`` and adds
2 for it, exactly as R does; the IRLS weights ``w μ'(η)² / V(μ)`` ignore φ.

The module is over 400 lines on purpose: one short class per R family, which are read and
checked side by side against R's ``family`` objects; :func:`get_family` needs them all.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
from scipy import special

from .exceptions import DataError, OptionError
from .links import LINKS, Link


def _is_integer(x: np.ndarray, tol: float = 1e-3) -> bool:
    return bool(np.all(np.abs(x - np.round(x)) <= tol))


class Family:
    """Base class: a distribution with a link.  Subclasses set ``links``, ``default_link`` and the formulas."""

    name = ""  # R's family name
    links: tuple[str, ...] = ()
    default_link = ""
    canonical_link: str | None = None  # with it, observed and expected information agree
    has_dispersion = False
    positive_mean = False  # μ > 0 (counts, positive continuous responses)

    def __init__(self, link: str | None = None):
        link = self.default_link if link is None else link
        if not isinstance(link, str) or link not in self.links:
            raise OptionError(
                f"the link {link!r} is not available for the {self.name} family; use one of {', '.join(self.links)}"
            )
        self.link: Link = LINKS[link]()

    # --- what a family defines ------------------------------------------------
    def variance(self, mu):
        raise NotImplementedError

    def variance_deriv(self, mu):
        """V'(μ)."""
        raise NotImplementedError

    def dev_resids(self, y, mu, wt):
        raise NotImplementedError

    def aic(self, y, n, mu, wt, dev: float) -> float:
        """−2 log-likelihood (R's ``family()$aic``); ``n`` are binomial trials, ``dev`` = Σ deviance residuals."""
        raise NotImplementedError

    def aic_minus_deviance(self, y, n, wt) -> float | None:
        """``aic − Σd_i`` when it does not depend on μ (then −2 log-likelihood = deviance + this), else None."""
        return None

    def deviance(self, y, wt):
        """μ ↦ deviance residuals at fixed y, w; families precompute what depends on y only (PIRLS calls it often)."""
        return lambda mu: self.dev_resids(y, mu, wt)

    def deviance_sum(self, y, wt):
        """μ ↦ Σd_i (the deviance) at fixed y, w: PIRLS evaluates it at every trial point; families whose
        residuals are linear in a few functions of μ take it as dot products with precomputed weights."""
        dev = self.deviance(y, wt)
        return lambda mu: float(np.add.reduce(dev(mu)))

    def _constant_at_start(self, y, n, wt) -> float:
        mu = self.mustart(y, wt)
        dev = float(np.sum(self.dev_resids(y, mu, wt)))
        return self.aic(y, n, mu, wt, dev) - dev

    def mustart(self, y, wt):
        """Starting means, as R's ``family()$initialize``."""
        return np.asarray(y, dtype=float).copy()

    def check_response(self, y: np.ndarray, wt: np.ndarray) -> None:
        """Raise :class:`DataError` for y outside the support; warn for suspect values."""

    def valid_mu(self, mu) -> bool:
        mu = np.asarray(mu)
        if not mu.size:
            return True
        if self.positive_mean:  # NaN fails both comparisons
            return bool(mu.min() > 0 and mu.max() < np.inf)
        return bool(np.isfinite(mu).all())

    # --- shared ----------------------------------------------------------------
    def linkfun(self, mu):
        return self.link.linkfun(mu)

    def linkinv(self, eta):
        return self.link.linkinv(eta)

    def mu_eta(self, eta):
        return self.link.mu_eta(eta)

    @property
    def is_canonical(self) -> bool:
        return self.link.name == self.canonical_link

    @property
    def mu_eta_is_variance(self) -> bool:
        """Whether μ'(η) = V(μ) (the canonical link of the binomial, Poisson and Gaussian families): then the IRLS
        weights are w V, the working residuals (y − μ)/V and dW/dη = w V V', with no call of the link's μ'."""
        return self.variance_is_mu_eta and self.is_canonical

    variance_is_mu_eta = False  # μ' = V under the canonical link (not for the Gamma's and inverse Gaussian's)

    def observed_weights(self, y, mu, eta, wt):
        """−∂²/∂η² of the log-likelihood: the IRLS weights w μ'²/V minus (y − μ) w (μ''/V − μ'² V'/V²)."""
        d, v = self.mu_eta(eta), self.variance(mu)
        return wt * (d**2 / v - (y - mu) * (self.link.mu_eta2(eta) / v - d**2 * self.variance_deriv(mu) / v**2))

    def weights_deriv(self, mu, eta, wt):
        """dW/dη of the IRLS weights W = w μ'²/V: w (2μ'μ''/V − μ'³V'/V²) (the Laplace gradient's log-determinant)."""
        if self.mu_eta_is_variance:  # μ' = V, μ'' = V'V
            return wt * self.variance(mu) * self.variance_deriv(mu)
        d, v = self.mu_eta(eta), self.variance(mu)
        return wt * (2 * d * self.link.mu_eta2(eta) / v - d**3 * self.variance_deriv(mu) / v**2)

    def dev_resids_deriv(self, y, mu, wt):
        """∂d_i/∂μ_i = −2 w (y − μ)/V(μ), for every exponential family."""
        return -2 * wt * (y - mu) / self.variance(mu)

    def aic_deriv(self, y, n, mu, wt, dev: float):
        """∂aic/∂μ_i (through φ̂ = dev/Σw as well, for families with a dispersion); here, where aic − Σd_i is free
        of μ, the deviance's."""
        return self.dev_resids_deriv(y, mu, wt)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(link={self.link.name!r})"

    def describe(self) -> str:
        """lme4's summary line, e.g. ``binomial  ( logit )``."""
        return f"{self.name}  ( {self.link.name} )"

    def __eq__(self, other) -> bool:
        return (
            type(self) is type(other)
            and self.link.name == other.link.name
            and getattr(self, "theta", None) == getattr(other, "theta", None)
        )

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.link.name))


def _check_positive(name: str, y: np.ndarray, family: str) -> None:
    if np.any(y <= 0):
        raise DataError(
            f"the {family} family needs a positive response, but {name} has {int(np.sum(y <= 0))} values <= 0 "
            f"(smallest {y.min():g}); remove them or choose a family whose support includes them"
        )


def _check_counts(y: np.ndarray, family: str) -> None:
    if np.any(y < 0):
        raise DataError(
            f"the {family} family models counts, but the response has {int(np.sum(y < 0))} negative values "
            f"(smallest {y.min():g}); counts must be 0, 1, 2, ..."
        )
    if not _is_integer(y, 1e-8):
        warnings.warn(
            f"the response has non-integer values for the {family} family "
            f"(e.g. {y[np.abs(y - np.round(y)) > 1e-8][0]:g}); "
            "the likelihood uses the continuous extension through the gamma function",
            UserWarning,
            stacklevel=4,
        )


class Binomial(Family):
    """y = proportion of successes out of ``wt`` trials; V(μ) = μ(1 − μ)."""

    name = "binomial"
    links = ("logit", "probit", "cloglog", "log", "cauchit")
    default_link = canonical_link = "logit"
    variance_is_mu_eta = True

    def variance(self, mu):
        return mu * (1 - mu)

    def variance_deriv(self, mu):
        return 1 - 2 * mu

    def valid_mu(self, mu) -> bool:
        mu = np.asarray(mu)
        return bool(mu.min() > 0 and mu.max() < 1) if mu.size else True  # NaN fails both comparisons

    def dev_resids(self, y, mu, wt):
        return (
            2
            * wt
            * (y * np.log(np.where(y > 0, y, 1.0) / mu) + (1 - y) * np.log(np.where(y < 1, 1 - y, 1.0) / (1 - mu)))
        )

    def aic_minus_deviance(self, y, n, wt):
        m = n if np.any(n > 1) else wt
        return self._constant_at_start(y, n, wt) if _is_integer(m * y, 1e-8) else None

    def deviance(self, y, wt):
        if np.all((y == 0) | (y == 1)):
            success = y == 1
            return lambda mu: -2 * wt * np.log(np.where(success, mu, 1 - mu))
        c = special.xlogy(y, y) + special.xlogy(1 - y, 1 - y)
        return lambda mu: 2 * wt * (c - y * np.log(mu) - (1 - y) * np.log(1 - mu))

    def deviance_sum(self, y, wt):
        """Σd_i = Σ 2w(c − y log μ − (1 − y) log(1 − μ)), c = y log y + (1 − y) log(1 − y): two dot products
        (for a 0/1 response, one logarithm per row: −2 Σ w log(μ or 1 − μ))."""
        if np.all((y == 0) | (y == 1)):
            success, w2 = y == 1, -2 * wt
            return lambda mu: float(w2 @ np.log(np.where(success, mu, 1 - mu)))
        c = special.xlogy(y, y) + special.xlogy(1 - y, 1 - y)
        constant, a, b = float(np.sum(2 * wt * c)), 2 * wt * y, 2 * wt * (1 - y)
        return lambda mu: constant - float(a @ np.log(mu)) - float(b @ np.log(1 - mu))

    @staticmethod
    def _counts(y, n, wt):
        """Successes k and trials m (rounded, as R's binomial aic), and the weight w/m of each row's log-likelihood.

        The trials are ``n`` (a ``cbind`` response) or else the prior weights (a proportion with weights = trials)."""
        m = n if np.any(n > 1) else wt
        scale = np.divide(wt, m, out=np.zeros_like(wt, dtype=float), where=m > 0)
        return np.round(m * y), np.round(m), scale

    def aic(self, y, n, mu, wt, dev):
        k, m, scale = self._counts(y, n, wt)
        logp = special.gammaln(m + 1) - special.gammaln(k + 1) - special.gammaln(m - k + 1)
        logp = logp + special.xlogy(k, mu) + special.xlog1py(m - k, -mu)
        return float(-2 * np.sum(scale * logp))

    def aic_deriv(self, y, n, mu, wt, dev):
        k, m, scale = self._counts(y, n, wt)
        return -2 * scale * (k / mu - (m - k) / (1 - mu))

    def mustart(self, y, wt):
        return (wt * y + 0.5) / (wt + 1)

    def check_response(self, y, wt):
        if np.any((y < 0) | (y > 1)):
            bad = y[(y < 0) | (y > 1)]
            raise DataError(
                f"a binomial response must be 0/1, a proportion between 0 and 1 (with weights = trials) or "
                f"cbind(successes, failures); it has {len(bad)} values outside [0, 1] (e.g. {bad[0]:g})"
            )
        if not _is_integer(wt * y):
            warnings.warn(
                "non-integer number of successes in a binomial model: a proportion response needs weights = "
                "number of trials",
                UserWarning,
                stacklevel=3,
            )


class Poisson(Family):
    """Counts; V(μ) = μ."""

    name = "poisson"
    links = ("log", "sqrt", "identity")
    positive_mean = True
    default_link = canonical_link = "log"
    variance_is_mu_eta = True

    def variance(self, mu):
        return mu

    def variance_deriv(self, mu):
        return np.ones_like(mu)

    def dev_resids(self, y, mu, wt):
        return 2 * wt * (y * np.log(np.where(y > 0, y, 1.0) / mu) - (y - mu))

    def aic_minus_deviance(self, y, n, wt):
        return self._constant_at_start(y, n, wt)

    def deviance(self, y, wt):
        c = special.xlogy(y, y) - y
        return lambda mu: 2 * wt * (c - y * np.log(mu) + mu)

    def deviance_sum(self, y, wt):
        """Σd_i = Σ 2w(y log y − y − y log μ + μ): two dot products."""
        constant, a, b = float(np.sum(2 * wt * (special.xlogy(y, y) - y))), 2 * wt * y, 2 * wt
        return lambda mu: constant - float(a @ np.log(mu)) + float(b @ mu)

    def aic(self, y, n, mu, wt, dev):
        logp = special.xlogy(y, mu) - mu - special.gammaln(y + 1)
        return float(-2 * np.sum(wt * logp))

    def mustart(self, y, wt):
        return y + 0.1

    def check_response(self, y, wt):
        _check_counts(y, self.name)


class Gamma(Family):
    """Positive continuous y; V(μ) = μ², dispersion φ."""

    name = "Gamma"
    links = ("inverse", "log", "identity")
    positive_mean = True
    default_link = canonical_link = "inverse"
    has_dispersion = True

    def variance(self, mu):
        return mu**2

    def variance_deriv(self, mu):
        return 2 * mu

    def dev_resids(self, y, mu, wt):
        return -2 * wt * (np.log(y / mu) - (y - mu) / mu)

    def aic(self, y, n, mu, wt, dev):
        disp = dev / np.sum(wt)
        shape, scale = 1 / disp, mu * disp
        logp = -special.gammaln(shape) - shape * np.log(scale) + (shape - 1) * np.log(y) - y / scale
        return float(-2 * np.sum(wt * logp) + 2)

    def aic_deriv(self, y, n, mu, wt, dev):
        """At fixed φ, ∂aic/∂μ_i = (∂d_i/∂μ_i)/φ; φ̂ = dev/Σw adds ∂aic/∂φ · (∂d_i/∂μ_i)/Σw."""
        wsum = np.sum(wt)
        disp = dev / wsum
        daic_ddisp = (
            -2 * np.sum(wt * (special.digamma(1 / disp) + np.log(mu * disp) - np.log(y) + y / mu - 1)) / disp**2
        )
        return self.dev_resids_deriv(y, mu, wt) * (1 / disp + daic_ddisp / wsum)

    def check_response(self, y, wt):
        _check_positive("the response", y, self.name)


class InverseGaussian(Family):
    """Positive continuous y; V(μ) = μ³, dispersion φ."""

    name = "inverse.gaussian"
    links = ("1/mu^2", "inverse", "log", "identity")
    positive_mean = True
    default_link = canonical_link = "1/mu^2"
    has_dispersion = True

    def variance(self, mu):
        return mu**3

    def variance_deriv(self, mu):
        return 3 * mu**2

    def dev_resids(self, y, mu, wt):
        return wt * (y - mu) ** 2 / (y * mu**2)

    def aic(self, y, n, mu, wt, dev):
        wsum = np.sum(wt)
        return float(wsum * (np.log(dev / wsum * 2 * np.pi) + 1) + 3 * np.sum(np.log(y) * wt) + 2)

    def aic_deriv(self, y, n, mu, wt, dev):
        return self.dev_resids_deriv(y, mu, wt) * (np.sum(wt) / dev)

    def check_response(self, y, wt):
        _check_positive("the response", y, self.name)


class Gaussian(Family):
    """V(μ) = 1, dispersion φ = σ².  With the identity link this is a linear mixed model (use ``lmer``)."""

    name = "gaussian"
    links = ("identity", "log", "inverse")
    default_link = canonical_link = "identity"
    variance_is_mu_eta = True
    has_dispersion = True

    def variance(self, mu):
        return np.ones_like(mu)

    def variance_deriv(self, mu):
        return np.zeros_like(mu)

    def dev_resids(self, y, mu, wt):
        return wt * (y - mu) ** 2

    def aic(self, y, n, mu, wt, dev):
        nobs = len(y)
        return float(nobs * (np.log(2 * np.pi * dev / nobs) + 1) + 2 - np.sum(np.log(wt)))

    def aic_deriv(self, y, n, mu, wt, dev):
        return self.dev_resids_deriv(y, mu, wt) * (len(y) / dev)


class NegativeBinomial(Family):
    """Overdispersed counts; V(μ) = μ + μ²/θ.  ``theta=None``: θ is estimated (lme4's ``glmer.nb``)."""

    links = ("log", "sqrt", "identity")
    positive_mean = True
    default_link = "log"

    def __init__(self, theta: float | None = None, link: str | None = None):
        if theta is not None and not (isinstance(theta, (int, float)) and np.isfinite(theta) and theta > 0):
            raise OptionError(
                f"the negative binomial θ must be a positive number (or None to estimate it), not {theta!r}"
            )
        self.theta = None if theta is None else float(theta)
        super().__init__(link)

    @property
    def name(self) -> str:
        """R's name, e.g. ``Negative Binomial(2.137)`` (θ rounded to 4 decimals, as MASS prints it)."""
        if self.theta is None:
            return "Negative Binomial"
        return f"Negative Binomial({np.format_float_positional(round(self.theta, 4), trim='-')})"

    def with_theta(self, theta: float) -> NegativeBinomial:
        return NegativeBinomial(theta, self.link.name)

    def _theta(self) -> float:
        if self.theta is None:
            raise ValueError("the negative binomial θ is not set")
        return self.theta

    def variance(self, mu):
        return mu + mu**2 / self._theta()

    def variance_deriv(self, mu):
        return 1 + 2 * mu / self._theta()

    def dev_resids(self, y, mu, wt):
        th = self._theta()
        return 2 * wt * (y * np.log(np.where(y > 0, y, 1.0) / mu) - (y + th) * np.log((y + th) / (mu + th)))

    def aic_minus_deviance(self, y, n, wt):
        return None if self.theta is None else self._constant_at_start(y, n, wt)

    def deviance(self, y, wt):
        if self.theta is None:  # to be estimated: nothing to evaluate yet
            return super().deviance(y, wt)
        th = self.theta
        c = special.xlogy(y, y) - (y + th) * np.log(y + th)
        return lambda mu: 2 * wt * (c - y * np.log(mu) + (y + th) * np.log(mu + th))

    def aic(self, y, n, mu, wt, dev):
        th = self._theta()
        logp = (
            special.gammaln(th + y)
            - special.gammaln(th)
            - special.gammaln(y + 1)
            + th * np.log(th)
            + special.xlogy(y, mu)
            - (y + th) * np.log(mu + th)
        )
        return float(-2 * np.sum(wt * logp))

    def mustart(self, y, wt):
        return y + (y == 0) / 6

    def check_response(self, y, wt):
        _check_counts(y, "negative binomial")

    def __repr__(self) -> str:
        return f"NegativeBinomial(theta={self.theta!r}, link={self.link.name!r})"


def theta_ml(y: np.ndarray, mu: np.ndarray, wt: np.ndarray, limit: int = 25, eps: float = 1e-4) -> float:
    """Maximum-likelihood negative-binomial θ for fixed means μ (Newton's method on the score, as MASS::theta.ml)."""

    def score(t):
        return np.sum(
            wt * (special.digamma(t + y) - special.digamma(t) + np.log(t) + 1 - np.log(t + mu) - (y + t) / (mu + t))
        )

    def info(t):
        return np.sum(
            wt
            * (-special.polygamma(1, t + y) + special.polygamma(1, t) - 1 / t + 2 / (mu + t) - (y + t) / (mu + t) ** 2)
        )

    t = np.sum(wt) / np.sum(wt * (y / mu - 1) ** 2)
    for _ in range(limit):
        t = abs(t)
        step = score(t) / info(t)
        t += step
        if abs(step) <= eps:
            break
    return float(max(t, 1e-8))


_NAMES = {
    "binomial": Binomial,
    "poisson": Poisson,
    "gamma": Gamma,
    "inverse_gaussian": InverseGaussian,
    "inverse.gaussian": InverseGaussian,
    "inversegaussian": InverseGaussian,
    "gaussian": Gaussian,
    "negative_binomial": NegativeBinomial,
    "negative.binomial": NegativeBinomial,
    "negbin": NegativeBinomial,
}

_CALL = re.compile(r"^\s*([A-Za-z_.]+)\s*(?:\(\s*(?:link\s*=\s*)?(?:['\"]([^'\"]*)['\"])?\s*\))?\s*$")


def get_family(family) -> Family:
    """A :class:`Family` from an instance, a name (``"binomial"``, ``"poisson"``, ``"gamma"``, ...) or an
    R-style call such as ``'binomial(link = "probit")'``."""
    if isinstance(family, Family):
        return family
    if isinstance(family, type) and issubclass(family, Family):
        return family()
    if not isinstance(family, str):
        raise OptionError(
            f"family must be a name such as 'binomial' or an object from skmixed.families, not {family!r}"
        )
    m = _CALL.match(family)
    key = m.group(1).lower() if m else family.strip().lower()
    if key not in _NAMES:
        raise OptionError(
            f"unknown family {family!r}; use one of 'binomial', 'poisson', 'gamma', 'inverse_gaussian', "
            "'gaussian', 'negative_binomial' or an object such as skmixed.families.Binomial(link='probit')"
        )
    link = m.group(2) if m else None
    return _NAMES[key](link=link) if link else _NAMES[key]()
