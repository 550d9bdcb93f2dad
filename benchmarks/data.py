"""Deterministic synthetic data for the benchmarks.

``dallas_like``: the shape of the Dallas data in Bates' useR! 2004 talk "Multilevel Models in R:
Present & Future" (369,243 scores; 134,712 students crossed with 887 campuses): students with 1–12
records (mean about 2.7), skewed campus sizes, a quarter of records at a campus other than the
student's own.
``crossed``: y ~ 1 + (1|a) + (1|b) with many a-levels crossed with a few thousand b-levels.
``crossed_10k``: 10,000 rows, 200 subjects crossed with 50 items, random intercepts and slopes for both.
``crossed_vector_sparse``: the same model on a crowdsourced shape: 2,000 raters each rating 5 of 200 items (10,000
rows), too many levels for the dense paths and too sparse a crossing for the blocked one.
``expression``: 10,000 genes measured on 500 samples of 50 donors in 10 batches (``lmer_many``).
``crossed_sparse_10k`` and ``crossed_100k``: ``crossed`` with few rows per level on both sides (1,000 × 1,977 levels
at 10,000 rows; 10,000 × 2,000 at 100,000), the shapes where iterative solvers had won.
``ml1m_like``: MovieLens 1M's shape, 10⁶ ratings of 6,040 users × 3,706 films, crossed.
``nested_vector``: random intercepts and slopes for groups and for subgroups nested in them.
``kb07_like``: the shape of Kliegl et al.'s KB07 data (MixedModels.jl's benchmark): 56 subjects × 32 items,
three two-level conditions, the maximal model with four correlated effects for each factor.
``mmrm_10k``: a clinical-trial shape for residual covariance structures: subjects with repeated visits.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd


def dallas_like(n_students: int = 134_712, n_campus: int = 887, seed: int = 2004) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    # records per student in 1..12 with mean ≈ 2.74 (134,712 students → ≈ 369k records)
    counts = np.minimum(1 + rng.poisson(1.74, n_students), 12)
    campus_weight = rng.lognormal(0.0, 1.2, n_campus)  # skewed campus sizes
    campus_weight /= campus_weight.sum()
    home = rng.choice(n_campus, n_students, p=campus_weight)
    student = np.repeat(np.arange(n_students), counts)
    n = len(student)
    campus = home[student].copy()
    moved = rng.random(n) < 0.25
    campus[moved] = rng.choice(n_campus, moved.sum(), p=campus_weight)
    first_grade = rng.integers(3, 8, n_students)
    within = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)
    grade = np.minimum(first_grade[student] + within, 11)
    sex = rng.integers(0, 2, n_students)[student]
    eth = rng.choice(["W", "B", "H", "A", "O"], n_students, p=[0.35, 0.25, 0.33, 0.04, 0.03])[student]
    u_student = rng.normal(0, 9.0, n_students)
    u_campus = rng.normal(0, 3.5, n_campus)
    grade_effect = np.array([0, 0, 0, 0.0, 2.0, 3.5, 5.0, 6.0, 7.0, 8.0, 8.5, 9.0])
    tli = 70 + grade_effect[grade] + 1.5 * sex + u_student[student] + u_campus[campus] + rng.normal(0, 7.0, n)
    return pd.DataFrame(
        {
            "tli": tli,
            "Gr": pd.Categorical(grade.astype(str), categories=[str(g) for g in range(3, 12)]),
            "Sx": pd.Categorical(np.where(sex == 1, "M", "F"), categories=["F", "M"]),
            "Eth": pd.Categorical(eth, categories=["W", "B", "H", "A", "O"]),
            "ids": pd.Categorical.from_codes(student, [str(i) for i in range(n_students)]),
            "Campus": pd.Categorical.from_codes(campus, [str(i) for i in range(n_campus)]),
        }
    )


def crossed(n_rows: int = 10_000_000, n_a: int = 1_000_000, n_b: int = 2_000, seed: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n_a, n_rows)
    b = rng.integers(0, n_b, n_rows)
    y = 5.0 + rng.normal(0, 1.0, n_a)[a] + rng.normal(0, 0.5, n_b)[b] + rng.normal(0, 1.0, n_rows)
    return pd.DataFrame(
        {
            "y": y,
            "a": pd.Categorical.from_codes(a, np.arange(n_a).astype(str)),
            "b": pd.Categorical.from_codes(b, np.arange(n_b).astype(str)),
        }
    )


def crossed_10k(n_subjects: int = 200, n_items: int = 50, seed: int = 1997) -> pd.DataFrame:
    """A psycholinguistics-shaped design: every subject sees every item once (10,000 rows), in one of two
    conditions x = ±½ counterbalanced across subjects and items; random intercepts and condition effects by
    subject and by item (``y ~ x + (1 + x | subject) + (1 + x | item)``)."""
    rng = np.random.default_rng(seed)
    subject = np.repeat(np.arange(n_subjects), n_items)
    item = np.tile(np.arange(n_items), n_subjects)
    x = np.where((subject + item) % 2 == 0, -0.5, 0.5)
    by_subject = rng.multivariate_normal([0.0, 0.0], [[900.0, 90.0], [90.0, 100.0]], n_subjects)
    by_item = rng.multivariate_normal([0.0, 0.0], [[400.0, 0.0], [0.0, 64.0]], n_items)
    return _two_slopes(rng, x, (500.0, 25.0, 50.0), ("subject", subject, by_subject, "s"), ("item", item, by_item, "i"))


def crossed_vector_sparse(n_raters: int = 2_000, n_items: int = 200, per_rater: int = 5, seed: int = 2015):
    """Raters crossed with items, each rater seeing ``per_rater`` distinct items chosen at random, in one of two
    conditions x = ±½ at random; random intercepts and condition effects by rater and by item
    (``y ~ x + (1 + x | rater) + (1 + x | item)``)."""
    rng = np.random.default_rng(seed)
    rater = np.repeat(np.arange(n_raters), per_rater)
    item = np.argsort(rng.random((n_raters, n_items)), axis=1)[:, :per_rater].ravel()
    x = rng.choice([-0.5, 0.5], len(rater))
    by_rater = rng.multivariate_normal([0.0, 0.0], [[1.0, 0.2], [0.2, 0.25]], n_raters)
    by_item = rng.multivariate_normal([0.0, 0.0], [[0.5, 0.0], [0.0, 0.16]], n_items)
    return _two_slopes(rng, x, (3.0, 0.4, 1.0), ("rater", rater, by_rater, "r"), ("item", item, by_item, "i"))


def _two_slopes(rng, x, fixed, *factors) -> pd.DataFrame:
    """y = β₀ + β₁x + Σ (b₀ + b₁x) over the factors' levels + ε (``fixed`` = (β₀, β₁, σ)), with the factors as
    categoricals; each factor given as (name, codes, its levels' (b₀, b₁), its levels' prefix)."""
    intercept, slope, sd = fixed
    effect = sum(effects[codes] for _, codes, effects, _ in factors)
    y = intercept + slope * x + effect[:, 0] + effect[:, 1] * x + rng.normal(0.0, sd, len(x))
    frame = {"y": y, "x": x}
    for name, codes, effects, prefix in factors:
        frame[name] = pd.Categorical.from_codes(codes, [f"{prefix}{i}" for i in range(len(effects))])
    return pd.DataFrame(frame)


@lru_cache(maxsize=1)
def expression(n_genes: int = 10_000, n_samples: int = 500, n_donors: int = 50, n_batches: int = 10, seed: int = 2016):
    """variancePartition-shaped data: samples (a covariate x, donor and batch) and genes (n_samples × n_genes), each
    gene with its own donor, batch and residual variance (SDs uniform on [0, 1.5], [0, 1], [0.5, 1.5]) and
    x effect, for ``~ x + (1 | donor) + (1 | batch)`` fitted to every gene."""
    rng = np.random.default_rng(seed)
    donor, batch = rng.integers(0, n_donors, n_samples), rng.integers(0, n_batches, n_samples)
    x = rng.normal(size=n_samples)
    sd_donor, sd_batch = rng.uniform(0, 1.5, n_genes), rng.uniform(0, 1.0, n_genes)
    sd_residual, slope = rng.uniform(0.5, 1.5, n_genes), rng.normal(0, 0.3, n_genes)
    genes = (
        8.0
        + x[:, None] * slope
        + (rng.normal(size=(n_donors, n_genes)) * sd_donor)[donor]
        + (rng.normal(size=(n_batches, n_genes)) * sd_batch)[batch]
        + rng.normal(size=(n_samples, n_genes)) * sd_residual
    )
    samples = pd.DataFrame(
        {
            "x": x,
            "donor": pd.Categorical.from_codes(donor, [f"d{i}" for i in range(n_donors)]),
            "batch": pd.Categorical.from_codes(batch, [f"b{i}" for i in range(n_batches)]),
        }
    )
    return samples, genes


def expression_first_gene() -> pd.DataFrame:
    """The samples of :func:`expression` with its first gene as y (the single ``lmer`` fit beside ``lmer_many``)."""
    samples, genes = expression()
    return samples.assign(y=genes[:, 0])


def crossed_10m_wide() -> pd.DataFrame:
    """``crossed`` at 10⁷ rows with 10⁶ × 10⁴ levels: the Dask benchmark's model (benchmarks/dask_crossed.py) in
    memory, its 10⁴ × 10⁴ Schur complement dense."""
    return crossed(10_000_000, 1_000_000, 10_000)


def crossed_sparse_10k() -> pd.DataFrame:
    return crossed(10_000, 1_000, 2_000)


def crossed_100k() -> pd.DataFrame:
    return crossed(100_000, 10_000, 2_000)


def ml1m_like(n_rows: int = 1_000_209, n_users: int = 6_040, n_movies: int = 3_706, seed: int = 2003) -> pd.DataFrame:
    """The shape of MovieLens 1M (MixedModels.jl's ml1m benchmark): 1,000,209 ratings of 3,706 films by 6,040
    users, each (user, film) pair at most once, users' activity and films' popularity heavy-tailed (lognormal
    weights: a few users rate thousands of films, most a few dozen); y with random effects of user and film."""
    rng = np.random.default_rng(seed)
    user_w = rng.lognormal(0.0, 1.0, n_users)
    movie_w = rng.lognormal(0.0, 1.3, n_movies)
    pairs = np.empty(0, dtype=np.int64)
    while len(pairs) < n_rows:  # draw pairs by weight, keep each once
        draw = rng.choice(n_users, 2 * n_rows, p=user_w / user_w.sum()) * n_movies
        draw += rng.choice(n_movies, 2 * n_rows, p=movie_w / movie_w.sum())
        pairs = np.unique(np.concatenate([pairs, draw]))
    pairs = rng.permutation(pairs)[:n_rows]
    user, movie = pairs // n_movies, pairs % n_movies
    y = 3.6 + rng.normal(0, 0.45, n_users)[user] + rng.normal(0, 0.5, n_movies)[movie] + rng.normal(0, 0.9, n_rows)
    return pd.DataFrame(
        {
            "y": y,
            "user": pd.Categorical.from_codes(user, np.arange(n_users).astype(str)),
            "movie": pd.Categorical.from_codes(movie, np.arange(n_movies).astype(str)),
        }
    )


def nested_vector(n_groups: int = 300, per_group: int = 20, rows: int = 10, seed: int = 7) -> pd.DataFrame:
    """``y ~ x + (1 + x | a) + (1 + x | a:b)``: 300 groups a, 20 subgroups b in each (b's labels repeat across a),
    10 rows per subgroup (60,000 rows)."""
    rng = np.random.default_rng(seed)
    n_sub = n_groups * per_group
    sub = np.repeat(np.arange(n_sub), rows)
    a = sub // per_group
    x = rng.normal(size=len(sub))
    by_a = rng.multivariate_normal([0.0, 0.0], [[1.0, 0.3], [0.3, 0.5]], n_groups)
    by_ab = rng.multivariate_normal([0.0, 0.0], [[0.5, -0.1], [-0.1, 0.25]], n_sub)
    effect = by_a[a] + by_ab[sub]
    y = 2.0 + 0.5 * x + effect[:, 0] + effect[:, 1] * x + rng.normal(size=len(sub))
    return pd.DataFrame(
        {
            "y": y,
            "x": x,
            "a": pd.Categorical.from_codes(a, [f"a{i}" for i in range(n_groups)]),
            "b": pd.Categorical.from_codes(sub % per_group, [f"b{i}" for i in range(per_group)]),
        }
    )


def kb07_like(n_subj: int = 56, n_item: int = 32, seed: int = 2007) -> pd.DataFrame:
    """56 subjects × 32 items (1,789 rows: three cells missing, as in KB07), conditions a, b, c = ±½ with every
    combination over items and counterbalanced over subjects; y with random intercepts and effects of a, b and c
    for subjects and items."""
    rng = np.random.default_rng(seed)
    subj = np.repeat(np.arange(n_subj), n_item)
    item = np.tile(np.arange(n_item), n_subj)
    cell = (item + subj) % 8
    a, b, c = (((cell >> k) & 1) - 0.5 for k in range(3))
    X = np.column_stack([np.ones(len(subj)), a, b, c])
    s_cov = np.diag([1.0, 0.4, 0.3, 0.2]) ** 2 + 0.02
    i_cov = np.diag([0.8, 0.3, 0.2, 0.3]) ** 2 + 0.01
    u_s = rng.multivariate_normal(np.zeros(4), s_cov, n_subj)
    u_i = rng.multivariate_normal(np.zeros(4), i_cov, n_item)
    y = X @ np.array([7.5, 0.2, -0.3, 0.1]) + (X * (u_s[subj] + u_i[item])).sum(axis=1) + rng.normal(0, 0.7, len(subj))
    keep = np.ones(len(subj), dtype=bool)
    keep[rng.choice(len(subj), 3, replace=False)] = False
    return pd.DataFrame(
        {
            "y": y,
            "a": a,
            "b": b,
            "c": c,
            "subj": pd.Categorical.from_codes(subj, [f"S{i:02d}" for i in range(n_subj)]),
            "item": pd.Categorical.from_codes(item, [f"I{i:02d}" for i in range(n_item)]),
        }
    )[keep].reset_index(drop=True)


def mmrm_10k(n_subjects: int = 10_000, n_visits: int = 10, seed: int = 2013) -> pd.DataFrame:
    """A clinical-trial shape for an MMRM: every subject in one of two arms, measured at ``n_visits`` visits
    (100,000 rows), a baseline covariate; the residuals of a subject correlated with an unstructured Σ (variances
    growing over the visits, correlations decaying with the lag) — ``y ~ visit * arm + baseline`` with
    ``residual="us(visit | subject)"`` (55 Σ parameters)."""
    rng = np.random.default_rng(seed)
    lag = np.abs(np.subtract.outer(np.arange(n_visits), np.arange(n_visits)))
    sd = np.linspace(1.0, 2.0, n_visits)
    sigma = np.outer(sd, sd) * (0.3 + 0.6 * 0.8**lag) / 0.9
    arm = rng.integers(0, 2, n_subjects)
    baseline = rng.normal(50.0, 10.0, n_subjects)
    errors = rng.multivariate_normal(np.zeros(n_visits), sigma, n_subjects)
    visit = np.arange(n_visits)
    mean = 0.2 * visit[None, :] + 0.3 * arm[:, None] * visit[None, :] / n_visits + 0.1 * baseline[:, None]
    y = mean + errors
    return pd.DataFrame(
        {
            "y": y.ravel(),
            "visit": pd.Categorical.from_codes(np.tile(visit, n_subjects), [f"V{v + 1:02d}" for v in visit]),
            "arm": pd.Categorical.from_codes(np.repeat(arm, n_visits), ["placebo", "active"]),
            "baseline": np.repeat(baseline, n_visits),
            "subject": pd.Categorical.from_codes(
                np.repeat(np.arange(n_subjects), n_visits), [f"S{i:05d}" for i in range(n_subjects)]
            ),
        }
    )
