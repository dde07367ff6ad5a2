"""gpunn's estimators inside scikit-learn's machinery: Pipeline, clone,
GridSearchCV, cross_val_score, pandas DataFrames with feature names."""

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone
from sklearn.datasets import load_digits, make_regression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from gpunn import sklearn as gs

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:300], y[:300]


def small(cls):
    """A quick-to-train estimator of ``cls``."""
    if cls in (gs.MLPClassifier, gs.MLPRegressor):
        return cls(
            hidden_layer_sizes=(16,),
            learning_rate_init=0.01,
            max_iter=30,
            random_state=0,
            device="cpu",
        )
    return cls(
        hidden_layer_sizes=(16,),
        learning_rate=0.01,
        epochs=15,
        random_state=0,
        device="cpu",
    )


@pytest.mark.parametrize("cls", [gs.MLPClassifier, gs.NeuralNetClassifier])
def test_pipeline_trains_fully_and_predicts(cls, digits):
    X, y = digits
    pipe = make_pipeline(StandardScaler(), small(cls)).fit(X, y)
    assert pipe.score(X, y) > 0.9  # trained for real, not one epoch
    np.testing.assert_array_equal(
        pipe.predict(X), pipe[-1].predict(pipe[0].transform(X))
    )


@pytest.mark.parametrize(
    "cls",
    [gs.MLPClassifier, gs.MLPRegressor, gs.NeuralNetClassifier, gs.NeuralNetRegressor],
)
def test_clone_gives_an_unfitted_copy_with_the_same_parameters(cls, digits):
    X, y = digits
    est = small(cls).fit(X, y)
    copy = clone(est)
    assert copy.get_params() == est.get_params()
    assert not hasattr(copy, "n_features_in_")
    np.testing.assert_array_equal(copy.fit(X, y).predict(X), est.predict(X))


def test_grid_search_and_cross_val_score(digits):
    X, y = digits
    X = StandardScaler().fit_transform(X)
    search = GridSearchCV(
        small(gs.MLPClassifier), {"hidden_layer_sizes": [(4,), (32,)]}, cv=3
    ).fit(X, y)
    assert search.best_params_ == {"hidden_layer_sizes": (32,)}
    scores = cross_val_score(small(gs.MLPClassifier), X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.8


def test_grid_search_tunes_a_wrapped_architecture(digits):
    X, y = digits
    X = StandardScaler().fit_transform(X)
    est = gs.NeuralNetClassifier(epochs=10, random_state=0, device="cpu")
    grid = {"hidden_layer_sizes": [(2,), (64,)], "learning_rate": [3e-3]}
    search = GridSearchCV(est, grid, cv=3).fit(X, y)
    assert search.best_params_["hidden_layer_sizes"] == (64,)
    assert search.best_estimator_.model_.layers[0].units == 64


@pytest.mark.parametrize("cls", [gs.MLPRegressor, gs.NeuralNetRegressor])
def test_pandas_input_keeps_feature_names(cls):
    pd = pytest.importorskip("pandas")
    X, y = make_regression(n_samples=60, n_features=3, random_state=0)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    est = small(cls).fit(frame, pd.Series(y / y.std()))
    np.testing.assert_array_equal(est.feature_names_in_, ["a", "b", "c"])
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        from_array = est.predict(X)
    np.testing.assert_allclose(est.predict(frame), from_array, rtol=1e-6)
    with pytest.raises(ValueError, match="Feature names"):
        est.predict(frame[["c", "b", "a"]])


def test_pandas_with_early_stopping_warns_nothing():
    """scikit-learn's gh-24846: the validation split keeps the feature names."""
    pd = pytest.importorskip("pandas")
    import warnings

    rng = np.random.RandomState(0)
    X = pd.DataFrame(rng.randn(10, 2), columns=["colname_a", "colname_b"])
    y = pd.Series(np.full(10, 1), name="colname_y")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        gs.MLPRegressor(early_stopping=True, validation_fraction=0.2, device="cpu").fit(
            X, y
        )
