"""Packaging: kernels and data ship inside the package, no pickle path, the version is
one number, and every kernel compiles with nvcc (when nvcc is on PATH, as in CI)."""

import importlib.resources
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import gpunn

ROOT = Path(__file__).resolve().parents[1]
KERNEL_SOURCES = sorted(p.name for p in (ROOT / "kernels").glob("*.cu"))


def shipped_kernels():
    files = importlib.resources.files("gpunn.kernels")
    return {
        f.name: f.read_text()
        for f in files.iterdir()
        if f.name.endswith((".cu", ".cuh"))
    }


def test_every_kernel_is_readable_through_importlib_resources():
    shipped = shipped_kernels()
    assert KERNEL_SOURCES and set(KERNEL_SOURCES) <= set(shipped)
    assert "common.cuh" in shipped
    for name, text in shipped.items():
        assert "grid-stride" in text or "GPUNN_GRID_STRIDE" in text, name


def test_every_subpackage_is_listed_for_the_wheel():
    """setuptools ships only the packages pyproject.toml lists: a new subpackage that
    is missing there imports from a checkout but not from an installed wheel."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in (ROOT / "gpunn").rglob("__init__.py")
    }
    assert found | {"gpunn.kernels"} == listed


def test_data_ships_with_its_licence():
    files = importlib.resources.files("gpunn.datasets")
    assert files.joinpath("digits.npz").is_file()
    assert "CC BY 4.0" in files.joinpath("LICENSE-DATA.md").read_text()


def test_version_is_the_pyproject_version():
    text = (ROOT / "pyproject.toml").read_text()  # tomllib needs Python 3.11
    assert f'\nversion = "{gpunn.__version__}"\n' in text


def test_no_pickle_path_in_the_package():
    pattern = re.compile(
        r"import pickle|allow_pickle\s*=\s*True|torch\.load\(|"
        r"np\.load\((?![^)]*allow_pickle=False)"
    )
    hits = [
        f"{p.relative_to(ROOT)}:{i}"
        for folder in ("gpunn", "bench")
        for p in (ROOT / folder).rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert hits == []


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")
@pytest.mark.parametrize("arch", ["compute_80", "compute_90"])
@pytest.mark.parametrize("source", KERNEL_SOURCES)
def test_kernel_compiles_with_nvcc(source, arch, tmp_path):
    out = subprocess.run(
        [
            "nvcc",
            "-std=c++17",
            "--ptx",
            f"-arch={arch}",
            "-I",
            str(ROOT / "kernels"),
            "-o",
            str(tmp_path / "out.ptx"),
            str(ROOT / "kernels" / source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert ".entry" in (tmp_path / "out.ptx").read_text()
