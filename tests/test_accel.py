"""gpunn.accel: scikit-learn's MLPs resolved to gpunn's, with logged fallbacks to
scikit-learn's code, a report, portable pickles and the ``python -m gpunn.accel``
runner (which also runs part of scikit-learn's own MLP tests here)."""

import copy
import logging
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("sklearn")

import scipy.sparse
import sklearn.neural_network
from sklearn.datasets import load_digits
from sklearn.neural_network import _multilayer_perceptron as original

import gpunn.accel
from gpunn.accel import _proxies

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture
def accel():
    gpunn.accel.install()
    gpunn.accel.reset_report()
    yield gpunn.accel
    gpunn.accel.install(max_dense_bytes=2**31)  # the default again
    gpunn.accel.uninstall()
    gpunn.accel.reset_report()


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:150] / 16, y[:150]


def run(*args, cwd=None, env=None):
    return subprocess.run(
        [sys.executable, *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def test_install_swaps_the_classes_and_uninstall_restores_them(accel):
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    assert MLPClassifier is _proxies.MLPClassifier and accel.is_installed()
    assert MLPRegressor is _proxies.MLPRegressor
    est = MLPClassifier()
    assert isinstance(est, original.MLPClassifier)  # still scikit-learn's type
    assert est.get_params()["dtype"] is None  # the input's dtype, as scikit-learn
    accel.uninstall()
    assert sklearn.neural_network.MLPClassifier is original.MLPClassifier
    assert not accel.is_installed()


def test_fits_run_on_gpunn_in_the_input_dtype_and_are_reported(accel, digits):
    X, y = digits
    est = sklearn.neural_network.MLPClassifier((8,), max_iter=3, random_state=0)
    est.fit(X, y)
    assert est.coefs_[0].dtype == np.float64 and "_gpunn_network" in vars(est)
    est.fit(X.astype(np.float32), y)
    assert est.coefs_[0].dtype == np.float32
    data = accel.report(print_fn=None)
    assert data == {
        "gpunn": 2,
        "scikit-learn": 0,
        "calls": [
            {
                "estimator": "MLPClassifier",
                "method": "fit",
                "where": "gpunn",
                "reason": "",
                "count": 2,
            }
        ],
    }
    lines = []
    accel.report(print_fn=lines.append)
    assert "2 of 2 calls ran on gpunn" in lines[0]


def test_install_dtype_sets_what_none_means(digits):
    gpunn.accel.install(dtype="float32")
    try:
        est = sklearn.neural_network.MLPRegressor(
            hidden_layer_sizes=(4,), max_iter=2
        ).fit(*digits)
        assert est.coefs_[0].dtype == np.float32
    finally:
        gpunn.accel.install(dtype=None)
        gpunn.accel.uninstall()
    with pytest.raises(ValueError, match="dtype must be None"):
        gpunn.accel.install(dtype="float16")


def test_a_subclass_falls_back_with_one_logged_line(accel, digits, caplog):
    calls = []

    class Traced(sklearn.neural_network.MLPClassifier):
        def _init_coef(self, fan_in, fan_out, dtype):  # scikit-learn's private hook
            calls.append((fan_in, fan_out))
            return super()._init_coef(fan_in, fan_out, dtype)

    X, y = digits
    with caplog.at_level(logging.WARNING, logger="gpunn.accel"):
        Traced((6,), max_iter=2, random_state=0).fit(X, y)
        est = Traced((6,), max_iter=2, random_state=0).fit(X, y)
    assert calls == [(64, 6), (6, 10)] * 2  # scikit-learn's code ran the override
    assert len(caplog.records) == 1
    assert "Traced is a subclass" in caplog.records[0].getMessage()
    reference = original.MLPClassifier((6,), max_iter=2, random_state=0).fit(X, y)
    np.testing.assert_array_equal(est.coefs_[0], reference.coefs_[0])
    data = accel.report(print_fn=None)
    assert data["scikit-learn"] == 2 and data["gpunn"] == 0
    assert "subclass" in data["calls"][0]["reason"]


def test_sparse_input_too_large_to_densify_falls_back(accel, digits):
    X, y = digits
    est = sklearn.neural_network.MLPClassifier((6,), solver="sgd", random_state=0)
    est.partial_fit(X, y, classes=np.arange(10))  # on gpunn
    accel.install(max_dense_bytes=0)
    est.partial_fit(scipy.sparse.csr_matrix(X), y)  # on scikit-learn, same object
    assert type(est._optimizer).__module__.startswith("sklearn.")
    reference = original.MLPClassifier((6,), solver="sgd", random_state=0)
    reference.partial_fit(X, y, classes=np.arange(10))
    reference.partial_fit(X, y)
    assert est.loss_ == pytest.approx(reference.loss_, abs=1e-12)
    proba = est.predict_proba(scipy.sparse.csr_matrix(X))
    np.testing.assert_allclose(proba, reference.predict_proba(X), atol=1e-12)
    methods = {(c["method"], c["where"]) for c in accel.report(print_fn=None)["calls"]}
    assert methods == {
        ("partial_fit", "gpunn"),
        ("partial_fit", "scikit-learn"),
        ("predict_proba", "scikit-learn"),
    }


def test_pickles_hold_scikit_learns_class_and_load_without_gpunn(
    accel, digits, tmp_path
):
    X, y = digits
    est = sklearn.neural_network.MLPClassifier((6,), max_iter=3, random_state=0)
    est.fit(X, y)
    data = pickle.dumps(est)
    assert b"gpunn" not in data
    loaded = pickle.loads(data)
    assert type(loaded) is original.MLPClassifier
    np.testing.assert_allclose(loaded.predict_proba(X), est.predict_proba(X))
    assert accel.report(print_fn=None)["calls"][-1]["method"] == "pickle"
    (tmp_path / "est.pkl").write_bytes(data)
    code = textwrap.dedent(
        """
        import pickle, sys
        import numpy as np
        sys.modules["gpunn"] = None  # importing gpunn now fails
        est = pickle.load(open("est.pkl", "rb"))
        est.partial_fit(np.zeros((1, 64)), [0])
        print(type(est).__module__, est.n_iter_)
        """
    )
    result = run("-c", code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "sklearn.neural_network._multilayer_perceptron",
        "1",
    ]


def test_copies_stay_accelerated(accel, digits):
    est = sklearn.neural_network.MLPRegressor(
        hidden_layer_sizes=(5,), max_iter=2, random_state=0
    )
    est.fit(*digits)
    for twin in (copy.copy(est), copy.deepcopy(est)):
        assert type(twin) is _proxies.MLPRegressor
        np.testing.assert_array_equal(twin.predict(digits[0]), est.predict(digits[0]))


SCRIPT = """
import sys
from sklearn.neural_network import MLPClassifier
print(MLPClassifier.__module__, *sys.argv[1:])
MLPClassifier((4,), max_iter=2).fit([[0.0], [1.0], [2.0], [3.0]], [0, 1, 0, 1])
sys.exit(3)
"""


def test_runner_runs_a_script_with_its_arguments(tmp_path):
    (tmp_path / "prog.py").write_text(SCRIPT)
    result = run("-m", "gpunn.accel", "--report", "prog.py", "a", "--b", cwd=tmp_path)
    assert result.returncode == 3
    assert result.stdout.split() == ["gpunn.accel._proxies", "a", "--b"]
    assert "1 of 1 calls ran on gpunn" in result.stderr


def test_runner_runs_a_module(tmp_path):
    (tmp_path / "prog_module.py").write_text(SCRIPT)
    result = run("-m", "gpunn.accel", "-m", "prog_module", "x", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert result.stdout.split() == ["gpunn.accel._proxies", "x"]


def test_runner_without_a_program_is_a_usage_error():
    result = run("-m", "gpunn.accel")
    assert result.returncode == 2 and "script" in result.stderr


def test_scikit_learns_own_mlp_tests_pass_under_the_runner():
    """A part of scikit-learn's ``neural_network/tests/test_mlp.py`` (the whole
    file is what the README reports on) through ``python -m gpunn.accel``."""
    pytest.importorskip("sklearn.neural_network.tests.test_mlp")
    tests = (
        "gradient or proba or early_stopping or partial_fit_regression or "
        "partial_fit_errors or shuffle or sparse or dtypes_casting or tolerance or "
        "adaptive or alpha"
    )
    result = run(
        "-m", "gpunn.accel", "--report", "-m", "pytest", "-q", "-p",
        "no:cacheprovider", "--pyargs", "sklearn.neural_network.tests.test_mlp",
        "-k", tests,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    assert " failed" not in result.stdout
    assert "calls ran on gpunn, 0 on scikit-learn" in result.stderr


def test_without_scikit_learn_the_errors_name_the_extra():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["sklearn"] = None  # as if scikit-learn were not installed
        import gpunn, gpunn.accel
        for action in (gpunn.accel.install, lambda: __import__("gpunn.sklearn")):
            try:
                action()
            except ImportError as exc:
                print(exc)
        """
    )
    result = run("-c", code)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == [
        'gpunn.accel needs scikit-learn: pip install "gpunn[sklearn]"',
        'gpunn.sklearn needs scikit-learn: pip install "gpunn[sklearn]"',
    ]
