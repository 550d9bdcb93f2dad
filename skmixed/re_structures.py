"""Fitting an LMM whose random-effect terms have covariance structures (``diag(1 + x | g)``, ``cs(...)``, ...).

The structure's parameters ψ (:mod:`skmixed.covstruct`: relative SDs and a correlation parameter) give each term's
template T(ψ), so θ(ψ) is T's lower triangle (:meth:`skmixed.reterms.RandomEffects.theta_from_psi`) and the profiled
deviance of ψ is lme4's of θ(ψ): Λ stays linear in θ, every evaluation is the ordinary PLS one.  θ(ψ) is not linear
in ψ, and the analytic gradients of :mod:`skmixed.backends` are in θ; the optimizer here is derivative-free
(BOBYQA, as lme4's default), over ψ with lme4's bounds (SDs ≥ 0), ending in the convergence checks of
:func:`skmixed.convergence.minimize`.  The summary returned holds θ(ψ̂) (and θ(ψ₀), the log in θ), so the fitted
result is an ordinary :class:`~skmixed.LmerResult`; ψ̂ is ``result.re_parameters``.
"""

from __future__ import annotations

import numpy as np

from .convergence import minimize
from .optimizers import OptSummary, bobyqa
from .options import lmer_start


def optimize_psi(devfun, start, check_conv: bool, maxeval: int) -> OptSummary:
    """Minimise ``devfun`` (a :class:`~skmixed.deviance.ProfiledDeviance`) over ψ; ``start``: θ or None."""
    re = devfun.model.re
    theta0 = lmer_start(start, re)
    psi0 = re.psi_init if theta0 is None else re.psi_from_theta(theta0)
    lower = re.psi_lower

    def f(psi):
        try:
            theta = re.theta_from_psi(psi)
        except np.linalg.LinAlgError:  # a correlation at ±1: outside the structure's open region
            return np.inf
        return devfun.value(theta)

    hessian = devfun.model.cp.n < 10_000 and len(psi0) < 10
    optsum = minimize(
        lambda x0: bobyqa(f, x0, lower, maxeval=maxeval), psi0, lower, f=f, check=check_conv, hessian=hessian
    )
    optsum.optimizer = "nlopt LN_BOBYQA over the covariance structures' parameters ψ (derivative-free)"
    optsum.messages.append(f"ψ = {np.array2string(optsum.theta, precision=6)}")
    optsum.map(re.theta_from_psi, lambda value: value)
    return optsum
