"""The gpunn command: train on the bundled digits and on user files, info, errors."""

import subprocess
import sys

import numpy as np
import pytest

from gpunn.cli import main


def run(capsys, *argv):
    """``(exit status, stdout, stderr)``; a flag the parser refuses exits by
    SystemExit, as argparse does."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def on_cpu(data, epochs, *extra):
    """argv for a quiet CPU training run on ``data``."""
    return [
        "train",
        "--data",
        str(data),
        "--device",
        "cpu",
        "--epochs",
        str(epochs),
        "--verbose",
        "0",
        *extra,
    ]


def test_default_train_reaches_97_percent(capsys, monkeypatch):
    monkeypatch.setenv("GPUNN_BACKEND", "cpu")
    code, out, _ = run(capsys, "train", "--verbose", "0")
    assert code == 0
    assert (
        "data: bundled digits, 1438 train / 359 test samples, 64 features, 10 classes"
        in out
    )
    assert "model: 64-256-256-10 (85,002 params, float32) on backend cpu, adam" in out
    accuracy = float(out.split("test accuracy: ")[1].split()[0])
    assert accuracy >= 0.97
    assert "samples/s" in out and "train time: " in out


def test_train_prints_backend_choice_and_progress(capsys, monkeypatch):
    monkeypatch.delenv("GPUNN_BACKEND", raising=False)
    code, out, _ = run(
        capsys,
        "train",
        "--epochs",
        "2",
        "--hidden",
        "32",
        "--verbose",
        "2",
        "--optimizer",
        "sgd",
        "--lr",
        "0.1",
        "--activation",
        "tanh",
    )
    assert code == 0
    assert out.startswith("gpunn backend: ")  # the auto choice and why
    assert "Epoch 1/2 - " in out and "Epoch 2/2 - " in out
    assert "64-32-10" in out and "sgd lr=0.1" in out


def test_train_on_npz_and_csv(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = np.arange(120) % 3
    X = rng.standard_normal((120, 5)) + np.eye(3, 5)[y] * 4
    np.savez(tmp_path / "d.npz", X=X, y=y)
    argv = on_cpu(tmp_path / "d.npz", 20, "--hidden", "16", "--lr", "0.01")
    code, out, _ = run(capsys, *argv)
    assert code == 0 and "3 classes" in out
    assert float(out.split("test accuracy: ")[1].split()[0]) > 0.9
    table = np.column_stack([X, y])
    np.savetxt(
        tmp_path / "d.csv", table, delimiter=",", header="a,b,c,d,e,label", comments=""
    )
    code, out, _ = run(capsys, *on_cpu(tmp_path / "d.csv", 2))
    assert code == 0 and "96 train / 24 test samples, 5 features, 3 classes" in out


def test_regression_csv(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 3))
    np.savetxt(
        tmp_path / "r.csv",
        np.column_stack([X, X @ [1.0, -2.0, 0.5] + 0.1]),
        delimiter=",",
    )
    code, out, _ = run(capsys, *on_cpu(tmp_path / "r.csv", 30))
    assert code == 0 and "regression" in out and "test mse: " in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--data", "missing.npz"], "No such file"),
        (["train", "--data", "data.txt"], "path must end in .npz or .csv"),
        (["train", "--epochs", "0"], "argument --epochs: expected an int >= 1"),
        (
            ["train", "--lr", "-1"],
            "argument --lr: expected a finite number in (0, inf)",
        ),
    ],
)
def test_train_errors_exit_2_with_a_message(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err


def test_bad_flags_are_rejected_by_the_parser(capsys):
    for argv in (["train", "--hidden", "0"], ["train", "--device", "tpu"], ["fly"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    assert "sizes must be positive" in capsys.readouterr().err


def test_info(capsys):
    code, out, _ = run(capsys, "info")
    assert code == 0
    assert out.startswith("gpunn 0.1.0\n") and "numpy " in out
    assert "gpu backend: " in out and "auto picks: " in out


def test_module_entry_point_runs():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gpunn",
            "train",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--verbose",
            "0",
            "--hidden",
            "8",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "test accuracy: " in out.stdout


def test_task_detection_and_override(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3))
    target = np.round(X @ [30.0, -20.0, 5.0])  # integer-valued, negative: regression
    np.savetxt(tmp_path / "r.csv", np.column_stack([X, target]), delimiter=",")
    code, out, _ = run(capsys, *on_cpu(tmp_path / "r.csv", 2))
    assert code == 0 and "regression" in out
    labels = (X[:, 0] > 0).astype(float)
    np.savetxt(tmp_path / "c.csv", np.column_stack([X, labels]), delimiter=",")
    code, out, _ = run(capsys, *on_cpu(tmp_path / "c.csv", 2))
    assert code == 0 and "2 classes" in out
    code, out, _ = run(capsys, *on_cpu(tmp_path / "c.csv", 2, "--task", "regress"))
    assert code == 0 and "regression" in out


def test_toolkit_flags_build_and_train_what_they_name(capsys, monkeypatch):
    """optimizer, schedule with warmup, dropout, batch norm, clipping, accumulation and
    early stopping all reach the model."""
    import gpunn

    built = {}
    original = gpunn.Sequential.fit

    def spy(model, *args, **kwargs):
        built["model"], built["kwargs"] = model, kwargs
        return original(model, *args, **kwargs)

    monkeypatch.setattr(gpunn.Sequential, "fit", spy)
    code, out, _ = run(
        capsys,
        "train",
        "--device=cpu",
        "--verbose=0",
        "--epochs=3",
        "--hidden=32,16",
        "--optimizer=lamb",
        "--lr=3e-3",
        "--weight-decay=0.02",
        "--schedule=cosine",
        "--warmup-steps=5",
        "--dropout=0.2",
        "--batch-norm",
        "--clip-norm=1.5",
        "--accumulate-steps=2",
        "--early-stopping=4",
    )
    assert code == 0, out
    assert "lamb lr=0.003 schedule=cosine" in out
    model, kwargs = built["model"], built["kwargs"]
    kinds = [type(layer).__name__ for layer in model.layers]
    block = ["Dense", "BatchNorm", "Activation", "Dropout"]
    assert kinds == ["Standardize", *block, *block, "Dense"]
    optimizer = model.optimizer
    assert type(optimizer).__name__ == "LAMB" and optimizer.weight_decay == 0.02
    assert optimizer.clip_norm == 1.5
    config = optimizer.schedule.get_config()
    assert config["name"] == "warmup" and config["warmup_steps"] == 5
    assert config["after"]["name"] == "cosine"
    # 1295 fitted samples: 21 batches of 64, 11 updates of 2 batches, 3 epochs, minus
    # the warmup: the cosine reaches 0 at the last update
    assert config["after"]["total_steps"] == 3 * 11 - 5
    assert optimizer.steps == 3 * 11
    assert kwargs["accumulate_steps"] == 2 and kwargs["validation_split"] == 0.1
    (stop,) = [c for c in kwargs["callbacks"] if type(c).__name__ == "EarlyStopping"]
    assert stop.patience == 4 and stop.restore_best_weights


def test_early_stopping_flag_reports_the_restored_epoch(capsys):
    code, out, _ = run(
        capsys,
        "train",
        "--device=cpu",
        "--verbose=0",
        "--epochs=30",
        "--hidden=32",
        "--lr=0.05",
        "--early-stopping=1",
    )
    assert code == 0
    assert "early stopping after" in out and "restored the weights of epoch" in out


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--dropout=1.5", "argument --dropout: expected a finite number in [0, 1)"),
        ("--accumulate-steps=0", "argument --accumulate-steps: expected an int >= 1"),
        ("--clip-norm=-1", "argument --clip-norm: expected a finite number in (0,"),
    ],
)
def test_bad_toolkit_flags_exit_2_naming_the_value(capsys, flag, message):
    code, _, err = run(capsys, "train", "--device=cpu", "--epochs=1", flag)
    assert code == 2 and message in err


def test_save_checkpoint_and_resume_flags(tmp_path, capsys):
    """--save writes a model that predicts on raw features (its standardization is a
    layer); --checkpoint writes one file per epoch; --resume continues one to the
    same result as the run that never stopped."""
    import gpunn

    argv = ["train", "--device=cpu", "--verbose=0", "--hidden=16", "--dtype=float64"]
    ckpt = tmp_path / "ckpt-{epoch}.safetensors"
    full = tmp_path / "full.safetensors"
    code, out, _ = run(
        capsys, *argv, "--epochs=3", f"--checkpoint={ckpt}", f"--save={full}"
    )
    assert code == 0 and f"saved the model to {full}" in out
    assert sorted(p.name for p in tmp_path.glob("ckpt-*")) == [
        f"ckpt-{e}.safetensors" for e in (1, 2, 3)
    ]
    resumed = tmp_path / "resumed.safetensors"
    first = tmp_path / "ckpt-1.safetensors"
    code, again, _ = run(
        capsys, *argv, "--epochs=3", f"--resume={first}", f"--save={resumed}"
    )
    assert code == 0
    accuracy = lambda text: text.split("test accuracy: ")[1].split()[0]
    assert accuracy(again) == accuracy(out)
    a, b = gpunn.load(full), gpunn.load(resumed)
    X, y = gpunn.datasets.load_digits()
    assert type(a.layers[0]).__name__ == "Standardize"
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    _, X_te, _, y_te = gpunn.datasets.train_test_split(X, y, 0.2, seed=0, stratify=True)
    # raw pixels in: the loaded model gives the accuracy the command printed
    assert f"{a.evaluate(X_te, y_te)['accuracy']:.4f}" == accuracy(out)


def test_resume_from_a_missing_checkpoint_exits_2(tmp_path, capsys):
    code, _, err = run(
        capsys, "train", "--device=cpu", "--epochs=1", f"--resume={tmp_path / 'no'}"
    )
    assert code == 2 and "no" in err


# ------------------------------------------------------------------ every bad flag
BAD_FLAGS = [
    ("--batch-size", "0"),
    ("--batch-size", "-3"),
    ("--batch-size", "1.5"),
    ("--epochs", "0"),
    ("--epochs", "x"),
    ("--lr", "0"),
    ("--lr", "nan"),
    ("--lr", "inf"),
    ("--weight-decay", "-1"),
    ("--warmup-steps", "-1"),
    ("--dropout", "1"),
    ("--dropout", "-0.1"),
    ("--early-stopping", "-1"),
    ("--validation-split", "1"),
    ("--clip-norm", "0"),
    ("--accumulate-steps", "0"),
    ("--keep-last", "0"),
    ("--seed", "-1"),
    ("--test-size", "0"),
    ("--test-size", "1"),
    ("--hidden", "0"),
    ("--verbose", "3"),
]


@pytest.mark.parametrize("flag, value", BAD_FLAGS)
def test_every_bad_flag_value_exits_2_naming_the_flag(capsys, flag, value):
    code, out, err = run(capsys, "train", "--device=cpu", "--epochs=1", flag, value)
    assert code == 2 and out == ""
    assert f"argument {flag}" in err and value in err
    assert "Traceback" not in err


def test_library_errors_speak_in_flags(capsys):
    from gpunn.cli_args import cli_message

    said = cli_message("batch_size=64 leaves 1 sample; or use backend='cpu'")
    assert said == "--batch-size=64 leaves 1 sample; or use --device cpu"
    code, _, err = run(
        capsys, "train", "--device=cpu", "--batch-norm", "--batch-size=1437"
    )  # 1438 training samples: a last batch of one, which BatchNorm refuses
    assert code == 2 and "--batch-size=1437" in err and "batch_size" not in err
    code, _, err = run(capsys, "train", "--keep-last=2")
    assert code == 2 and "--keep-last needs --checkpoint" in err


def test_precision_trains_mixed_and_its_errors_speak_in_flags(capsys):
    pytest.importorskip("ml_dtypes")
    code, out, _ = run(
        capsys, "train", "--device=cpu", "--epochs=2", "--precision=mixed_bfloat16"
    )
    assert code == 0 and "mixed_bfloat16" in out and "test accuracy" in out
    code, _, err = run(
        capsys, "train", "--device=cpu", "--precision=mixed_float16", "--dtype=float64"
    )
    assert code == 2
    assert "--precision mixed_float16" in err and "needs --dtype float32" in err


def test_device_gpu_without_a_gpu_says_the_flag(capsys):
    from gpunn.backends import gpu_status

    if gpu_status()[0] is not None:
        pytest.skip("a GPU is usable here")
    code, _, err = run(capsys, "train", "--device=gpu", "--epochs=1")
    assert code == 2 and "--device gpu needs CuPy" in err and "--device cpu" in err
    assert "backend=" not in err


@pytest.mark.parametrize(
    "argv", [["info"], ["train", "--device=cpu", "--epochs=1", "--verbose=2"]]
)
def test_a_closed_pipe_ends_quietly(argv):
    """``gpunn info | head``: the reader is gone before the first write."""
    import os

    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "gpunn", *argv],
            stdout=write,
            stderr=subprocess.PIPE,
            check=False,
        )
    finally:
        os.close(write)
    assert done.returncode == 141 and done.stderr == b""


def test_keep_last_keeps_the_newest_checkpoints(tmp_path, capsys):
    ckpt = tmp_path / "ckpt-{epoch}.safetensors"
    code, _, _ = run(
        capsys,
        "train",
        "--device=cpu",
        "--verbose=0",
        "--epochs=4",
        "--hidden=8",
        f"--checkpoint={ckpt}",
        "--keep-last=2",
    )
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ckpt-3.safetensors",
        "ckpt-4.safetensors",
    ]


@pytest.mark.parametrize(
    "labels, expected",
    [
        (lambda n, rng: rng.integers(0, 300, n), "--task"),  # ages, prices...
        (lambda n, rng: rng.integers(1, 4, n), "--task"),  # 1..3: not 0..K-1
        (lambda n, rng: rng.integers(0, 60, n), "--task"),  # 60 values, ~3 each
        (lambda n, rng: np.arange(n) % 4, "4 classes"),
        (lambda n, rng: rng.integers(0, 2, n) * 7, "--task"),  # 0 and 7
        (lambda n, rng: rng.integers(0, 2, n), "2 classes"),
    ],
)
def test_integer_targets_that_look_like_regression_need_task(
    tmp_path, capsys, labels, expected
):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3))
    data = np.column_stack([X, labels(200, rng)])
    np.savetxt(tmp_path / "t.csv", data, delimiter=",")
    code, out, err = run(capsys, *on_cpu(tmp_path / "t.csv", 1))
    if expected == "--task":
        assert code == 2 and "pass --task classify or --task regress" in err
        code, out, _ = run(capsys, *on_cpu(tmp_path / "t.csv", 1, "--task=regress"))
        assert code == 0 and "regression" in out
    else:
        assert code == 0 and expected in out
