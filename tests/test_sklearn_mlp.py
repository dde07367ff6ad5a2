"""gpunn.sklearn.MLPClassifier / MLPRegressor against scikit-learn's own classes:
from the same random_state (so the same initial weights, batch order and
early-stopping split) a float64 fit gives scikit-learn's loss curve to 1e-10 per
epoch, its weights and its predictions; the default-parameter scores agree."""

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn import datasets
from sklearn import neural_network as sk
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from gpunn import sklearn as gs

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def digits(n=300, n_class=10):
    X, y = datasets.load_digits(n_class=n_class, return_X_y=True)
    return X[:n] / 16, y[:n]


def diabetes():
    X, y = datasets.load_diabetes(return_X_y=True)
    return StandardScaler().fit_transform(X), (y - y.mean()) / y.std()


def fit_both(gpunn_cls, sk_cls, backend, X, y, sample_weight=None, **params):
    ours = gpunn_cls(device=backend.name, dtype="float64", **params)
    theirs = sk_cls(**params)
    ours.fit(X, y, sample_weight=sample_weight)
    theirs.fit(X, y, sample_weight=sample_weight)
    return ours, theirs


def assert_same_fit(ours, theirs, X=None, tol=1e-10):
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.t_ == theirs.t_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=0, atol=tol)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)
    if X is not None:
        np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


CLASSIFIER_CASES = {
    "adam-relu": {"solver": "adam", "max_iter": 6},
    "adam-tanh-batch64-noshuffle": {
        "solver": "adam",
        "activation": "tanh",
        "batch_size": 64,
        "shuffle": False,
        "max_iter": 5,
    },
    "sgd-nesterov-invscaling": {
        "solver": "sgd",
        "learning_rate": "invscaling",
        "learning_rate_init": 0.5,
        "max_iter": 6,
    },
    "sgd-momentum-logistic": {
        "solver": "sgd",
        "activation": "logistic",
        "nesterovs_momentum": False,
        "learning_rate_init": 0.2,
        "max_iter": 6,
    },
    "sgd-adaptive": {
        "solver": "sgd",
        "learning_rate": "adaptive",
        "learning_rate_init": 0.3,
        "n_iter_no_change": 1,
        "tol": 0.05,
        "max_iter": 12,
    },
    "adam-early-stopping": {
        "solver": "adam",
        "early_stopping": True,
        "n_iter_no_change": 2,
        "max_iter": 12,
    },
    "adam-identity-alpha": {
        "solver": "adam",
        "activation": "identity",
        "alpha": 0.5,
        "max_iter": 5,
    },
}


@pytest.mark.parametrize("case", sorted(CLASSIFIER_CASES))
def test_classifier_loss_curve_matches_sklearn(backend, case):
    X, y = digits()
    params = dict(hidden_layer_sizes=(20,), random_state=0, **CLASSIFIER_CASES[case])
    ours, theirs = fit_both(gs.MLPClassifier, sk.MLPClassifier, backend, X, y, **params)
    assert_same_fit(ours, theirs, X)
    assert ours._optimizer.learning_rate == pytest.approx(
        theirs._optimizer.learning_rate, rel=1e-12
    )
    assert ours._no_improvement_count == theirs._no_improvement_count
    if params.get("early_stopping"):
        np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_)
        assert ours.best_validation_score_ == theirs.best_validation_score_
        assert ours.best_loss_ is None
    else:
        assert ours.best_loss_ == pytest.approx(theirs.best_loss_, abs=1e-10)


def test_binary_and_string_labels_match_sklearn(backend):
    X, y = digits(n=200, n_class=2)
    labels = np.array(["even", "odd"])[y]
    params = {
        "hidden_layer_sizes": (8, 6),
        "solver": "adam",
        "random_state": 1,
        "max_iter": 5,
    }
    ours, theirs = fit_both(
        gs.MLPClassifier, sk.MLPClassifier, backend, X, labels, **params
    )
    assert_same_fit(ours, theirs, X)
    assert ours.out_activation_ == theirs.out_activation_ == "logistic"
    assert ours.n_outputs_ == 1
    np.testing.assert_array_equal(ours.classes_, ["even", "odd"])
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X))
    np.testing.assert_allclose(
        ours.predict_log_proba(X), theirs.predict_log_proba(X), rtol=1e-9
    )


def test_multilabel_matches_sklearn(backend):
    X, Y = datasets.make_multilabel_classification(n_samples=80, random_state=0)
    params = {
        "hidden_layer_sizes": (10,),
        "solver": "sgd",
        "random_state": 0,
        "max_iter": 6,
    }
    ours, theirs = fit_both(gs.MLPClassifier, sk.MLPClassifier, backend, X, Y, **params)
    assert_same_fit(ours, theirs, X)
    assert ours.out_activation_ == "logistic"
    assert ours.predict(X).shape == Y.shape
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X))


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
def test_regressor_loss_curve_matches_sklearn(backend, loss):
    X, y = diabetes()
    if loss == "poisson":
        y = np.round(np.exp(y / 2) * 3)  # counts
    params = {
        "loss": loss,
        "hidden_layer_sizes": (16,),
        "solver": "adam",
        "random_state": 3,
        "max_iter": 6,
    }
    ours, theirs = fit_both(gs.MLPRegressor, sk.MLPRegressor, backend, X, y, **params)
    assert_same_fit(ours, theirs)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-9)


def test_sample_weight_and_multioutput_match_sklearn(backend):
    X, Y = datasets.make_regression(n_samples=90, n_targets=3, random_state=2)
    Y = Y / Y.std()
    w = np.random.default_rng(0).uniform(0, 2, len(X))
    params = {
        "hidden_layer_sizes": (12,),
        "solver": "sgd",
        "random_state": 0,
        "max_iter": 5,
    }
    ours, theirs = fit_both(
        gs.MLPRegressor, sk.MLPRegressor, backend, X, Y, w, **params
    )
    assert_same_fit(ours, theirs)
    assert ours.predict(X).shape == (90, 3)


@pytest.mark.parametrize("cls", ["classifier", "regressor"])
def test_lbfgs_matches_sklearn(backend, cls):
    if cls == "classifier":
        X, y = digits(n=150)
        pair = gs.MLPClassifier, sk.MLPClassifier
    else:
        X, y = diabetes()
        pair = gs.MLPRegressor, sk.MLPRegressor
    params = {
        "hidden_layer_sizes": (10,),
        "solver": "lbfgs",
        "random_state": 0,
        "max_iter": 25,
    }
    ours, theirs = fit_both(*pair, backend, X, y, **params)
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-8)
    np.testing.assert_allclose(ours.predict(X[:20]), theirs.predict(X[:20]), rtol=1e-6)
    assert not hasattr(ours, "loss_curve_")  # as scikit-learn: lbfgs keeps none


@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
@pytest.mark.parametrize("target", ["multiclass", "binary", "regression", "poisson"])
def test_loss_and_gradient_equal_sklearn_backprop(backend, activation, target):
    """The L-BFGS objective (loss and packed gradient, L2 and sample weights
    included) equals scikit-learn's own ``_loss_grad_lbfgs`` at random weights."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(30, 4))
    y = {
        "multiclass": rng.integers(0, 3, 30),
        "binary": rng.integers(0, 2, 30),
        "regression": rng.normal(size=30),
        "poisson": rng.poisson(2.0, 30).astype(float),
    }[target]
    w = rng.uniform(0.5, 2, 30)
    is_classifier = target in ("multiclass", "binary")
    cls = gs.MLPClassifier if is_classifier else gs.MLPRegressor
    params = {
        "hidden_layer_sizes": (5, 3),
        "activation": activation,
        "solver": "lbfgs",
        "alpha": 0.3,
        "max_iter": 1,
        "random_state": 0,
    }
    if target == "poisson":
        params["loss"] = "poisson"
    est = cls(device=backend.name, dtype="float64", **params).fit(X, y)
    Y = est._label_binarizer.transform(y) if is_classifier else y.reshape(-1, 1)
    theta = rng.normal(
        scale=0.5,
        size=sum(c.size + b.size for c, b in zip(est.coefs_, est.intercepts_)),
    )
    net = est._gpunn_net(np.float64)
    ours = net.loss_grad(
        theta,
        *(net.to_device(a) for a in (X, Y, w)),
        est._loss_name(),
        est.out_activation_,
        est.alpha,
    )
    n = est.n_layers_
    buffers = [[X] + [None] * (n - 1)] + [[None] * (n - 1) for _ in range(3)]
    theirs = sk.MLPClassifier._loss_grad_lbfgs(est, theta, X, Y, w, *buffers)
    assert ours[0] == pytest.approx(theirs[0], rel=1e-12)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-10, atol=1e-13)


def test_partial_fit_matches_sklearn(backend):
    X, y = digits(n=120)
    params = {"hidden_layer_sizes": (16,), "solver": "sgd", "random_state": 0}
    ours = gs.MLPClassifier(device=backend.name, dtype="float64", **params)
    theirs = sk.MLPClassifier(**params)
    for start in (0, 40, 80, 0):
        batch = slice(start, start + 40)
        ours.partial_fit(X[batch], y[batch], classes=np.arange(10))
        theirs.partial_fit(X[batch], y[batch], classes=np.arange(10))
        assert ours.loss_ == pytest.approx(theirs.loss_, abs=1e-12)
    assert ours.n_iter_ == theirs.n_iter_ == 1
    assert ours.t_ == theirs.t_ == 160
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X))


def test_warm_start_continues_like_sklearn(backend):
    X, y = digits(n=150)
    params = {
        "hidden_layer_sizes": (10,),
        "warm_start": True,
        "solver": "adam",
        "random_state": 2,
        "max_iter": 3,
    }
    ours = gs.MLPClassifier(device=backend.name, dtype="float64", **params)
    theirs = sk.MLPClassifier(**params)
    for est in (ours, theirs):
        est.fit(X, y)
        est.set_params(max_iter=4)
        est.fit(X, y)
    assert_same_fit(ours, theirs, X)
    assert len(ours.loss_curve_) == 7


def test_weights_set_by_hand_are_used(backend):
    """scikit-learn's worked example (its test_fit): coefs_ set by hand, then one
    partial_fit step of SGD with L2 on a logistic network."""
    X, y = np.array([[0.6, 0.8, 0.7]]), np.array([0])
    est = gs.MLPClassifier(
        solver="sgd",
        learning_rate_init=0.1,
        alpha=0.1,
        activation="logistic",
        random_state=1,
        hidden_layer_sizes=2,
        momentum=0,
        device=backend.name,
        dtype="float64",
    )
    est.coefs_ = [
        np.array([[0.1, 0.2], [0.3, 0.1], [0.5, 0]]),
        np.array([[0.1], [0.2]]),
    ]
    est.intercepts_ = [np.array([0.1, 0.1]), np.array([1.0])]
    est.n_layers_, est.n_outputs_, est.n_features_in_ = 3, 1, 3
    est.out_activation_, est.t_, est.n_iter_ = "logistic", 0, 0
    est.best_loss_, est.loss_curve_, est._no_improvement_count = np.inf, [], 0
    est.partial_fit(X, y, classes=[0, 1])
    np.testing.assert_allclose(
        est.coefs_[0],
        [[0.098, 0.195756], [0.2956664, 0.096008], [0.4939998, -0.002244]],
        atol=1e-3,
    )
    np.testing.assert_allclose(est.intercepts_[1], [0.9235], atol=1e-3)
    assert est.predict_proba(X)[0, 1] == pytest.approx(0.739, abs=1e-3)


DATASETS = {
    "digits": (datasets.load_digits, sk.MLPClassifier, gs.MLPClassifier),
    "breast_cancer": (datasets.load_breast_cancer, sk.MLPClassifier, gs.MLPClassifier),
    "wine": (datasets.load_wine, sk.MLPClassifier, gs.MLPClassifier),
    "diabetes": (datasets.load_diabetes, sk.MLPRegressor, gs.MLPRegressor),
}


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_default_parameters_score_like_sklearn(name):
    """Default parameters (gpunn's float32 included) on a standardized 75/25
    split: the test scores differ by at most one test sample's worth."""
    load, sk_cls, gs_cls = DATASETS[name]
    X, y = load(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, random_state=0)
    scaler = StandardScaler().fit(X_tr)
    X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    threadpoolctl = pytest.importorskip("threadpoolctl")
    # one BLAS thread: small GEMMs on 2 shared cores are slower with two
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        ours = gs_cls(random_state=0, device="cpu").fit(X_tr, y_tr)
        theirs = sk_cls(random_state=0).fit(X_tr, y_tr)
    assert ours.coefs_[0].dtype == np.float32
    assert abs(ours.score(X_te, y_te) - theirs.score(X_te, y_te)) <= 1 / len(y_te)


def test_fitted_attributes_are_numpy_as_in_sklearn():
    X, y = digits(n=100)
    est = gs.MLPClassifier((7,), max_iter=3, random_state=0, device="cpu").fit(X, y)
    assert est.n_layers_ == 3 and est.n_outputs_ == 10 and est.n_features_in_ == 64
    assert [c.shape for c in est.coefs_] == [(64, 7), (7, 10)]
    assert [b.shape for b in est.intercepts_] == [(7,), (10,)]
    for a in est.coefs_ + est.intercepts_:
        assert type(a) is np.ndarray and a.dtype == np.float32
    assert isinstance(est.loss_, float) and len(est.loss_curve_) == est.n_iter_ == 3
    assert est.out_activation_ == "softmax" and est.t_ == 300
    assert est.validation_scores_ is None and est.best_validation_score_ is None
    assert isinstance(est, sk.MLPClassifier)
    proba = est.predict_proba(X)
    assert proba.dtype == np.float64  # float64 input: float64 predictions
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    assert est.predict_proba(X.astype(np.float32)).dtype == np.float32


def test_stopping_rule_and_adaptive_schedule():
    X, y = [[3, 2], [1, 6]], [1, 0]
    est = gs.MLPClassifier(tol=0.5, max_iter=3000, solver="sgd", device="cpu")
    est.fit(X, y)
    assert est.n_iter_ < 3000 and est._no_improvement_count == 11
    adaptive = gs.MLPClassifier(
        tol=0.5, max_iter=3000, solver="sgd", learning_rate="adaptive", device="cpu"
    ).fit(X, y)
    assert adaptive.n_iter_ < 3000 and adaptive._optimizer.learning_rate < 1e-6


def test_early_stopping_keeps_the_best_weights():
    X, y = digits(n=200)
    est = gs.MLPClassifier(
        (16,),
        early_stopping=True,
        n_iter_no_change=3,
        max_iter=60,
        random_state=0,
        learning_rate_init=0.05,
        device="cpu",
    ).fit(X, y)
    best = int(np.argmax(est.validation_scores_))
    assert est.best_validation_score_ == est.validation_scores_[best]
    for a, b in zip(est.coefs_, est._best_coefs):
        np.testing.assert_array_equal(a, b)


def test_pickle_round_trip_continues_training_identically():
    import pickle

    X, y = digits(n=100)
    est = gs.MLPClassifier((9,), solver="adam", random_state=0, device="cpu")
    est.partial_fit(X, y, classes=np.arange(10))
    copy = pickle.loads(pickle.dumps(est))
    assert "_gpunn_network" not in copy.__dict__
    assert type(copy._optimizer).__module__.startswith("sklearn.")  # plain state
    np.testing.assert_array_equal(copy.predict_proba(X), est.predict_proba(X))
    est.partial_fit(X, y)
    copy.partial_fit(X, y)
    assert copy.loss_ == est.loss_
    np.testing.assert_array_equal(copy.coefs_[0], est.coefs_[0])


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_sklearn_code_carries_on_from_gpunn_state(solver):
    """The solver handed over as scikit-learn's optimizer object (pickling, the
    accelerator's fallback) carries on exactly where gpunn's stopped."""
    X, y = digits(n=100)
    params = {"hidden_layer_sizes": (9,), "solver": solver, "random_state": 0}
    ours = gs.MLPClassifier(device="cpu", dtype="float64", **params)
    theirs = sk.MLPClassifier(**params)
    ours.partial_fit(X, y, classes=np.arange(10))
    theirs.__dict__.update(
        {k: v for k, v in ours.__getstate__().items() if k not in ("device", "dtype")}
    )
    ours.partial_fit(X, y)
    theirs.partial_fit(X, y)
    assert ours.loss_ == pytest.approx(theirs.loss_, abs=1e-12)
    np.testing.assert_allclose(ours.coefs_[0], theirs.coefs_[0], atol=1e-12)


@pytest.mark.parametrize(
    ("param", "value"), [("device", "tpu"), ("dtype", "float16"), ("alpha", -1.0)]
)
def test_invalid_parameters_are_refused_at_fit(param, value):
    from sklearn.utils._param_validation import InvalidParameterError

    est = gs.MLPClassifier(**{param: value})
    with pytest.raises(InvalidParameterError, match=param):
        est.fit([[0.0], [1.0]], [0, 1])
    assert not hasattr(est, "coefs_")


def test_nonfinite_weights_raise_as_in_sklearn():
    rng = np.random.RandomState(0)
    X = np.finfo(np.float64).max * rng.uniform(size=(10, 2))
    y = rng.standard_normal(size=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"), pytest.raises(ValueError, match="non-finite"):
            gs.MLPRegressor(dtype=None, device="cpu").fit(X, y)


def test_gpu_device_without_a_gpu_says_how_to_fix():
    from conftest import gpu_skip_reason

    from gpunn.errors import BackendUnavailableError

    if gpu_skip_reason() is None:
        pytest.skip("a GPU is usable here")
    with pytest.raises(BackendUnavailableError, match="gpunn\\[cuda12x\\]"):
        gs.MLPClassifier(device="gpu", max_iter=1).fit([[0.0], [1.0]], [0, 1])


def test_lbfgs_has_no_partial_fit_like_sklearn():
    assert not hasattr(gs.MLPClassifier(solver="lbfgs"), "partial_fit")
    assert hasattr(gs.MLPClassifier(solver="sgd"), "partial_fit")


def test_sparse_input_is_densified_with_the_same_result():
    import scipy.sparse

    X, y = digits(n=60)
    dense = gs.MLPClassifier((5,), max_iter=4, random_state=0, device="cpu").fit(X, y)
    sparse = gs.MLPClassifier((5,), max_iter=4, random_state=0, device="cpu")
    sparse.fit(scipy.sparse.csr_matrix(X), y)
    assert dense.loss_curve_ == sparse.loss_curve_
    np.testing.assert_array_equal(
        dense.predict(X), sparse.predict(scipy.sparse.csr_matrix(X))
    )


def test_caller_arrays_are_not_modified():
    X, y = digits(n=80)
    X.setflags(write=False)
    y.setflags(write=False)
    before = X.copy()
    gs.MLPClassifier((5,), max_iter=2, device="cpu").fit(X, y).predict(X)
    np.testing.assert_array_equal(X, before)


def test_random_state_none_uses_no_global_rng():
    X, y = digits(n=60)
    state = np.random.get_state()[1].copy()
    a = gs.MLPClassifier((5,), max_iter=1, device="cpu").fit(X, y)
    b = gs.MLPClassifier((5,), max_iter=1, device="cpu").fit(X, y)
    np.testing.assert_array_equal(np.random.get_state()[1], state)
    assert not np.array_equal(a.coefs_[0], b.coefs_[0])


def test_convergence_warning_as_in_sklearn():
    X, y = digits(n=60)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(2\\)"):
        gs.MLPClassifier((5,), max_iter=2, device="cpu").fit(X, y)


@pytest.mark.parametrize("activation", ["relu", "logistic", "tanh", "identity"])
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_steps_on_the_kernel_backend_match_numpy(
    kernel_backend, reference, dtype, activation, solver
):
    """scikit-learn's steps (loss, backprop, L2, Adam or Nesterov SGD) on the
    backend that runs gpunn's CUDA kernels (emulated on the CPU, or a GPU) follow
    the NumPy reference over a few steps."""
    from gpunn.sklearn import _optimizers
    from gpunn.sklearn._base import glorot_uniform
    from gpunn.sklearn._network import Network

    rng = np.random.RandomState(0)
    X = rng.normal(size=(40, 6))
    Y = np.eye(3)[rng.randint(0, 3, 40)]
    pairs = [glorot_uniform(rng, a, b, activation, dtype) for a, b in ((6, 5), (5, 3))]
    runs = []
    for backend in (reference, kernel_backend):
        net = Network([(6, 5), (5, 3)], activation, dtype, backend)
        net.set_weights([c for c, _ in pairs], [b for _, b in pairs])
        if solver == "adam":
            opt = _optimizers.Adam(net, 0.05, 0.9, 0.999, 1e-8)
        else:
            opt = _optimizers.SGD(net, 0.2, "constant", 0.9, True, 0.5)
        x, y = net.to_device(X), net.to_device(Y)
        losses = []
        for _ in range(4):
            loss = net.gradient_(x, y, None, "log_loss", "softmax", 1e-2)
            losses.append(float(backend.to_numpy(loss)))
            opt.update_(backend.xp, net.params, net.grads, net.scratch)
        runs.append((losses, net.get_weights()[0]))
    rtol, atol = (1e-6, 1e-6) if dtype == np.float64 else (1e-4, 1e-3)
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=rtol, atol=atol)
    for a, b in zip(runs[1][1], runs[0][1]):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def test_mixed_bfloat16_fits_like_float32():
    """precision="mixed_bfloat16": bfloat16 layers over float32 weights, scikit-learn's
    solver unchanged; the score stays within two test samples' worth of float32."""
    pytest.importorskip("ml_dtypes")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from gpunn.sklearn import MLPClassifier

    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X / 16, y, random_state=0)
    scores = {}
    for precision in ("float32", "mixed_bfloat16"):
        est = MLPClassifier(
            (64,), max_iter=30, random_state=0, device="cpu", precision=precision
        )
        scores[precision] = est.fit(X_tr, y_tr).score(X_te, y_te)
        assert all(c.dtype == np.float32 for c in est.coefs_)
        compute = est._gpunn_network.model.arena.compute
        assert (compute is None) == (precision == "float32")
        assert compute is None or compute.dtype.name == "bfloat16"
    assert scores["float32"] > 0.9
    assert abs(scores["mixed_bfloat16"] - scores["float32"]) <= 2 / len(y_te)


def test_precision_is_validated():
    pytest.importorskip("ml_dtypes")
    from sklearn.utils._param_validation import InvalidParameterError

    from gpunn.sklearn import MLPRegressor

    X, y = np.ones((8, 3)), np.ones(8)
    with pytest.raises(InvalidParameterError, match="precision"):
        MLPRegressor(precision="mixed_float16").fit(X, y)
    with pytest.raises(ValueError, match="needs dtype='float32'"):
        MLPRegressor(precision="mixed_bfloat16", dtype="float64").fit(X, y)
    est = MLPRegressor(precision="mixed_bfloat16", dtype=None, max_iter=2).fit(X, y)
    assert est.coefs_[0].dtype == np.float32  # float64 input, float32 masters
