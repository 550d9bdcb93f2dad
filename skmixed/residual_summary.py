"""The text summary of an LMM with a residual covariance structure, laid out as nlme's and mmrm's: criterion and
information criteria, random effects, Σ's variances and correlation matrix, fixed effects."""

from __future__ import annotations

import numpy as np

from .summary import _table
from .variance import group_names, term_covariances


def _g(x: float, digits: int = 5) -> str:
    return "NaN" if not np.isfinite(x) else f"{x:.{digits}g}"


class StructuredSummary:
    """``print(result.summary())``; the parts are also attributes (``coefficients``, ``residual_cov``)."""

    def __init__(self, result):
        self.result = result
        self.coefficients = result.coef_table()
        self.residual_cov = result.residual_cov

    def _header(self) -> list[str]:
        m = self.result
        method = "REML" if m.REML else "maximum likelihood"
        kind = "Linear mixed model" if m.re.terms else "Generalized least squares"
        lines = [f"{kind} with residual covariance {m.structure} fit by {method}", f"Formula: {m.formula}"]
        if m.data_name:
            lines.append(f"   Data: {m.data_name}")
        crit = "REML criterion" if m.REML else "deviance"
        stats = [[_g(m.aic, 7), _g(m.bic, 7), _g(m.loglik, 7), _g(m.objective, 7)]]
        lines += ["", _table(stats, ["AIC", "BIC", "logLik", crit], {0, 1, 2, 3}), ""]
        return lines

    def _random_effects(self) -> list[str]:
        m = self.result
        if not m.re.terms:
            return []
        rows = []
        for name, t, V in zip(group_names(m.re), m.re.terms, term_covariances(m.re, m.theta, m.sigma)):
            sd = np.sqrt(np.diag(V))
            for j in range(t.k):
                corr = [V[j, k] / (sd[j] * sd[k]) if sd[j] > 0 and sd[k] > 0 else np.nan for k in range(j)]
                rows.append(
                    [name if j == 0 else "", t.effects[j], _g(V[j, j]), _g(sd[j]), " ".join(f"{c:5.2f}" for c in corr)]
                )
        header = ["Groups", "Name", "Variance", "Std.Dev.", "Corr"]
        return ["Random effects:", _table(rows, header, {2, 3}), ""]

    def _residual(self) -> list[str]:
        m = self.result
        S, C = self.residual_cov, m.residual_cor
        labels = list(S.index)
        design = m.model.design
        title = (
            f"Residual covariance ({design.structure.name}, {design.structure.n_sigma_par} parameters; "
            f"{len(design.subjects)} {design.spec.group}, {len(design.patterns)} visit patterns):"
        )
        lines = [title]
        var = [
            [_g(S.iloc[i, i], 4) for i in range(len(labels))],
            [_g(np.sqrt(S.iloc[i, i]), 4) for i in range(len(labels))],
        ]
        table = _table(
            [["Variance"] + var[0], ["Std.Dev."] + var[1]], [design.spec.time] + labels, set(range(1, len(labels) + 1))
        )
        lines += [table, " Correlations:"]
        corr_rows = [[labels[i]] + [f"{C.iloc[i, j]:.3f}" for j in range(i + 1)] for i in range(len(labels))]
        lines += [_table(corr_rows, [""] + labels, set(range(1, len(labels) + 1))), ""]
        return lines

    def _fixed(self) -> list[str]:
        table = self.coefficients
        rows = [
            [name, _g(r["Estimate"], 5), _g(r["Std. Error"], 5), f"{r['t value']:.3f}"] for name, r in table.iterrows()
        ]
        return ["Fixed effects:", _table(rows, ["", "Estimate", "Std. Error", "t value"], {1, 2, 3})]

    def __str__(self) -> str:
        m = self.result
        footer = f"Number of obs: {m.nobs}" + "".join(
            f", groups: {g}, {len(f.levels)}" for g, f in m.re.flist().items()
        )
        lines = self._header() + self._random_effects() + self._residual() + self._fixed() + ["", footer]
        if not m.optsum.converged:
            lines.append(f"optimizer ({m.optsum.optimizer}) did not converge: {m.optsum.return_code}")
        return "\n".join(lines)

    __repr__ = __str__
