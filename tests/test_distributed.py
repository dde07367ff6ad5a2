"""Data-parallel training (gpunn.distributed): sharding and launch detection without
MPI, and two real ranks under ``mpiexec -n 2`` (MPICH from the test extra) against one
process training on the same global batches (scenarios in distributed_run.py)."""

import itertools
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import distributed_run
import numpy as np
import pytest
from conftest import gpu_skip_reason

import gpunn
from gpunn.distributed import ranks as dist_world
from gpunn.distributed import shard_bounds

HERE = Path(__file__).resolve().parent


# ------------------------------------------------------------------ no MPI needed
@pytest.mark.parametrize("n", [0, 1, 2, 5, 8, 45])
@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_shards_cover_the_batch_once_and_differ_by_at_most_one(n, size):
    bounds = [shard_bounds(n, r, size) for r in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_launch_detection_reads_the_launchers_variables(monkeypatch):
    for size, rank, local in dist_world._LAUNCHERS:
        for var in (size, rank, local):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv(dist_world.ENV_VAR, raising=False)
    assert dist_world.launched_size() == 1 and not dist_world.enabled()
    assert gpunn.distributed.rank() == 0 and gpunn.distributed.size() == 1
    monkeypatch.setenv("PMI_SIZE", "4")
    monkeypatch.setenv("PMI_RANK", "3")
    assert dist_world.launched_size() == 4 and dist_world.enabled()
    assert dist_world.local_rank() == 3  # one node: the world rank
    monkeypatch.setenv("MPI_LOCALRANKID", "1")
    assert dist_world.local_rank() == 1
    monkeypatch.setenv(dist_world.ENV_VAR, "0")
    assert not dist_world.enabled()
    monkeypatch.setenv(dist_world.ENV_VAR, "maybe")
    with pytest.raises(
        ValueError, match="GPUNN_DISTRIBUTED must be auto, 0/off or 1/on"
    ):
        dist_world.enabled()


def test_a_multi_rank_launch_without_mpi4py_says_how_to_fix(monkeypatch):
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import fails
    monkeypatch.setattr(dist_world, "_WORLD", None)
    with pytest.raises(gpunn.distributed.DistributedError, match=r"gpunn\[mpi\]"):
        dist_world.world()


def _mpi4py_without_an_mpi_library():
    """A stand-in for mpi4py 4 installed where no MPI library can be loaded: importing
    ``mpi4py.MPI`` raises RuntimeError, not ImportError."""
    module = types.ModuleType("mpi4py")

    def __getattr__(name):
        raise RuntimeError("cannot load MPI library")

    module.__getattr__ = __getattr__
    return module


@pytest.mark.parametrize("forced", ["1", None], ids=["forced", "plain"])
def test_mpi4py_without_an_mpi_library_never_fails_a_single_process(
    monkeypatch, forced
):
    for size, _, _ in dist_world._LAUNCHERS:
        monkeypatch.delenv(size, raising=False)
    if forced is None:
        monkeypatch.delenv(dist_world.ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(dist_world.ENV_VAR, forced)
    monkeypatch.setitem(sys.modules, "mpi4py", _mpi4py_without_an_mpi_library())
    monkeypatch.setattr(dist_world, "_WORLD", None)
    assert dist_world.world().size == 1 and dist_world.world().comm is None
    model = gpunn.Sequential([gpunn.layers.Dense(2)], input_dim=3, seed=0)
    model.compile("mse", "sgd")
    model.fit(np.ones((4, 3)), np.ones((4, 2)), verbose=0)
    assert gpunn.distributed.rank() == 0


def test_a_multi_rank_launch_with_a_broken_mpi_says_how_to_fix(monkeypatch):
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", _mpi4py_without_an_mpi_library())
    monkeypatch.setattr(dist_world, "_WORLD", None)
    with pytest.raises(gpunn.distributed.DistributedError, match="RuntimeError"):
        dist_world.world()


def test_one_forced_rank_without_mpi_trains_like_one_process(monkeypatch, tmp_path):
    """GPUNN_DISTRIBUTED=1 in a plain process: a world of one, the data-parallel
    code path (shards, reductions, checksums) with the single-process results."""
    monkeypatch.setenv(dist_world.ENV_VAR, "1")
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setattr(dist_world, "_WORLD", None)
    forced, history, _ = distributed_run.parity(str(tmp_path))
    assert forced._data_parallel.size == 1
    monkeypatch.setenv(dist_world.ENV_VAR, "0")
    alone, reference, _ = distributed_run.parity(str(tmp_path))
    for a, b in zip(forced.get_weights(), alone.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    for key in reference.history:
        np.testing.assert_allclose(history.history[key], reference.history[key], 1e-12)


# ------------------------------------------------------------------ two MPI ranks
def _mpiexec():
    pytest.importorskip(
        "mpi4py", reason="mpi4py is not installed (the test extra has it)"
    )
    found = shutil.which("mpiexec", path=os.path.dirname(sys.executable))
    found = found or shutil.which("mpiexec")
    if found is None:
        pytest.skip("no mpiexec (the test extra installs MPICH from PyPI)")
    return found


def _read(out: Path, name: str, rank: int) -> dict:
    with np.load(out / f"{name}.rank{rank}.npz") as f:
        found = {k: f[k] for k in f.files}
    weights = [found[f"w{i}"] for i in range(sum(k.startswith("w") for k in found) - 1)]
    return {
        "weights": weights,
        "history": json.loads(found["history"].tobytes()),
        "extra": json.loads(found["extra"].tobytes()),
        "world": int(found["world"][0]),
    }


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Every scenario on two ranks (one mpiexec) and in one plain process."""
    mpiexec = _mpiexec()
    out, alone = tmp_path_factory.mktemp("ranks"), tmp_path_factory.mktemp("alone")
    script = str(HERE / "distributed_run.py")
    _launch([mpiexec, "-n", "2", sys.executable, script, str(out)])
    _launch([sys.executable, script, str(alone)])
    return out, alone


def _launch(command) -> str:
    """Runs ``command`` with gpunn importable and no GPUNN_DISTRIBUTED override;
    returns its stdout (the test fails with its output when it fails)."""
    env = {k: v for k, v in os.environ.items() if k != dist_world.ENV_VAR}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.parametrize("name", ["parity", "accumulate", "tiny_batches"])
def test_two_ranks_train_like_one_process_on_the_same_global_batches(two_ranks, name):
    out, alone = two_ranks
    ranks = [_read(out, name, r) for r in (0, 1)]
    single = _read(alone, name, 0)
    assert [r["world"] for r in ranks] == [2, 2] and single["world"] == 1
    for w0, w1, w in zip(ranks[0]["weights"], ranks[1]["weights"], single["weights"]):
        np.testing.assert_array_equal(w0, w1)  # every rank holds the same weights
        np.testing.assert_allclose(w0, w, rtol=1e-9, atol=1e-12)  # QUALITY: 1e-6
    for key, values in single["history"].items():  # losses and metrics reduced
        for r in ranks:
            np.testing.assert_allclose(r["history"][key], values, rtol=1e-9, atol=1e-12)
    if name == "parity":
        assert ranks[0]["extra"]["evaluate"] == pytest.approx(
            single["extra"]["evaluate"], rel=1e-9
        )


def test_dropout_and_batch_norm_per_rank_keep_the_weights_equal(two_ranks):
    out, _ = two_ranks
    ranks = [_read(out, "noise_and_batch_norm", r) for r in (0, 1)]
    for w0, w1 in zip(ranks[0]["weights"], ranks[1]["weights"]):
        np.testing.assert_array_equal(w0, w1)
    # rank 0's running statistics are broadcast at each epoch end
    assert ranks[0]["extra"]["running_mean"] == ranks[1]["extra"]["running_mean"]


def test_resume_on_two_ranks_is_bitwise_and_rank_0_writes_the_files(two_ranks):
    out, _ = two_ranks
    ranks = [_read(out, "resume", r) for r in (0, 1)]
    assert ranks[0]["extra"]["same_as_uninterrupted"] is True
    assert ranks[1]["extra"]["same_as_uninterrupted"] is True
    assert sorted(p.name for p in out.glob("ckpt-*")) == [
        f"ckpt-{e}.safetensors" for e in (1, 2, 3)
    ]
    rows = (out / "log.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,") and len(rows) == 4  # one writer, not two


def test_a_rank_whose_weights_diverge_is_caught(two_ranks):
    out, _ = two_ranks
    for r in (0, 1):
        error = _read(out, "divergence", r)["extra"]["error"]
        assert error is not None and "weights differ between the ranks" in error
        assert "ranks [1] do not match rank 0" in error


def test_an_extreme_row_on_one_rank_stops_every_rank_at_the_same_step(two_ranks):
    out, _ = two_ranks
    ranks = [_read(out, "extreme_row_on_one_rank", r)["extra"] for r in (0, 1)]
    assert "layer state" in ranks[0]["error"]  # rank 0 saw the overflow itself
    for extra in ranks:
        assert extra["error"] and extra["steps"] == 1 and extra["finite"]


def test_a_checkpoint_of_another_world_size_is_refused(two_ranks):
    out, _ = two_ranks
    model = distributed_run.mlp(dropout=True)
    X, y = distributed_run.data()
    with pytest.raises(gpunn.CheckpointError, match="written by 2 data-parallel rank"):
        model.fit(X, y, epochs=3, batch_size=8, resume_from=out / "ckpt-1.safetensors")


def test_ranks_on_one_node_share_its_cores(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from gpunn.backends import updates
    from gpunn.distributed import engines

    before = [i["num_threads"] for i in threadpoolctl.threadpool_info()]
    monkeypatch.setattr(updates, "usable_cores", lambda: 8)
    try:
        assert engines.share_cores(4) == 2
        assert updates._pool()[1] == 2
        for info in threadpoolctl.threadpool_info():
            if info["user_api"] == "blas":
                assert info["num_threads"] <= 2
    finally:
        updates.limit_threads(None)  # lifts the cap
        threadpoolctl.threadpool_limits(max(before, default=1), user_api="blas")


def test_gpunn_train_on_two_ranks_prints_once(tmp_path):
    mpiexec = _mpiexec()
    gpunn_cli = [sys.executable, "-m", "gpunn"]
    argv = ["train", "--device=cpu", "--epochs=2", "--hidden=32", "--verbose=2"]
    save = f"--save={tmp_path / 'm.safetensors'}"
    stdout = _launch([mpiexec, "-n", "2", *gpunn_cli, *argv, save])
    assert stdout.count("test accuracy: ") == 1
    assert stdout.count("Epoch 2/2") == 1
    assert gpunn.load(tmp_path / "m.safetensors").count_params() > 0


@pytest.mark.gpu
def test_nccl_path_on_one_gpu_trains_like_the_plain_gpu_run(monkeypatch):
    """GPUNN_DISTRIBUTED=1 on one GPU: the NCCL all-reduce and broadcast on the
    device (one rank), the same weights as the plain GPU run within tolerance."""
    if gpu_skip_reason():
        pytest.skip(f"GPU backend not usable: {gpu_skip_reason()}")
    pytest.importorskip("cupy.cuda.nccl", reason="CuPy has no NCCL here")
    X, y = distributed_run.data()

    def train():
        model = gpunn.Sequential(
            [gpunn.Dense(16, activation="tanh"), gpunn.Dense(3)],
            5,
            "float64",
            "gpu",
            seed=1,
        )
        model.compile("softmax_cross_entropy", "adam", metrics=["accuracy"])
        history = model.fit(X, y, epochs=2, batch_size=8, verbose=0)
        return model, history

    monkeypatch.setenv(dist_world.ENV_VAR, "0")
    plain, plain_history = train()
    monkeypatch.setenv(dist_world.ENV_VAR, "1")
    monkeypatch.setattr(dist_world, "_WORLD", None)
    nccl, nccl_history = train()
    assert nccl._data_parallel.engine.name == "nccl"
    for a, b in zip(nccl.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        nccl_history.history["loss"], plain_history.history["loss"], rtol=1e-9
    )
