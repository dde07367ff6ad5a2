"""Backend selection: argument, env GPUNN_BACKEND, auto fallback and its log line, and
the error for "gpu" without a usable GPU."""

import logging
import subprocess
import sys

import pytest

import gpunn
from gpunn import backends
from gpunn.backends import NumpyBackend, get_backend
from gpunn.errors import BackendUnavailableError


@pytest.fixture
def no_gpu(monkeypatch):
    """Pretends CuPy is not installed."""
    monkeypatch.setattr(
        backends,
        "gpu_status",
        lambda: (None, "CuPy is not installed (No module named 'cupy')"),
    )


def test_cpu_by_name_and_instances_pass_through():
    cpu = get_backend("cpu")
    assert isinstance(cpu, NumpyBackend) and cpu.name == "cpu"
    assert get_backend("CPU") is cpu
    assert get_backend(cpu) is cpu


def test_auto_falls_back_and_logs_why(no_gpu, caplog):
    with caplog.at_level(logging.INFO, logger="gpunn"):
        backend = get_backend("auto")
    assert backend.name == "cpu"
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        (
            "gpunn backend: cpu (NumPy), because CuPy is not installed "
            "(No module named 'cupy')"
        )
    ]


def test_gpu_without_a_gpu_says_how_to_fix(no_gpu):
    with pytest.raises(BackendUnavailableError) as info:
        get_backend("gpu")
    message = str(info.value)
    assert "CuPy is not installed" in message
    assert "pip install 'gpunn[cuda12x]'" in message and "backend='cpu'" in message
    assert isinstance(info.value, RuntimeError)


def test_env_var_decides_when_no_argument(no_gpu, monkeypatch):
    monkeypatch.setenv("GPUNN_BACKEND", "cpu")
    assert get_backend().name == "cpu"
    monkeypatch.setenv("GPUNN_BACKEND", "gpu")
    with pytest.raises(BackendUnavailableError):
        get_backend()
    with pytest.raises(BackendUnavailableError):
        gpunn.Sequential([gpunn.Dense(2)])
    monkeypatch.setenv("GPUNN_BACKEND", "cpu")
    assert get_backend("cpu").name == "cpu"  # the argument wins over the env var


def test_bad_names_raise_naming_the_source(monkeypatch):
    with pytest.raises(
        ValueError, match="argument backend must be one of cpu, gpu, auto, got 'cuda'"
    ):
        get_backend("cuda")
    monkeypatch.setenv("GPUNN_BACKEND", "tpu")
    with pytest.raises(
        ValueError, match="env GPUNN_BACKEND must be one of .* got 'tpu'"
    ):
        get_backend()


def test_real_probe_agrees_with_the_environment():
    cls, reason = backends.gpu_status()
    try:
        import cupy  # noqa: F401
    except ImportError:
        assert cls is None and "not installed" in reason
    else:
        assert (cls is None) == (reason != "CuPy and a CUDA device are usable")


IMPORT_WITHOUT_CUPY = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == 'cupy' or name.startswith('cupy.'):
            raise ImportError('No module named ' + repr(name))
sys.meta_path.insert(0, Block())
import gpunn
assert 'cupy' not in sys.modules, 'import gpunn imported cupy'
model = gpunn.Sequential([gpunn.Dense(3)], input_dim=2, backend='auto', seed=0)
assert model.backend.name == 'cpu'
assert 'cupy' not in sys.modules
print('ok')
"""


def test_import_gpunn_never_imports_cupy_and_auto_works_without_it():
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_WITHOUT_CUPY],
        capture_output=True,
        text=True,
        env={"PATH": "", "GPUNN_BACKEND": ""},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_import_gpunn_does_not_import_cupy_even_when_installed():
    code = "import sys, gpunn; print('cupy' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
