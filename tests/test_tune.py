"""Grid and random search: trial order, the one validation split, scoring and sorting,
reproducibility, distributions, the results table, and the bad-input contract. Real
models on tiny data where training matters; a scripted stand-in model where only the
History does."""

import itertools
import math
import random
from types import SimpleNamespace

import numpy as np
import pytest

import gpunn
from gpunn import tune
from gpunn.errors import InvalidInputError, NonFiniteError
from gpunn.layers import Dense


def blobs(n=40, seed=0):
    """Two noisy clusters; column 0 is the sample's index (to follow the split)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.standard_normal((n, 3)) + 2.0 * y[:, None]
    X[:, 0] = np.arange(n)
    return X, y


def build(lr=0.1, units=4, seed=0):
    model = gpunn.Sequential(
        [Dense(units, activation="tanh"), Dense(2)], backend="cpu", seed=seed
    )
    model.compile("softmax_cross_entropy", gpunn.optim.SGD(lr))
    return model


class Scripted:
    """Stands in for a compiled model: ``fit`` records its arguments and returns a
    History-like object holding the scripted per-epoch values (or raises the scripted
    error)."""

    def __init__(self, calls, curves):
        self.calls, self.curves = calls, curves

    def fit(self, X, y, **kwargs):
        self.calls.append({"X": X, "y": y, **kwargs})
        if isinstance(self.curves, Exception):
            raise self.curves
        return SimpleNamespace(history={k: list(v) for k, v in self.curves.items()})


def scripted(curves_by_param, calls=None):
    """A build_fn over one parameter ``p`` whose models replay ``curves_by_param[p]``."""
    calls = [] if calls is None else calls
    return lambda p: Scripted(calls, curves_by_param[p]), calls


def test_grid_runs_the_cartesian_product_in_order():
    seen = []

    def build_fn(units, lr):
        seen.append((units, lr))
        return build(lr, units)

    X, y = blobs()
    space = {"units": [2, 3], "lr": [0.5, 0.1, 0.01]}
    results = tune.grid_search(build_fn, space, X, y, epochs=2)
    assert seen == list(itertools.product([2, 3], [0.5, 0.1, 0.01]))
    assert len(results.trials) == 6
    by_index = sorted(results.trials, key=lambda t: t.index)
    assert [tuple(t.params.values()) for t in by_index] == seen
    assert all(len(t.history["val_loss"]) == 2 for t in results.trials)


def test_scores_are_the_best_epoch_and_the_best_trial_is_the_best():
    """Each trial's score is recomputed by a plain fit on the same data."""
    X, y = blobs()
    X_val, y_val = blobs(20, seed=1)
    space = {"lr": [0.001, 0.05, 0.3, 1.0], "units": [3]}
    results = tune.grid_search(
        build, space, X, y, epochs=4, batch_size=8, validation_data=(X_val, y_val)
    )
    assert results.mode == "min"
    for trial in results.trials:
        history = build(**trial.params).fit(
            X, y, epochs=4, batch_size=8, validation_data=(X_val, y_val), verbose=0
        )
        curve = history.history["val_loss"]
        assert trial.score == min(curve) == curve[trial.epoch]
        assert trial.logs == {k: v[-1] for k, v in history.history.items()}
        assert trial.seconds > 0
    scores = [t.score for t in results.trials]
    assert scores == sorted(scores) and len(set(scores)) == 4
    assert results.best_score == scores[0]
    assert results.best_params == results.trials[0].params


@pytest.mark.parametrize(
    "monitor, mode, expected",
    [
        ("val_accuracy", "auto", [1, 2, 0]),  # max
        ("val_loss", "auto", [0, 2, 1]),  # min
        ("val_loss", "max", [1, 0, 2]),
        ("mae", "auto", [0, 2, 1]),
    ],
)
def test_sorting_follows_the_mode(monitor, mode, expected):
    curves = {
        0: {"val_loss": [0.5, 0.2], "val_accuracy": [0.1, 0.3], "mae": [1.0, 1.0]},
        1: {"val_loss": [0.9, 0.8], "val_accuracy": [0.9, 0.5], "mae": [3.0, 3.0]},
        2: {"val_loss": [0.4, 0.4], "val_accuracy": [0.6, 0.6], "mae": [2.0, 2.0]},
    }
    build_fn, _ = scripted(curves)
    X, y = blobs()
    results = tune.grid_search(
        build_fn, {"p": [0, 1, 2]}, X, y, monitor=monitor, mode=mode
    )
    assert [t.params["p"] for t in results.trials] == expected
    assert [r["rank"] for r in results.rows()] == [1, 2, 3]


@pytest.mark.parametrize(
    "monitor, mode",
    [
        ("val_top_k_accuracy", "max"),
        ("val_f1", "max"),
        ("precision", "max"),
        ("val_recall", "max"),
        ("val_r2", "max"),
        ("val_mse", "min"),
        ("loss", "min"),
    ],
)
def test_auto_mode_from_the_monitor_name(monitor, mode):
    build_fn, _ = scripted({0: {monitor: [1.0]}})
    X, y = blobs()
    results = tune.grid_search(build_fn, {"p": [0]}, X, y, monitor=monitor)
    assert results.mode == mode


def test_diverged_and_nan_trials_rank_last():
    curves = {
        0: NonFiniteError("loss became nan at epoch 1, step 3"),
        1: {"val_loss": [math.nan, 0.7, math.nan]},  # nan epochs are skipped
        2: {"val_loss": [math.nan, math.nan, math.nan]},
        3: {"val_loss": [0.9, 0.8, 0.85]},
    }
    build_fn, _ = scripted(curves)
    X, y = blobs()
    results = tune.grid_search(build_fn, {"p": [0, 1, 2, 3]}, X, y)
    assert [t.params["p"] for t in results.trials] == [1, 3, 0, 2]
    assert (results.trials[0].score, results.trials[0].epoch) == (0.7, 1)
    failed = results.trials[2]
    assert math.isnan(failed.score) and failed.epoch is None
    assert failed.error == "NonFiniteError: loss became nan at epoch 1, step 3"
    assert results.trials[3].error is None and math.isnan(results.trials[3].score)


def test_one_validation_split_shared_by_every_trial():
    X, y = blobs(50)
    build_fn, calls = scripted({p: {"val_loss": [p]} for p in range(3)})
    tune.grid_search(
        build_fn, {"p": [0, 1, 2]}, X, y, epochs=7, batch_size=5, seed=3,
        fit_kwargs={"shuffle": False},
    )  # fmt: skip
    first = calls[0]
    for call in calls:
        assert call["epochs"] == 7 and call["batch_size"] == 5
        assert call["verbose"] == 0 and call["shuffle"] is False
        np.testing.assert_array_equal(call["X"], first["X"])
        np.testing.assert_array_equal(
            call["validation_data"][0], first["validation_data"][0]
        )
    train_ids, val_ids = first["X"][:, 0], first["validation_data"][0][:, 0]
    assert len(val_ids) == int(50 * 0.2) and len(train_ids) == 40
    assert sorted([*train_ids, *val_ids]) == list(range(50))  # a partition
    assert list(train_ids) == sorted(train_ids) and list(val_ids) == sorted(val_ids)
    np.testing.assert_array_equal(first["y"], y[train_ids.astype(int)])
    np.testing.assert_array_equal(first["validation_data"][1], y[val_ids.astype(int)])


def held_out(seed, validation_split=0.2, **kwargs):
    X, y = blobs(50)
    build_fn, calls = scripted({0: {"val_loss": [1.0], "loss": [1.0]}})
    tune.grid_search(
        build_fn, {"p": [0]}, X, y, seed=seed, validation_split=validation_split,
        **kwargs,
    )  # fmt: skip
    val = calls[0]["validation_data"]
    return calls[0], None if val is None else sorted(val[0][:, 0])


def test_split_depends_on_the_seed_only():
    assert held_out(0)[1] == held_out(0)[1]
    assert held_out(0)[1] != held_out(1)[1]
    call, ids = held_out(0, validation_split=0.0, monitor="loss")
    assert ids is None and len(call["X"]) == 50
    X_val, y_val = blobs(10, seed=9)
    call, _ = held_out(0, validation_data=(X_val, y_val))
    assert len(call["X"]) == 50 and call["validation_data"][0] is X_val


def run_random(seed):
    X, y = blobs()
    space = {"lr": tune.loguniform(1e-3, 1.0), "units": tune.randint(2, 6)}
    results = tune.random_search(build, space, X, y, n_trials=4, epochs=2, seed=seed)
    return [{k: v for k, v in r.items() if k != "seconds"} for r in results.rows()]


def test_random_search_is_reproducible_and_leaves_global_rngs_alone():
    np_state, py_state = np.random.get_state(), random.getstate()
    first = run_random(seed=11)
    assert run_random(seed=11) == first  # same params, same scores, bitwise
    assert run_random(seed=12) != first
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1])
    assert after[2:] == np_state[2:]
    assert random.getstate() == py_state


def test_random_search_draws_within_bounds():
    space = {
        "a": tune.uniform(-2.0, 3.0),
        "b": tune.loguniform(1e-5, 1e-1),
        "c": tune.randint(-3, 4),
        "d": tune.choice(["relu", "tanh"]),
        "e": [16, 32],
    }
    trials = []
    X, y = blobs()
    results = tune.random_search(
        lambda **p: trials.append(p) or Scripted([], {"val_loss": [1.0]}),
        space, X, y, n_trials=60, seed=5,
    )  # fmt: skip
    assert len(results.trials) == len(trials) == 60
    for p in trials:
        assert -2.0 <= p["a"] < 3.0 and 1e-5 <= p["b"] <= 1e-1
        assert -3 <= p["c"] < 4 and type(p["c"]) is int and type(p["a"]) is float
        assert p["d"] in ("relu", "tanh") and p["e"] in (16, 32)
    assert {p["c"] for p in trials} == set(range(-3, 4))
    assert {p["d"] for p in trials} == {"relu", "tanh"}


def test_distributions():
    rng = np.random.default_rng(0)
    draws = {
        name: np.array([dist.sample(rng) for _ in range(4000)])
        for name, dist in {
            "uniform": tune.uniform(1.0, 3.0),
            "loguniform": tune.loguniform(1e-4, 1.0),
            "randint": tune.randint(0, 4),
            "choice": tune.choice([5, 7]),
        }.items()
    }
    assert draws["uniform"].min() >= 1.0 and draws["uniform"].max() < 3.0
    assert draws["uniform"].mean() == pytest.approx(2.0, abs=0.05)
    logs = np.log10(draws["loguniform"])
    assert logs.min() >= -4 and logs.max() <= 0
    assert logs.mean() == pytest.approx(-2.0, abs=0.1)  # uniform in log space
    assert np.mean(logs < -3) == pytest.approx(0.25, abs=0.03)
    counts = np.bincount(draws["randint"])
    assert len(counts) == 4 and counts.min() > 900  # 0..3, never 4
    assert set(draws["choice"]) == {5, 7}
    assert repr(tune.loguniform(1e-4, 1.0)) == "loguniform(0.0001, 1.0)"


def test_random_search_over_lists_draws_distinct_grid_points():
    X, y = blobs()
    build_fn, _ = scripted(
        {(a, b): {"val_loss": [1.0]} for a in range(3) for b in "xy"}
    )

    def run(n_trials):
        results = tune.random_search(
            lambda a, b: build_fn((a, b)), {"a": [0, 1, 2], "b": ["x", "y"]}, X, y,
            n_trials=n_trials,
        )  # fmt: skip
        return [tuple(t.params.values()) for t in results.trials]

    assert len(set(run(4))) == 4
    assert sorted(run(50)) == sorted(itertools.product(range(3), "xy"))


def test_table_rows_and_verbose(capsys):
    build_fn, _ = scripted(
        {0.5: {"val_loss": [0.5, 0.25]}, 0.01: {"val_loss": [0.75, 0.5]}}
    )
    X, y = blobs()
    results = tune.grid_search(build_fn, {"p": [0.01, 0.5]}, X, y, verbose=1)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("[1/2] p=0.01: val_loss=0.5 at epoch 1")
    assert printed[1].startswith("[2/2] p=0.5: val_loss=0.25 at epoch 1")
    lines = results.table().splitlines()
    assert lines[0].split() == ["rank", "trial", "p", "min", "val_loss", "epoch", "s"]
    assert lines[1].split()[:5] == ["1", "1", "0.5", "0.25", "1"]
    assert lines[2].split()[:5] == ["2", "0", "0.01", "0.5", "1"]
    assert len({len(line.rstrip()) for line in lines[1:]}) == 1  # right-aligned
    assert str(results) == results.table()
    row = results.rows()[0]
    assert list(row)[:8] == [
        "rank", "trial", "p", "score", "epoch", "seconds", "error", "final_val_loss"
    ]  # fmt: skip
    assert (row["p"], row["score"], row["final_val_loss"]) == (0.5, 0.25, 0.25)
    assert "best val_loss=0.25" in repr(results)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"space": {}}, ValueError, "space must be a non-empty dict"),
        ({"space": {"p": []}}, ValueError, r"space\['p'\] must be a non-empty list"),
        ({"space": {"p": 0.1}}, ValueError, r"space\['p'\] must be a non-empty list"),
        ({"space": {"score": [1]}}, ValueError, "space names must be strings"),
        ({"n_trials": 0}, ValueError, "n_trials must be an int >= 1"),
        ({"n_trials": 2.5}, ValueError, "n_trials must be an int >= 1"),
        (
            {"validation_split": 1.0},
            ValueError,
            r"validation_split must be in \[0, 1\)",
        ),
        ({"validation_split": -0.1}, ValueError, "validation_split must be in"),
        ({"validation_split": 0.01}, ValueError, "holds out no sample of 40"),
        ({"validation_split": 0.0}, ValueError, "monitor='val_loss' needs validation"),
        ({"validation_data": ([1],)}, ValueError, "validation_data must be a pair"),
        ({"mode": "best"}, ValueError, "mode must be 'auto', 'min' or 'max'"),
        ({"monitor": None}, ValueError, "monitor must be a History key, got None"),
        ({"verbose": 2}, ValueError, "verbose must be 0 or 1"),
        ({"epochs": 0}, ValueError, "epochs must be an int >= 1"),
        ({"batch_size": -1}, ValueError, "batch_size must be an int >= 1"),
        ({"seed": -1}, ValueError, "seed must be an int >= 0"),
        ({"fit_kwargs": {"epochs": 3}}, ValueError, r"must not set \['epochs'\]"),
        ({"fit_kwargs": [1]}, TypeError, "fit_kwargs must be a dict"),
        ({"y": np.zeros(39)}, InvalidInputError, "got 40 and 39"),
        ({"build_fn": "model"}, TypeError, "build_fn must be callable"),
    ],
)
def test_bad_arguments_raise_before_any_training(kwargs, error, match):
    built = []
    X, y = blobs()
    args = {"build_fn": lambda p: built.append(p), "space": {"p": [1]}, "X": X, "y": y}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        tune.random_search(**args)
    assert built == []


def test_errors_found_while_searching():
    X, y = blobs()
    with pytest.raises(ValueError, match=r"grid_search needs a list of values"):
        tune.grid_search(build, {"lr": tune.uniform(0.1, 0.2)}, X, y)
    with pytest.raises(TypeError, match="must return a compiled gpunn.Sequential"):
        tune.grid_search(lambda p: None, {"p": [1]}, X, y)
    with pytest.raises(ValueError, match=r"'val_f2'.* has \['accuracy', 'loss', 'val_"):
        tune.grid_search(build, {"lr": [0.1]}, X, y, epochs=1, monitor="val_f2")


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: tune.uniform(1.0, 1.0), ValueError, "needs lo < hi"),
        (lambda: tune.uniform(0.0, math.inf), ValueError, r"hi must be in"),
        (lambda: tune.loguniform(0.0, 1.0), ValueError, r"lo must be in \(0, inf\)"),
        (lambda: tune.loguniform(-1.0, 1.0), ValueError, "lo must be in"),
        (lambda: tune.randint(3, 3), ValueError, "randint needs lo < hi"),
        (lambda: tune.randint(1.5, 3), TypeError, "randint lo must be an int"),
        (lambda: tune.choice([]), ValueError, "values must be a non-empty list"),
        (lambda: tune.choice("ab"), ValueError, "values must be a non-empty list"),
    ],
)
def test_bad_distributions(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_sample_weight_in_fit_kwargs_is_refused_up_front():
    X = np.random.default_rng(0).standard_normal((20, 3))
    y = np.arange(20) % 2
    built = []

    def build(units):
        built.append(units)
        raise AssertionError("build_fn must not run")

    with pytest.raises(ValueError, match="sample_weight"):
        tune.grid_search(
            build, {"units": [4]}, X, y, fit_kwargs={"sample_weight": np.ones(20)}
        )
    assert built == []
