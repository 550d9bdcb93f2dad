"""The sklearn estimators: MixedLM, GLMM and GLMMClassifier equal lmer/glmer in both input modes; pipelines,
grouped CV, GLMs without groups, errors."""

import pickle

import numpy as np
import pandas as pd
import pytest
import sklearn
from reference import array, load_data, references
from sklearn.base import clone
from sklearn.linear_model import LinearRegression, LogisticRegression, PoissonRegressor
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, GroupKFold, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skmixed
from skmixed import GLMM, DataError, FormulaError, GLMMClassifier, MixedLM
from skmixed.datasets import load
from skmixed.families import NegativeBinomial, Poisson

REFS = references(None)


@pytest.fixture(scope="module")
def sleep():
    return load_data(REFS["sleepstudy_slope_reml"])


@pytest.fixture(scope="module")
def slope_fit(sleep):
    return skmixed.lmer("Reaction ~ Days + (Days | Subject)", sleep)


def _same_fit(est, result):
    np.testing.assert_allclose(est.intercept_, result.fixef["(Intercept)"], rtol=1e-10)
    np.testing.assert_allclose(est.coef_, result.fixef.drop("(Intercept)").to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(est.result_.theta, result.theta, rtol=1e-10)
    np.testing.assert_allclose(est.variance_components_["vcov"], result.varcorr["vcov"], rtol=1e-10)


def test_array_and_formula_mode_equal_lmer_with_a_random_slope(sleep, slope_fit):
    ref = REFS["sleepstudy_slope_reml"]
    array_mode = MixedLM(random_slopes=["Days"]).fit(sleep[["Days"]], sleep["Reaction"], groups=sleep["Subject"])
    formula_mode = MixedLM(formula="~ Days + (Days | Subject)").fit(sleep[["Days", "Subject"]], sleep["Reaction"])
    for est in (array_mode, formula_mode):
        _same_fit(est, slope_fit)
        np.testing.assert_allclose([est.intercept_, *est.coef_], array(ref, "fixef"), rtol=1e-6)
        blups = est.random_effects_["Subject"]
        assert list(blups.columns) == ["(Intercept)", "Days"] and blups.index.name == "Subject"
        np.testing.assert_allclose(blups.to_numpy(), slope_fit.ranef["Subject"].to_numpy(), rtol=1e-10)
        assert list(est.variance_components_["grp"]) == ["Subject"] * 3 + ["Residual"]
    np.testing.assert_allclose(
        array_mode.predict(sleep[["Days"]], groups=sleep["Subject"]), slope_fit.fitted, rtol=1e-10
    )
    np.testing.assert_allclose(formula_mode.predict(sleep), slope_fit.fitted, rtol=1e-10)
    assert list(array_mode.feature_names_in_) == ["Days"] and array_mode.n_features_in_ == 1
    assert list(formula_mode.feature_names_in_) == ["Days", "Subject"] and formula_mode.n_features_in_ == 2


def test_ml_fit_and_numpy_inputs_equal_lmer(sleep):
    result = skmixed.lmer("Reaction ~ Days + (1 | Subject)", sleep, REML=False)
    X, y, g = sleep[["Days"]].to_numpy(), sleep["Reaction"].to_numpy(), sleep["Subject"].to_numpy()
    est = MixedLM(reml=False).fit(X, y, groups=g)
    _same_fit(est, result)
    np.testing.assert_allclose(est.result_.loglik, REFS["extra/sleepstudy_int_ml"]["logLik"], rtol=1e-7)
    assert list(est.random_effects_) == ["group"] and not hasattr(est, "feature_names_in_")


def test_crossed_factors_from_a_dataframe_of_groups():
    data = load("ScotsSec")
    result = skmixed.lmer("attain ~ verbal + (1 | primary) + (1 | second)", data)
    est = MixedLM().fit(data[["verbal"]], data["attain"], groups=data[["primary", "second"]])
    _same_fit(est, result)
    assert set(est.random_effects_) == {"primary", "second"}
    both = est.predict(data[["verbal"]], groups=data[["primary", "second"]])
    np.testing.assert_allclose(both, result.fitted, rtol=1e-10)


def test_sample_weight_is_passed_as_lmer_weights(sleep):
    w = np.linspace(0.5, 2.0, len(sleep))
    result = skmixed.lmer("Reaction ~ Days + (Days | Subject)", sleep, weights=w)
    est = MixedLM(random_slopes=[0]).fit(sleep[["Days"]], sleep["Reaction"], groups=sleep["Subject"], sample_weight=w)
    _same_fit(est, result)
    formula_mode = MixedLM(formula="~ Days + (Days | Subject)").fit(sleep, sleep["Reaction"], sample_weight=w)
    _same_fit(formula_mode, result)


def test_unseen_levels_get_the_population_prediction(sleep):
    est = MixedLM(random_slopes=["Days"]).fit(sleep[["Days"]], sleep["Reaction"], groups=sleep["Subject"])
    new = pd.DataFrame({"Days": [0.0, 5.0, 5.0]})
    population = est.intercept_ + est.coef_[0] * new["Days"].to_numpy()
    np.testing.assert_allclose(est.predict(new), population)
    pred = est.predict(new, groups=["999", "308", np.nan])
    b = est.random_effects_["Subject"].loc["308"]
    np.testing.assert_allclose(pred, population + [0.0, b["(Intercept)"] + 5 * b["Days"], 0.0])


def test_integer_group_labels_match_whatever_their_dtype(sleep):
    codes = sleep["Subject"].astype(int).to_numpy()
    est = MixedLM().fit(sleep[["Days"]], sleep["Reaction"], groups=codes)
    as_float = est.predict(sleep[["Days"]], groups=codes.astype(float))
    as_str = est.predict(sleep[["Days"]], groups=codes.astype(str))
    np.testing.assert_allclose(as_float, est.result_.fitted, rtol=1e-12)
    np.testing.assert_allclose(as_str, est.result_.fitted, rtol=1e-12)


def test_without_groups_it_is_ordinary_least_squares(sleep):
    X, y = sleep[["Days"]], sleep["Reaction"]
    est, ols = MixedLM().fit(X, y), LinearRegression().fit(X, y)
    np.testing.assert_allclose(est.coef_, ols.coef_)
    np.testing.assert_allclose(est.predict(X), ols.predict(X))
    assert est.result_ is None and est.random_effects_ == {}
    resid = y - ols.predict(X)
    assert est.variance_components_["vcov"].iloc[0] == pytest.approx(resid @ resid / (len(y) - 2))
    with pytest.raises(ValueError, match="no mixed-model summary"):
        est.summary()


def test_factors_whose_variance_cannot_be_estimated_are_left_out(sleep):
    X, y = sleep[["Days"]], sleep["Reaction"]
    with pytest.warns(UserWarning, match="single level"):
        one_level = MixedLM().fit(X, y, groups=np.ones(len(y)))
    np.testing.assert_allclose(one_level.coef_, MixedLM().fit(X, y).coef_)
    assert one_level.result_ is None
    with pytest.warns(UserWarning, match="180 levels for 180 rows"):
        per_row = MixedLM().fit(X, y, groups=pd.DataFrame({"obs": np.arange(len(y)), "Subject": sleep["Subject"]}))
    assert list(per_row.random_effects_) == ["Subject"]
    _same_fit(per_row, skmixed.lmer("Reaction ~ Days + (1 | Subject)", sleep))


def test_fitted_estimator_pickles_and_clones(sleep):
    est = MixedLM(random_slopes=["Days"]).fit(sleep[["Days"]], sleep["Reaction"], groups=sleep["Subject"])
    est.result_.condvar()  # builds the factor-backed cache; it must not reach the pickle
    copy = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(
        copy.predict(sleep[["Days"]], groups=sleep["Subject"]), est.predict(sleep[["Days"]], groups=sleep["Subject"])
    )
    assert "devfun" not in copy.result_._cache
    assert "Random effects" in str(copy.summary())
    fresh = clone(est)
    assert fresh.get_params() == est.get_params() and not hasattr(fresh, "coef_")


def test_pipeline_grid_search_with_group_kfold_without_routing(sleep):
    X, y, g = sleep[["Days"]], sleep["Reaction"], sleep["Subject"]
    search = GridSearchCV(
        make_pipeline(StandardScaler(), MixedLM()), {"mixedlm__reml": [True, False]}, cv=GroupKFold(3)
    )
    search.fit(X, y, groups=g, mixedlm__groups=g)
    model = search.best_estimator_[-1]
    assert model.result_ is not None and len(model.random_effects_["Subject"]) == 18
    scale = search.best_estimator_[0].scale_[0]
    expected = skmixed.lmer("Reaction ~ Days + (1 | Subject)", sleep, REML=search.best_params_["mixedlm__reml"])
    np.testing.assert_allclose(model.coef_[0] / scale, expected.fixef["Days"], rtol=1e-6)


def test_pipeline_grid_search_with_group_kfold_and_metadata_routing(sleep):
    X, y, g = sleep[["Days"]], sleep["Reaction"], sleep["Subject"]
    with sklearn.config_context(enable_metadata_routing=True):
        step = MixedLM(random_slopes=[0]).set_fit_request(groups=True)
        search = GridSearchCV(make_pipeline(StandardScaler(), step), {"mixedlm__reml": [True, False]}, cv=GroupKFold(3))
        search.fit(X, y, groups=g)
        pipe = search.best_estimator_
        assert pipe[-1].random_effects_["Subject"].shape == (18, 2)
        pipe[-1].set_predict_request(groups=True)
        np.testing.assert_allclose(pipe.predict(X, groups=g), pipe[-1].result_.fitted, rtol=1e-10)


def test_kfold_with_blups_beats_pooled_ols_clearly(sleep):
    cv = KFold(5, shuffle=True, random_state=0)
    mixed = cross_val_score(MixedLM(formula="~ Days + (Days | Subject)"), sleep, sleep["Reaction"], cv=cv)
    pooled = cross_val_score(LinearRegression(), sleep[["Days"]], sleep["Reaction"], cv=cv)
    assert mixed.mean() > 0.65 and pooled.mean() < 0.35


def test_group_kfold_predictions_are_population_predictions(sleep):
    est = MixedLM(formula="~ Days + (Days | Subject)")
    for train, test in GroupKFold(4).split(sleep, groups=sleep["Subject"]):
        est.fit(sleep.iloc[train], sleep["Reaction"].iloc[train])
        held_out = sleep.iloc[test]
        population = est.intercept_ + est.coef_[0] * held_out["Days"].to_numpy()
        np.testing.assert_allclose(est.predict(held_out), population, rtol=1e-12)
        np.testing.assert_allclose(est.predict(held_out), est.result_.predict(held_out, re_form="~0"), rtol=1e-12)


def test_score_is_r2_of_the_mode_prediction(sleep):
    formula_mode = MixedLM(formula="~ Days + (Days | Subject)").fit(sleep, sleep["Reaction"])
    y = sleep["Reaction"].to_numpy()
    r2 = 1 - np.sum((y - formula_mode.result_.fitted) ** 2) / np.sum((y - y.mean()) ** 2)
    assert formula_mode.score(sleep, y) == pytest.approx(r2)


# --- bad input ------------------------------------------------------------------------
def test_group_errors(sleep):
    X, y = sleep[["Days"]], sleep["Reaction"]
    with pytest.raises(DataError, match="groups has 179 rows but X has 180"):
        MixedLM().fit(X, y, groups=sleep["Subject"].iloc[:-1])
    with pytest.raises(DataError, match="'Subject' has 1 missing values"):
        MixedLM().fit(X, y, groups=sleep["Subject"].where(sleep.index != 3))
    with pytest.raises(ValueError, match="random_slopes needs groups"):
        MixedLM(random_slopes=["Days"]).fit(X, y)
    with pytest.raises(DataError, match="did you mean 'Days'"):
        MixedLM(random_slopes=["days"]).fit(X, y, groups=sleep["Subject"])
    with pytest.raises(ValueError, match="out of range"):
        MixedLM(random_slopes=[3]).fit(X, y, groups=sleep["Subject"])
    with pytest.raises(ValueError, match="The 'reml' parameter of MixedLM must be"):
        MixedLM(reml="yes").fit(X, y, groups=sleep["Subject"])
    est = MixedLM().fit(X, y, groups=sleep["Subject"])
    with pytest.raises(DataError, match="groups has 2 columns but the model was fitted with 1"):
        est.predict(X, groups=np.column_stack([sleep["Subject"], sleep["Subject"]]))


def test_formula_mode_errors(sleep):
    y = sleep["Reaction"]
    with pytest.raises(FormulaError, match="write only the right-hand side"):
        MixedLM(formula="Reaction ~ Days + (1 | Subject)").fit(sleep, y)
    with pytest.raises(DataError, match="needs X as a pandas DataFrame"):
        MixedLM(formula="~ Days + (1 | Subject)").fit(sleep[["Days"]].to_numpy(), y)
    with pytest.raises(DataError, match="'subject' is not a column.*did you mean 'Subject'"):
        MixedLM(formula="~ Days + (1 | subject)").fit(sleep, y)
    with pytest.raises(ValueError, match="travel inside X"):
        MixedLM(formula="~ Days + (1 | Subject)").fit(sleep, y, groups=sleep["Subject"])
    with pytest.raises(DataError, match="'one' has only 1 level"):  # the formula is explicit: no term is dropped
        MixedLM(formula="~ Days + (1 | one)").fit(sleep.assign(one="a"), y)
    with pytest.raises(ValueError, match="Found input variables with inconsistent numbers of samples"):
        MixedLM(formula="~ Days + (1 | Subject)").fit(sleep, y.iloc[:-1])
    est = MixedLM(formula="~ Days + (1 | Subject)").fit(sleep, y)
    with pytest.raises(DataError, match="'Subject' is not a column"):
        est.predict(sleep[["Days"]])
    with pytest.raises(DataError, match="'Days' is not a column"):
        est.predict(sleep[["Subject"]])
    np.testing.assert_allclose(est.predict(sleep[["Subject", "Days"]]), est.result_.fitted, rtol=1e-12)


def test_column_names_that_a_formula_cannot_read_are_encoded_safely(sleep):
    X = pd.DataFrame({"days (n)": sleep["Days"], "log": sleep["Days"] ** 2, "y": np.sqrt(sleep["Days"])})
    groups = pd.DataFrame({"subject id": sleep["Subject"]})
    est = MixedLM(random_slopes=["days (n)"]).fit(X, sleep["Reaction"], groups=groups)
    data = sleep.assign(D2=sleep["Days"] ** 2, sD=np.sqrt(sleep["Days"]))
    _same_fit(est, skmixed.lmer("Reaction ~ Days + D2 + sD + (Days | Subject)", data))
    assert list(est.random_effects_) == ["subject id"]
    assert list(est.random_effects_["subject id"].columns) == ["(Intercept)", "days (n)"]
    assert list(est.variance_components_["var1"][:2]) == ["(Intercept)", "days (n)"]
    assert est.encoding_.response not in est.encoding_.feature_columns


def test_summary_uses_the_users_names(sleep):
    est = MixedLM().fit(sleep[["Days"]], sleep["Reaction"], groups=sleep["Subject"])
    text = str(est.summary())
    assert "Days" in text and "Subject" in text and "g0" not in text


# --- GLMM and GLMMClassifier ---------------------------------------------------------------


@pytest.fixture(scope="module")
def contraception():
    data = load("Contraception")
    X = pd.DataFrame({"age": data["age"], "urban": (data["urban"] == "Y").astype(float)})
    return data, X


@pytest.fixture(scope="module")
def poisson_data():
    return load_data(REFS["extra/poisson_offset_formula"])


def test_classifier_array_and_formula_mode_equal_glmer(contraception):
    data, X = contraception
    ref = REFS["extra/contraception_laplace"]
    result = skmixed.glmer("use ~ age + urban + (1 | district)", data, family="binomial")
    array_mode = GLMMClassifier().fit(X, data["use"], groups=data["district"])
    formula_mode = GLMMClassifier(formula="~ age + urban + (1 | district)").fit(data, data["use"])
    for est in (array_mode, formula_mode):
        np.testing.assert_allclose([est.intercept_, *est.coef_], result.fixef.to_numpy(), rtol=1e-8)
        assert est.result_.objective == pytest.approx(ref["objective"], abs=0.01)
        assert list(est.classes_) == ["N", "Y"]
        np.testing.assert_allclose(
            est.random_effects_["district"].to_numpy(), result.ranef["district"].to_numpy(), rtol=1e-8
        )
        assert list(est.variance_components_["grp"]) == ["district"]
    proba = array_mode.predict_proba(X, groups=data["district"])
    np.testing.assert_allclose(proba[:, 1], result.fitted, rtol=1e-10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(formula_mode.decision_function(data), result.linear_predictor, rtol=1e-10)
    assert set(formula_mode.predict(data)) <= {"N", "Y"}
    np.testing.assert_array_equal(formula_mode.predict(data) == "Y", result.fitted > 0.5)


def test_classifier_population_prediction_for_unseen_districts(contraception):
    data, X = contraception
    est = GLMMClassifier().fit(X, data["use"], groups=data["district"])
    eta = est.intercept_ + X.to_numpy() @ est.coef_
    np.testing.assert_allclose(est.decision_function(X), eta)
    np.testing.assert_allclose(est.decision_function(X, groups=np.full(len(X), "new")), eta)


def test_classifier_in_group_kfold_roc_auc(contraception):
    data, _ = contraception
    est = GLMMClassifier(formula="~ age + urban + (1 | district)")
    cv = GroupKFold(4)
    scores = cross_val_score(est, data, data["use"], scoring="roc_auc", cv=cv, groups=data["district"])
    expected = []
    for train, test in cv.split(data, groups=data["district"]):
        fit = skmixed.glmer("use ~ age + urban + (1 | district)", data.iloc[train], family="binomial")
        held_out = data.iloc[test]
        expected.append(roc_auc_score(held_out["use"] == "Y", fit.predict(held_out, re_form="~0")))
    np.testing.assert_allclose(scores, expected, rtol=1e-10)
    assert 0.55 < scores.mean() < 0.8


def test_classifier_with_metadata_routing_in_array_mode(contraception):
    data, X = contraception
    with sklearn.config_context(enable_metadata_routing=True):
        est = GLMMClassifier(nAGQ=0).set_fit_request(groups=True)
        scores = cross_val_score(
            est, X, data["use"], scoring="roc_auc", cv=GroupKFold(3), params={"groups": data["district"]}
        )
    assert np.all((scores > 0.5) & (scores < 0.8))
    fitted = est.fit(X, data["use"], groups=data["district"])
    assert fitted.result_.nAGQ == 0 and len(fitted.random_effects_["district"]) == 60


def test_without_groups_the_classifier_is_unpenalised_logistic_regression(contraception):
    data, X = contraception
    ours = GLMMClassifier().fit(X, data["use"])
    theirs = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit(X, data["use"])
    np.testing.assert_allclose(ours.coef_, theirs.coef_[0], rtol=1e-5)
    np.testing.assert_allclose(ours.intercept_, theirs.intercept_[0], rtol=1e-5)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-6)
    assert ours.result_ is None and ours.variance_components_.empty


def test_classifier_links_decision_is_log_odds(contraception):
    data, X = contraception
    est = GLMMClassifier(link="probit").fit(X, data["use"], groups=data["district"])
    p = est.predict_proba(X, groups=data["district"])[:, 1]
    np.testing.assert_allclose(est.decision_function(X, groups=data["district"]), np.log(p / (1 - p)), rtol=1e-10)
    assert est.family_.link.name == "probit"


def test_poisson_glmm_formula_mode_with_an_offset(poisson_data):
    ref = REFS["extra/poisson_offset_formula"]
    est = GLMM(formula="~ x + offset(log(expo)) + (1 | g)").fit(poisson_data.drop(columns="y"), poisson_data["y"])
    assert est.result_.objective == pytest.approx(ref["objective"], abs=0.01)
    np.testing.assert_allclose(est.predict(poisson_data), est.result_.fitted, rtol=1e-10)
    with pytest.raises(DataError, match="'expo' is not a column"):
        est.predict(poisson_data[["x", "g"]])
    copy = pickle.loads(pickle.dumps(est))
    np.testing.assert_allclose(copy.predict(poisson_data), est.predict(poisson_data), rtol=1e-14)


def test_poisson_glmm_array_mode_equals_glmer(poisson_data):
    result = skmixed.glmer("y ~ x + (1 | g)", poisson_data, family="poisson")
    est = GLMM(family=Poisson()).fit(poisson_data[["x"]], poisson_data["y"], groups=poisson_data["g"])
    np.testing.assert_allclose([est.intercept_, *est.coef_], result.fixef.to_numpy(), rtol=1e-8)
    np.testing.assert_allclose(est.predict(poisson_data[["x"]], groups=poisson_data["g"]), result.fitted, rtol=1e-10)
    assert est.score(poisson_data[["x"]], poisson_data["y"]) < 1


def test_without_groups_glmm_is_the_glm(poisson_data):
    X, y = poisson_data[["x"]], poisson_data["y"]
    ours = GLMM().fit(X, y)
    theirs = PoissonRegressor(alpha=0, tol=1e-12, max_iter=1000).fit(X, y)
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=1e-6)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-6)
    nb = GLMM(family="negative_binomial").fit(X, y)
    assert isinstance(nb.family_, NegativeBinomial) and 0 < nb.family_.theta < 1e8


def test_separated_classes_warn_and_still_predict():
    X = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0]])
    y = np.array([0, 0, 0, 1, 1, 1])
    with pytest.warns(skmixed.ConvergenceWarning, match="separated"):
        est = GLMMClassifier().fit(X, y)
    np.testing.assert_array_equal(est.predict(X), y)


def test_glmm_errors(contraception, poisson_data):
    data, X = contraception
    with pytest.raises(ValueError, match="Only binary classification is supported"):
        GLMMClassifier().fit(X, data["livch"], groups=data["district"])
    with pytest.raises(ValueError, match="only one class"):
        GLMMClassifier().fit(X, np.ones(len(X)), groups=data["district"])
    with pytest.raises(ValueError, match="The 'family' parameter of GLMM must be .* Got 'poison' instead"):
        GLMM(family="poison").fit(poisson_data[["x"]], poisson_data["y"])
    with pytest.raises(ValueError, match="The 'link' parameter of GLMMClassifier must be .* Got 'identity' instead"):
        GLMMClassifier(link="identity").fit(X, data["use"])
    with pytest.raises(ValueError, match="The 'nAGQ' parameter of GLMMClassifier must be an int in the range"):
        GLMMClassifier(nAGQ=1.5).fit(X, data["use"])
    with pytest.raises(DataError, match="negative values"):
        GLMM().fit(poisson_data[["x"]], -poisson_data["y"] - 1.0)


def test_gaussian_glmm_is_the_ml_linear_mixed_model(sleep):
    X, y, g = sleep[["Days"]], sleep["Reaction"], sleep["Subject"]
    with pytest.warns(UserWarning, match="is a linear mixed model"):
        gaussian = GLMM(family="gaussian").fit(X, y, groups=g)
    lmm = MixedLM(reml=False).fit(X, y, groups=g)
    np.testing.assert_allclose(gaussian.coef_, lmm.coef_, rtol=1e-10)
    np.testing.assert_allclose(gaussian.predict(X, groups=g), lmm.predict(X, groups=g), rtol=1e-10)
