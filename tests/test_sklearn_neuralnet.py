"""NeuralNetClassifier / NeuralNetRegressor: a build function returning a compiled
gpunn.Sequential as a scikit-learn estimator."""

import pickle

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.datasets import load_digits, make_multilabel_classification

import gpunn
from gpunn import sklearn as gs
from gpunn.layers import Dense


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:240] / 16, y[:240]


def build(n_features_in, n_classes, hidden=16, seed=None):
    model = gpunn.Sequential(
        [Dense(hidden, activation="relu"), Dense(n_classes)],
        input_dim=n_features_in,
        seed=seed,
        backend="cpu",
    )
    model.compile("softmax_cross_entropy", gpunn.optim.Adam(1e-2))
    return model


def test_build_arguments_are_parameters(digits):
    est = gs.NeuralNetClassifier(build, epochs=5, random_state=0)
    assert est.get_params()["hidden"] == 16  # the build function's default
    est.set_params(hidden=7, fit__accumulate_steps=2)
    assert est.hidden == 7 and est.get_params()["fit__accumulate_steps"] == 2
    est.fit(*digits)
    assert est.model_.layers[0].units == 7
    assert est.model_.input_dim == 64 and est.model_.output_dim == 10
    assert len(est.history_["loss"]) == 5


def test_injected_arguments_only_where_accepted(digits):
    seen = {}

    def record(**kwargs):
        seen.update(kwargs)
        return build(kwargs["n_features_in"], kwargs["n_classes"])

    def narrow(n_classes):
        seen["narrow"] = n_classes
        return build(64, n_classes)

    X, y = digits
    gs.NeuralNetClassifier(record, epochs=1, random_state=3).fit(X, y)
    assert seen["n_outputs"] == 10 and seen["seed"] == 3
    assert seen["multilabel"] is False
    gs.NeuralNetClassifier(narrow, epochs=1).fit(X, y)
    assert seen["narrow"] == 10


def test_same_random_state_same_model(digits):
    X, y = digits
    a = gs.NeuralNetClassifier(build, epochs=3, random_state=1).fit(X, y)
    b = gs.NeuralNetClassifier(build, epochs=3, random_state=1).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_labels_probabilities_and_score(digits):
    X, y = digits
    labels = np.array(list("abcdefghij"))[y]
    est = gs.NeuralNetClassifier(build, epochs=30, random_state=0).fit(X, labels)
    proba = est.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(est.predict(X), est.classes_[proba.argmax(axis=1)])
    assert est.score(X, labels) > 0.9


def test_binary_model_with_one_sigmoid_output(digits):
    X, y = digits
    keep = y < 2

    def one_output(n_features_in, seed=None):
        model = gpunn.Sequential(
            [Dense(8, activation="relu"), Dense(1, activation="sigmoid")],
            input_dim=n_features_in,
            seed=seed,
            backend="cpu",
        )
        model.compile("binary_cross_entropy", gpunn.optim.Adam(1e-2))
        return model

    labels = np.where(y[keep] == 1, "yes", "no")
    est = gs.NeuralNetClassifier(one_output, epochs=20, random_state=0)
    est.fit(X[keep], labels)
    proba = est.predict_proba(X[keep])
    assert proba.shape == (keep.sum(), 2)
    assert est.score(X[keep], labels) > 0.95


def test_multilabel_targets_with_the_default_builder():
    X, Y = make_multilabel_classification(n_samples=80, random_state=0)
    est = gs.NeuralNetClassifier(epochs=30, random_state=0, device="cpu").fit(X, Y)
    assert est.model_.loss.name == "binary_cross_entropy"
    assert est.predict(X).shape == Y.shape
    assert (est.predict(X) == Y).mean() > 0.8


def test_multioutput_regression():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 4))
    Y = X @ rng.normal(size=(4, 2))
    est = gs.NeuralNetRegressor(
        epochs=60, random_state=0, device="cpu", learning_rate=1e-2
    )
    est.fit(X, Y)
    assert est.predict(X).shape == (100, 2) and est.score(X, Y) > 0.9


def test_pickle_round_trip_through_model_files(digits):
    X, y = digits
    est = gs.NeuralNetClassifier(build, epochs=2, random_state=0).fit(X, y)
    copy = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(copy.predict_proba(X), est.predict_proba(X))
    assert isinstance(copy.model_, gpunn.Sequential)


@pytest.mark.parametrize(
    ("build_fn", "params", "error", "match"),
    [
        (build, {"hiden": 8}, ValueError, "does not take"),
        (lambda n_features_in: 3, {}, TypeError, "must return a gpunn.Sequential"),
        (
            lambda n_features_in: gpunn.Sequential([Dense(2)]),
            {},
            ValueError,
            "compiled",
        ),
        ("not a function", {}, TypeError, "build_fn must be a function"),
    ],
)
def test_bad_build_functions_are_reported_at_fit(
    digits, build_fn, params, error, match
):
    est = gs.NeuralNetClassifier(build_fn, epochs=1, **params)  # no error yet
    with pytest.raises(error, match=match):
        est.fit(*digits)


def test_regressor_refuses_a_classification_model(digits):
    est = gs.NeuralNetRegressor(lambda n_features_in, n_outputs: build(64, 3))
    with pytest.raises(ValueError, match="regression loss"):
        est.fit(digits[0], digits[1].astype(float))
