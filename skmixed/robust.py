"""Cluster-robust ("sandwich") covariances of an LMM's fixed effects, as clubSandwich computes them for lmer fits.

The fixed effects are the GLS estimate β̂ = M X'Wy with the fitted model's working covariance: per cluster j
(the outermost grouping factor unless another is given), Θ_j = Z_jΛΛ'Z_j' + W_j⁻¹ (the marginal covariance of
y_j over σ²), W_j = Θ_j⁻¹ and M = (Σ_j X_j'W_jX_j)⁻¹, the model-based covariance over σ².  With the marginal
residuals r_j = y_j − offset_j − X_jβ̂ the sandwich is

    V^CR = M [Σ_j X_j'W_j A_j r_j r_j' A_j' W_j X_j] M,

which stays consistent when Θ is wrong, as long as the clusters are independent (Liang and Zeger).  The
adjustment A_j is I for CR0; CR1 multiplies CR0 by J/(J − 1) and CR1S by J(N − 1)/((J − 1)(N − p)); CR2 is
Bell and McCaffrey's bias-reduced linearization in the form of Pustejovsky and Tipton ("Small-sample methods for
cluster-robust variance estimation and hypothesis testing in fixed effects models", 2018):

    A_j = D_j' B_j^(−1/2) D_j,   B_j = D_j (Θ_j − X_j M X_j') D_j',   Θ_j = D_j'D_j (D_j upper triangular),

with the symmetric inverse square root taken over the eigenvalues above 1e−12 (as clubSandwich does), which makes
V^CR exactly unbiased when Θ is the true covariance.  HLM's "robust standard errors" are CR0's.

Each coefficient's t test takes Pustejovsky and Tipton's Satterthwaite df: for c'β̂ with p_j = A_j'W_jX_jMc,
c'V^CR c = Σ_j (p_j'r_j)², and under the working model r ~ N(0, Ω), Ω = Θ − XMX' (blocks Ω_jk = δ_jkΘ_j −
X_jMX_k'), so df = 2E²/Var = (Σ_j p_j'Ω_jj p_j)² / Σ_jk (p_j'Ω_jk p_k)².  clubSandwich requires every grouping
factor to be nested in the clusters (Θ is then block-diagonal by cluster), and so does this module.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .exceptions import OptionError

#: the small-sample corrections offered, as clubSandwich names them
TYPES = ("CR0", "CR1", "CR1S", "CR2")


def _type(type_: str) -> str:
    name = str(type_).upper()
    if name not in TYPES:
        raise OptionError(f"vcov={type_!r} is not a cluster-robust type: use one of {', '.join(TYPES)}")
    return name


def _cluster_codes(m, cluster) -> tuple[np.ndarray, str]:
    """Codes 0..J−1 of each row's cluster and a name for messages: ``cluster`` is a grouping factor of the model,
    a column of the data or one value per row used; by default the grouping factor with fewest levels."""
    flist = m.re.flist()
    if cluster is None:
        name = min(flist, key=lambda g: len(flist[g].levels))  # the first of the smallest, as clubSandwich
        return flist[name].codes, name
    if isinstance(cluster, str):
        if cluster in flist:
            return flist[cluster].codes, cluster
        if cluster not in m.frame.data.columns:
            raise OptionError(
                f"cluster={cluster!r} is neither a grouping factor of the model ({', '.join(flist)}) nor a column of "
                "the data used"
            )
        values, name = m.frame.data[cluster], cluster
    else:
        values, name = pd.Series(np.asarray(cluster)), "cluster"
        if len(values) != m.nobs:
            raise OptionError(f"cluster has {len(values)} values; give one per row used by the fit ({m.nobs})")
    if values.isna().any():
        raise OptionError(f"the clustering variable {name!r} has missing values")
    codes, _ = pd.factorize(values.to_numpy(), sort=True)
    return codes.astype(np.int64), name


def _check_nested(m, codes: np.ndarray, name: str) -> None:
    for g, factor in m.re.flist().items():
        per_level = pd.Series(codes).groupby(factor.codes).nunique()
        if (per_level > 1).any():
            raise OptionError(
                f"the grouping factor {g!r} is not nested in the clusters {name!r}: the marginal covariance is then "
                "not block-diagonal by cluster, and cluster-robust covariances need it (cluster by the outermost "
                "factor, or by a variable every grouping factor is nested in)"
            )


def _blocks(m, codes: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per cluster (X_j, Θ_j, r_j): the fixed-effect rows, the working covariance over σ², the marginal residuals."""
    X, frame = m.frame.X, m.frame
    resid = frame.y - frame.offset - X @ m.solution.beta
    ZL = (m.re.Z @ m.re.Lambda(m.theta)).tocsr()
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(codes.max() + 2))
    blocks = []
    for j in range(len(bounds) - 1):
        rows = order[bounds[j] : bounds[j + 1]]
        zl = ZL[rows]
        zl = zl[:, np.unique(zl.indices)].toarray()
        theta = zl @ zl.T + np.diag(1.0 / frame.weights[rows])
        blocks.append((X[rows], theta, resid[rows]))
    return blocks


def _inverse_sqrt(B: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(B)
    scaled = np.where(values > 1e-12, 1.0 / np.sqrt(np.where(values > 1e-12, values, 1.0)), 0.0)
    return (vectors * scaled) @ vectors.T


def _estimating_matrices(blocks, M: np.ndarray, cr2: bool) -> list[np.ndarray]:
    """Per cluster E_j = X_j'W_jA_j (p × n_j): the cluster's contribution to the estimating equations."""
    out = []
    for X, theta, _ in blocks:
        D = np.linalg.cholesky(theta).T  # Θ = D'D
        XW = np.linalg.solve(theta, X).T
        if cr2:
            B = D @ (theta - X @ M @ X.T) @ D.T
            XW = XW @ (D.T @ _inverse_sqrt(B) @ D)
        out.append(XW)
    return out


class RobustFit:
    """The pieces of a cluster-robust covariance: blocks, M, the adjusted E_j and the type's scale factor."""

    def __init__(self, m, type_: str = "CR2", cluster=None):
        self.type = _type(type_)
        codes, self.cluster = _cluster_codes(m, cluster)
        _check_nested(m, codes, self.cluster)
        self.J = int(codes.max()) + 1
        if self.J < 2:
            raise OptionError(f"the clusters {self.cluster!r} have one level: cluster-robust covariances need two")
        self.names = m.frame.x_names
        self.blocks = _blocks(m, codes)
        self.M = np.linalg.inv(sum(X.T @ np.linalg.solve(theta, X) for X, theta, _ in self.blocks))
        self.E = _estimating_matrices(self.blocks, self.M, self.type == "CR2")
        N, p = m.nobs, len(self.names)
        J = self.J
        self.scale = {"CR0": 1.0, "CR1": J / (J - 1), "CR1S": J * (N - 1) / ((J - 1) * (N - p)), "CR2": 1.0}[self.type]

    def vcov(self) -> np.ndarray:
        u = np.column_stack([E @ r for E, (_, _, r) in zip(self.E, self.blocks)])
        return self.scale * self.M @ (u @ u.T) @ self.M

    def satterthwaite_df(self) -> np.ndarray:
        """Pustejovsky and Tipton's df of each coefficient's t test (the type's scale factor cancels)."""
        P = [E.T @ self.M for E in self.E]  # p_j of every coefficient: n_j × p
        q = np.array([np.einsum("ai,ab,bi->i", Pj, theta, Pj) for Pj, (_, theta, _) in zip(P, self.blocks)])
        G = np.stack([X.T @ Pj for Pj, (X, _, _) in zip(P, self.blocks)])  # J × p(rows of X'p) × p(coefficients)
        df = np.empty(len(self.names))
        for i in range(len(self.names)):
            g = G[:, :, i]
            omega = np.diag(q[:, i]) - g @ self.M @ g.T
            df[i] = np.trace(omega) ** 2 / np.sum(omega**2)
        return df


def robust_vcov(m, type: str = "CR2", cluster=None) -> pd.DataFrame:
    """The cluster-robust covariance of the fixed effects (clubSandwich's ``vcovCR(m, type = type)``)."""
    fit = RobustFit(m, type, cluster)
    return pd.DataFrame(fit.vcov(), index=fit.names, columns=fit.names)


def robust_coef_table(m, type: str = "CR2", cluster=None, ddf="Satterthwaite") -> pd.DataFrame:
    """t tests of the fixed effects with cluster-robust standard errors: estimate, se, df, t, p with Pustejovsky and
    Tipton's Satterthwaite df (clubSandwich's ``coef_test(m, vcov = type)``), or estimate, se, t with ``ddf=None``."""
    from scipy import stats

    if ddf is not None and str(ddf).lower() != "satterthwaite":
        raise OptionError(
            f"ddf={ddf!r} with a cluster-robust covariance: its t tests take Satterthwaite's df (Pustejovsky and "
            "Tipton's, as clubSandwich), or none with ddf=None"
        )
    fit = RobustFit(m, type, cluster)
    est = m.fixef
    se = pd.Series(np.sqrt(np.diag(fit.vcov())), index=est.index)
    t = est / se
    if ddf is None:
        return pd.DataFrame({"estimate": est, "se": se, "t": t})
    df = pd.Series(fit.satterthwaite_df(), index=est.index)
    return pd.DataFrame({"estimate": est, "se": se, "df": df, "t": t, "p": 2 * stats.t.sf(np.abs(t), df)})
