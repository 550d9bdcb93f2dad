"""Fit one benchmark case with one peer library; run by ``python -m benchmarks --peers`` in the peers' virtualenv.

``python -m benchmarks.peer_fits PEER MODEL_JSON DATA.npz`` reads the data skmixed fitted (benchmarks/frames.py),
fits the model with the peer's public API as the case's own process does with skmixed (one untimed fit, then the
median of the case's repeats, pinned to one CPU: benchmarks/run_case.py), and prints one JSON line: the times, the
peer's objective on lme4's scale and its criterion. Only NumPy and pandas are imported here besides the peer, so
the module runs without skmixed.

Each peer's objective, on lme4's scale (the REML criterion, or −2 log-likelihood with lme4's constants; checked on
sleepstudy, 1743.628 REML / 1751.939 ML, on cbpp, 184.053, and on crossed_sparse_10k, 32327.515, in HISTORY.md):

- mixedlm: ``deviance`` of an ``lmer`` fit is the REML criterion or the ML deviance; a ``glmer`` fit's ``deviance``
  is the residual deviance, so −2 ``logLik()`` instead.
- glmm: −2 ``loglik`` (its ``deviance`` drops a data-only constant).
- gpboost: maximum likelihood only (no REML). Its default solver for grouped effects is iterative, and the
  likelihood it reports comes from stochastic trace and log-determinant estimates (0.15 below the exact value on
  crossed_sparse_10k), so the objective is its own ``neg_log_likelihood`` evaluated at its estimates with
  ``matrix_inversion_method="cholesky"`` (exact), after the timed fits. Its random coefficients are independent of
  the intercept, so models with correlated vector terms are not offered to it.

What each peer's formula syntax needs, the same model on the same rows: the fixed terms without grouping
parentheses (mixedlm), an ``a:b`` grouping as one interaction column (glmm, gpboost), a two-level factor response
as 0/1 with its second level the success (R's rule), ``cbind(s, n - s)`` as two count columns (glmm) or as the
proportion with the trials as weights (mixedlm, gpboost).
"""

from __future__ import annotations

import json
import re
import resource
import sys
import warnings
from dataclasses import dataclass

import numpy as np

from .frames import read_frame
from .run_case import pin_to_one_cpu, time_fits

PEERS = ("mixedlm", "glmm", "gpboost")
_TERM = re.compile(r"\(\s*([^()|]+?)\s*\|\s*([^()|]+?)\s*\)")
_CBIND = re.compile(r"^cbind\(\s*(\w+)\s*,\s*(.+)\)$")


@dataclass(frozen=True)
class Model:
    """A case's model as the peers need it: the response, the fixed terms, the random terms (effects, grouping)."""

    response: str
    fixed: str
    terms: tuple[tuple[str, str], ...]
    REML: bool
    family: str | None

    @classmethod
    def parse(cls, spec: dict) -> Model:
        lhs, rhs = (side.strip() for side in spec["formula"].split("~", 1))
        terms = tuple((effects.replace(" ", ""), group.strip()) for effects, group in _TERM.findall(rhs))
        fixed = _TERM.sub("", rhs).replace("(", " ").replace(")", " ")
        fixed = " + ".join(t.strip() for t in fixed.split("+") if t.strip()) or "1"
        return cls(lhs, fixed, terms, spec["REML"], spec["family"])

    @property
    def cbind(self) -> tuple[str, str] | None:
        """The successes' column and the failures' expression of a ``cbind(s, n - s)`` response."""
        match = _CBIND.match(self.response)
        return (match[1], match[2]) if match else None

    def formula(self, response: str, join_groups: bool) -> str:
        """lme4's formula with ``response`` on the left; ``join_groups``: an ``a:b`` grouping named ``a_b``."""
        random = [f"({e.replace('+', ' + ')} | {_group(g) if join_groups else g})" for e, g in self.terms]
        return f"{response} ~ {' + '.join([self.fixed, *random])}"


def _group(group: str) -> str:
    return group.replace(":", "_")


def unsupported(peer: str, model: Model) -> str | None:
    """Why ``peer`` cannot fit ``model`` (None when it can)."""
    if peer == "gpboost" and any(effects != "1" for effects, _ in model.terms):
        return "no correlated random slopes"
    return None


def prepare(frame, model: Model):
    """The columns every peer reads: 0/1 for a two-level factor response, counts, proportion and trials for a
    ``cbind`` response, one interaction factor for each ``a:b`` grouping. Not timed: a user's data would be so."""
    if model.cbind:
        successes, failures = model.cbind
        frame["_successes"] = frame[successes].astype(float)
        frame["_failures"] = frame.eval(failures).astype(float)
        frame["_trials"] = frame["_successes"] + frame["_failures"]
        frame["_proportion"] = frame["_successes"] / frame["_trials"]
    elif hasattr(frame[model.response], "cat"):
        frame[model.response] = (frame[model.response].cat.codes == 1).astype(float)
    for _, group in model.terms:
        if ":" in group:
            parts = [frame[g].astype(str) for g in group.split(":")]
            frame[_group(group)] = (parts[0].str.cat(parts[1:], sep=":")).astype("category")
    return frame


def _mixedlm(frame, model: Model):
    import mixedlm

    if model.family is None:
        return (lambda: mixedlm.lmer(model.formula(model.response, False), frame, REML=model.REML)), (
            lambda r: float(r.deviance)
        )
    kwargs = {"family": mixedlm.families.Binomial()}
    response = model.response
    if model.cbind:
        response, kwargs["weights"] = "_proportion", frame["_trials"].to_numpy()
    formula = model.formula(response, False)
    return (lambda: mixedlm.glmer(formula, frame, **kwargs)), (lambda r: -2.0 * float(r.logLik()))


def _glmm(frame, model: Model):
    import glmm

    response = "cbind(_successes, _failures)" if model.cbind else model.response
    formula = model.formula(response, True)
    family = model.family or "gaussian"
    reml = model.REML if model.family is None else None
    # lmerTest's df are not part of skmixed's fit either (they are computed by summary())
    return (lambda: glmm.fit(frame, formula, family=family, reml=reml, satterthwaite=False)), (
        lambda r: -2.0 * float(r.loglik)
    )


def _gpboost(frame, model: Model):
    import formulaic
    import gpboost

    groups = [_group(g) for _, g in model.terms]
    if model.family is None:
        y, likelihood, weights = frame[model.response].to_numpy(float), "gaussian", None
    elif model.cbind:
        y, likelihood, weights = frame["_proportion"].to_numpy(), "binomial_logit", frame["_trials"].to_numpy()
    else:
        y, likelihood, weights = frame[model.response].to_numpy(float), "bernoulli_logit", None

    def design():
        X = np.asarray(formulaic.model_matrix(model.fixed, frame), dtype=float)
        return X, np.column_stack([frame[g].cat.codes.to_numpy() for g in groups])

    def fit():
        X, group_data = design()
        gp = gpboost.GPModel(group_data=group_data, likelihood=likelihood, weights=weights)
        gp.fit(y=y, X=X, params={"trace": False})
        return gp

    def objective(gp) -> float:
        X, group_data = design()
        exact = gpboost.GPModel(
            group_data=group_data, likelihood=likelihood, weights=weights, matrix_inversion_method="cholesky"
        )
        cov_pars = gp.get_cov_pars(format_pandas=False)
        fixed_effects = X @ np.ravel(gp.get_coef(format_pandas=False))
        return 2.0 * exact.neg_log_likelihood(np.ravel(cov_pars), y, fixed_effects=fixed_effects)

    return fit, objective


FITTERS = {"mixedlm": _mixedlm, "glmm": _glmm, "gpboost": _gpboost}


def run(peer: str, spec: dict, path: str) -> dict:
    from importlib.metadata import version

    model = Model.parse(spec)
    reason = unsupported(peer, model)
    if reason is not None:
        return {"unsupported": reason}
    fit, objective = FITTERS[peer](prepare(read_frame(path), model), model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seconds, cpu_seconds, result = time_fits(fit, spec["repeat"], spec["warm_up"])
        value = objective(result)
    reml = model.REML and model.family is None and peer != "gpboost"
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "objective": value,
        "criterion": "REML" if reml else "ML",
        "version": version(peer),
        "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
    }


if __name__ == "__main__":
    pin_to_one_cpu()
    print(json.dumps(run(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3])))
