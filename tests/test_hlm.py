"""skmixed.hlm (level equations → lme4 formula), m.equations() and the %%hlm magic."""

import warnings

import numpy as np
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import skmixed
from skmixed import datasets
from skmixed.exceptions import FormulaError, OptionError
from skmixed.hlm import hlm_formula
from skmixed.magics.hlm import parse_cell


@pytest.fixture(scope="module")
def hsb():
    return datasets.load("Hsb82")


@pytest.fixture(scope="module")
def full(hsb):
    """Barron's High School and Beyond model, written as equations."""
    return skmixed.hlm(
        "mAch ~ cses",
        {"(Intercept)": "~ meanses + sector", "cses": "~ meanses + sector"},
        group="school",
        data=hsb,
    )


# --- building the formula -------------------------------------------------------------------------------------


def test_substitution_gives_the_cross_level_interactions(hsb):
    assert (
        hlm_formula("mAch ~ ses", {"(Intercept)": "~ sector + meanses", "ses": "~ sector"}, "school")
        == "mAch ~ sector + meanses + ses + ses:sector + (1 + ses | school)"
    )
    # a coefficient without a level-2 equation is fixed; random= gives it a u term; keys as "Intercept" or "1"
    assert hlm_formula("mAch ~ cses + sx", {"Intercept": "meanses"}, "school") == (
        "mAch ~ meanses + cses + sx + (1 | school)"
    )
    assert hlm_formula("mAch ~ cses + sx", None, "school", random=["1", "sx"]) == "mAch ~ cses + sx + (1 + sx | school)"
    assert hlm_formula("mAch ~ cses", {"cses": "~ 1"}, "school", random=["cses"]) == "mAch ~ cses + (0 + cses | school)"
    # a level-1 interaction, named in either order, and a level-2 equation without intercept
    assert hlm_formula("y ~ a * b", {"b:a": "~ 0 + w"}, "g") == "y ~ a + b + a:b:w + (1 + a:b | g)"
    assert hlm_formula("y ~ 0 + x", {"x": "~ w"}, "g") == "y ~ 0 + x + x:w + (0 + x | g)"


def test_hlm_equals_the_lmer_fit(hsb, full):
    direct = skmixed.lmer("mAch ~ meanses * cses + sector * cses + (1 + cses | school)", hsb)
    assert full.formula == "mAch ~ meanses + sector + cses + cses:meanses + cses:sector + (1 + cses | school)"
    assert full.objective == pytest.approx(direct.objective, rel=1e-12)
    # R names an interaction's variables in formula order: the level-2 predictor first, as sectorCatholic:cses
    renamed = full.fixef.rename({"sectorCatholic:cses": "cses:sectorCatholic"})
    np.testing.assert_allclose(renamed[direct.fixef.index], direct.fixef, rtol=1e-7)


def test_three_levels_and_nested_labels():
    pastes = datasets.load("Pastes")
    # cask labels a, b, c repeat in every batch: the level-2 term groups by batch:cask, as lme4's batch/cask
    formula = hlm_formula("strength ~ 1", None, ["cask", "batch"], pastes)
    assert formula == "strength ~ 1 + (1 | batch:cask) + (1 | batch)"
    m = skmixed.hlm("strength ~ 1", group=["cask", "batch"], data=pastes)
    direct = skmixed.lmer("strength ~ 1 + (1 | batch/cask)", pastes)
    assert m.objective == pytest.approx(direct.objective, rel=1e-10)
    assert hlm_formula(
        "y ~ x", {"(Intercept)": "~ w"}, ["s", "d"], level3={"(Intercept)": "~ z", "x": "~ z"}, random={"d": ["x"]}
    ) == ("y ~ z + w + x + x:z + (1 | s) + (0 + x | d)")
    # a cask-level predictor is constant within batch:cask (not within the label cask): no warning; a batch-level
    # predictor that varies within a batch is warned of
    pastes["cask_mean"] = pastes.groupby(["batch", "cask"], observed=True)["strength"].transform("mean")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hlm_formula("strength ~ 1", {"(Intercept)": "~ cask_mean"}, ["cask", "batch"], pastes)
    with pytest.warns(UserWarning, match="level-3 predictor 'cask_mean' varies within units of 'batch'"):
        hlm_formula("strength ~ 1", None, ["cask", "batch"], pastes, level3={"(Intercept)": "~ cask_mean"})


def test_errors_name_the_problem(hsb):
    with pytest.raises(FormulaError, match=r"'ses', which is not a level-1 coefficient: those are \(Intercept\), cses"):
        hlm_formula("mAch ~ cses", {"ses": "~ sector"}, "school")
    with pytest.raises(FormulaError, match="right-hand side"):
        hlm_formula("mAch ~ cses", {"cses": "b ~ sector"}, "school")
    with pytest.raises(FormulaError, match="no response"):
        hlm_formula("~ cses", None, "school")
    with pytest.raises(OptionError, match="data= must be a pandas DataFrame"):
        skmixed.hlm("mAch ~ cses", None, "school", None)
    with pytest.raises(OptionError, match="group="):
        hlm_formula("mAch ~ cses", None, None)
    with pytest.raises(OptionError, match="level3= needs two groups"):
        hlm_formula("mAch ~ cses", None, "school", level3={"(Intercept)": "~ 1"})
    with pytest.raises(OptionError, match="no coefficient has a random effect"):
        hlm_formula("mAch ~ cses", None, "school", random=[])
    with pytest.raises(OptionError, match="'district' is not a column"):
        hlm_formula("mAch ~ cses", None, ["school", "district"], hsb)
    with pytest.raises(FormulaError, match="level-2 predictor .nosuch."):
        skmixed.hlm("mAch ~ cses", {"(Intercept)": "~ nosuch"}, "school", hsb)


def test_a_level2_predictor_varying_within_groups_warns(hsb):
    with pytest.warns(UserWarning, match="level-2 predictor 'ses' varies within units of 'school'"):
        skmixed.hlm("mAch ~ cses", {"(Intercept)": "~ ses"}, "school", hsb)


# --- equations ------------------------------------------------------------------------------------------------


def test_equations_of_the_full_model(full):
    eq = full.equations()
    text = str(eq)
    for line in [
        "mAch_ij = β0j + β1j·cses_ij + r_ij",
        "β0j = γ00 + γ01·meanses_j + γ02·sectorCatholic_j + u0j",
        "β1j = γ10 + γ11·meanses_j + γ12·sectorCatholic_j + u1j",
        "Level-2 model (school: 160 units)",
    ]:
        assert line in text
    fe, se = full.fixef, full.fixef_se
    assert f"β1j = {fe['cses']:.4g} ({se['cses']:.4g}) + {fe['meanses:cses']:.4g}" in text
    assert f"− {-fe['sectorCatholic:cses']:.4g} ({se['sectorCatholic:cses']:.4g})·sectorCatholic_j + u1j" in text
    assert f"σ² = {full.sigma**2:.4g}" in text
    tau = full._term_covariances()[0]
    level2 = eq.levels[1]
    np.testing.assert_allclose(level2.covariance, tau, rtol=1e-14)
    assert [s.text() for s in level2.residuals] == ["u0j", "u1j"]
    latex = eq.to_latex()
    assert latex.startswith("\\begin{aligned}") and r"\beta_{1j} &= \underset{(" in latex
    assert r"- \underset{(" in latex and eq._repr_latex_().startswith("$$")


def test_equations_of_a_plain_lmer_fit_with_a_fixed_slope(hsb):
    m = skmixed.lmer("mAch ~ meanses + cses + sx + (1 | school)", hsb)
    text = str(m.equations())
    assert "mAch_ij = β0j + β1j·cses_ij + β2j·sxFemale_ij + r_ij" in text
    assert "β1j = γ10\n" in text and "β2j = γ20\n" in text and "β0j = γ00 + γ01·meanses_j + u0j" in text
    # a random slope without a fixed part is its u alone
    no_fixed_slope = skmixed.lmer("mAch ~ 1 + (1 + cses | school)", hsb)
    assert "β1j = u1j\n" in str(no_fixed_slope.equations())


def test_three_level_equations():
    chem = datasets.load("Chem97").iloc[:4000].copy()
    chem["mgcse"] = chem.groupby("school", observed=True)["gcsecnt"].transform("mean")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = skmixed.hlm(
            "score ~ gcsecnt", {"(Intercept)": "~ mgcse"}, ["school", "lea"], chem, random={"lea": ["(Intercept)"]}
        )
    assert m.formula == "score ~ mgcse + gcsecnt + (1 | school) + (1 | lea)"
    text = str(m.equations())
    for line in [
        "score_ijk = π0jk + π1jk·gcsecnt_ijk + e_ijk",
        "π0jk = β00k + β01k·mgcse_jk + r0jk",
        "π1jk = β10k\n",
        "β00k = γ000 + u00k",
        "β01k = γ010\n",
        "β10k = γ100\n",
        "Level-3 model (lea: ",
    ]:
        assert line in text


def test_crossed_factors_print_the_mixed_form():
    m = skmixed.lmer("diameter ~ 1 + (1 | plate) + (1 | sample)", datasets.load("Penicillin"))
    eq = m.equations()
    assert not eq.hierarchical
    text = str(eq)
    assert text.startswith("Not a hierarchical model (the grouping factors 'plate' and 'sample' are crossed")
    assert "diameter_i = " in text and "b_plate[i] + b_sample[i] + ε_i" in text


# --- the %%hlm magic ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shell(hsb):
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "skmixed.magics")
    ip.user_ns["hsb"] = hsb
    yield ip
    for name in ("hsb", "m_hlm"):
        ip.user_ns.pop(name, None)


def test_parse_cell_levels_comments_and_continuations():
    level1, level2, level3 = parse_cell(
        "y ~ x   # level 1\n(Intercept) ~ w\n   + v\nx ~ w\nlevel 3:\n(Intercept) ~ z\n"
    )
    assert level1 == "y ~ x" and level2 == {"(Intercept)": "~ w + v", "x": "~ w"} and level3 == {"(Intercept)": "~ z"}
    with pytest.raises(UsageError, match="not an equation"):
        parse_cell("y ~ x\nsector meanses")
    with pytest.raises(UsageError, match="two level-2 equations for 'x'"):
        parse_cell("y ~ x\nx ~ w\nx ~ v")


def test_magic_fits_and_displays_the_equations(shell, full):
    result = shell.run_cell(
        "%%hlm -d hsb -g school -o m_hlm\nmAch ~ cses\n(Intercept) ~ meanses + sector\ncses ~ meanses + sector\n",
        store_history=False,
    )
    assert result.error_in_exec is None
    assert type(result.result).__name__ == "Equations"
    fit = shell.user_ns["m_hlm"]
    assert fit.formula == full.formula and fit.objective == pytest.approx(full.objective, rel=1e-12)


def test_magic_errors_are_usage_errors(shell, capsys):
    for cell, message in [
        ("%%hlm -d hsb -g school\nmAch ~ cses\nses ~ sector\n", "not a level-1 coefficient"),
        ("%%hlm -d nosuch -g school\nmAch ~ cses\n", "no DataFrame named 'nosuch'"),
        ("%%hlm -d hsb -g school\nmAch ~ cses\nlevel 3:\n(Intercept) ~ sector\n", "second -g"),
        ("%%hlm -d hsb -g school --random3 cses\nmAch ~ cses\n", "--random3 needs a level-3 column"),
    ]:
        result = shell.run_cell(cell, store_history=False)
        assert isinstance(result.error_in_exec, UsageError), cell
        assert message in str(result.error_in_exec)
    capsys.readouterr()


def test_weights_and_ml_pass_through_to_lmer():
    sleep = datasets.load("sleepstudy").assign(w=lambda d: 1.0 + d["Days"] % 3)
    m = skmixed.hlm("Reaction ~ Days", {"Days": "~ 1"}, "Subject", sleep, weights="w", REML=False)
    direct = skmixed.lmer("Reaction ~ Days + (Days | Subject)", sleep, weights="w", REML=False)
    assert not m.REML and m.objective == pytest.approx(direct.objective, rel=1e-12)
    assert "Var(r_ij) = σ²/w_ij" in str(m.equations())
