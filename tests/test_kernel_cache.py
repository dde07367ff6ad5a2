"""How gpunn compiles its kernels for CuPy, without a GPU: a stand-in ``cupy`` records
what reaches NVRTC and what is loaded.

CuPy's ``RawModule`` appends ``-ftz=true`` (float32 subnormals flushed), so gpunn calls
``compile_using_nvrtc`` with its own options and keeps the binaries in its own cache;
tests/test_kernel_sources.py shows with a real NVRTC what ``-ftz`` does to the code.
"""

import json
import logging
import sys
import types

import pytest

from gpunn.backends import kernel_cache, kernels

SOURCE = kernels.read_source("dropout.cu")


class StandInCupy:
    """The parts of CuPy that gpunn's compile path touches, recording calls."""

    def __init__(self, with_compiler: bool = True):
        self.compiled, self.loaded, self.raw_modules = [], [], []
        cupy = types.ModuleType("cupy")
        cupy.__version__ = "14.2.0"
        device = types.SimpleNamespace(compute_capability="90")
        compiler = types.SimpleNamespace()
        if with_compiler:
            compiler.compile_using_nvrtc = self.compile_using_nvrtc
        cupy.cuda = types.SimpleNamespace(
            Device=lambda: device,
            compiler=compiler,
            function=types.SimpleNamespace(Module=self.module),
        )
        cupy.RawModule = self.raw_module
        core = types.ModuleType("cupy._core.core")
        core.assemble_cupy_compiler_options = lambda options: options + ("-Icupy",)
        self.modules = {
            "cupy": cupy,
            "cupy.cuda": cupy.cuda,
            "cupy._core": types.ModuleType("cupy._core"),
            "cupy._core.core": core,
        }
        if not with_compiler:
            del self.modules["cupy._core.core"]

    def compile_using_nvrtc(self, text, options, name_expressions, cache_in_memory):
        self.compiled.append(options)
        assert cache_in_memory
        return b"CUBIN", {name: f"_Z{i}" for i, name in enumerate(name_expressions)}

    def module(self):
        loaded = self.loaded

        class Module:
            def load(self, binary):
                loaded.append(binary)

            def get_function(self, mangled):
                return f"function {mangled}"

        return Module()

    def raw_module(self, code, options, name_expressions):
        self.raw_modules.append(options)
        return types.SimpleNamespace(get_function=lambda name: f"raw {name}")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(kernel_cache.ENV_VAR, str(tmp_path / "kernels"))
    return tmp_path / "kernels"


def _use(monkeypatch, stand_in):
    for name, module in stand_in.modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.delitem(sys.modules, "cupy_backends", raising=False)
    return stand_in


def test_nvrtc_gets_gpunns_options_exactly_and_no_ftz_true(monkeypatch, cache):
    cupy = _use(monkeypatch, StandInCupy())
    module = kernels.cupy_compiler(SOURCE, half=False)
    (options,) = cupy.compiled
    assert "-ftz=false" in options and "--fmad=false" in options
    assert "-ftz=true" not in options
    assert options[: len(kernels.NVRTC_OPTIONS)] == kernels.NVRTC_OPTIONS
    assert cupy.loaded == [b"CUBIN"] and cupy.raw_modules == []
    first = SOURCE.exports[0]
    assert module.get_function(first) == "function _Z0"


def test_a_second_process_loads_the_cached_binary(monkeypatch, cache):
    kernels_first = _use(monkeypatch, StandInCupy())
    kernels.cupy_compiler(SOURCE, half=False)
    later = _use(monkeypatch, StandInCupy())
    module = kernels.cupy_compiler(SOURCE, half=False)
    assert len(kernels_first.compiled) == 1 and later.compiled == []
    assert later.loaded == [b"CUBIN"]
    assert module.get_function(SOURCE.exports[-1]).startswith("function _Z")
    assert len(list(cache.glob("*.bin"))) == len(list(cache.glob("*.json"))) == 1


def test_other_options_or_sources_are_other_entries(monkeypatch, cache):
    cupy = _use(monkeypatch, StandInCupy())
    kernels.cupy_compiler(SOURCE, half=False)
    kernels.cupy_compiler(kernels.read_source("batchnorm.cu"), half=False)
    kernels.cupy_compiler(SOURCE, half=True)
    assert len(cupy.compiled) == 3 and "-DGPUNN_HALF" in cupy.compiled[2]
    assert len(list(cache.glob("*.bin"))) == 3


@pytest.mark.parametrize("damage", ["binary", "names", "json"])
def test_a_damaged_entry_is_compiled_again(monkeypatch, cache, damage):
    _use(monkeypatch, StandInCupy())
    kernels.cupy_compiler(SOURCE, half=False)
    (binary,) = cache.glob("*.bin")
    meta = binary.with_suffix(".json")
    if damage == "binary":
        binary.write_bytes(b"CUBIM")
    elif damage == "names":
        meta.write_text(json.dumps({**json.loads(meta.read_text()), "names": [1]}))
    else:
        meta.write_text("{not json")
    later = _use(monkeypatch, StandInCupy())
    kernels.cupy_compiler(SOURCE, half=False)
    assert len(later.compiled) == 1 and later.loaded == [b"CUBIN"]
    assert binary.read_bytes() == b"CUBIN"


def test_an_unwritable_cache_still_compiles(monkeypatch, tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(kernel_cache.ENV_VAR, str(blocker / "kernels"))
    cupy = _use(monkeypatch, StandInCupy())
    with caplog.at_level(logging.INFO, logger="gpunn"):
        module = kernels.cupy_compiler(SOURCE, half=False)
    assert cupy.loaded == [b"CUBIN"] and module.get_function(SOURCE.exports[0])
    assert "not written" in caplog.text


def test_a_cupy_without_the_compiler_api_falls_back_and_says_so(monkeypatch, caplog):
    kernel_cache._warn_flushing_fallback.cache_clear()
    cupy = _use(monkeypatch, StandInCupy(with_compiler=False))
    with caplog.at_level(logging.WARNING, logger="gpunn"):
        module = kernels.cupy_compiler(SOURCE, half=False)
        kernels.cupy_compiler(SOURCE, half=True)
    assert cupy.raw_modules[0] == kernels.NVRTC_OPTIONS
    assert module.get_function("x") == "raw x"
    assert caplog.text.count("float32 subnormals flush") == 1


def test_the_cache_lives_beside_cupys_unless_told(monkeypatch, tmp_path):
    monkeypatch.delenv(kernel_cache.ENV_VAR, raising=False)
    monkeypatch.setenv("CUPY_CACHE_DIR", str(tmp_path))
    assert kernel_cache.cache_dir() == str(tmp_path / "gpunn")
    monkeypatch.setenv(kernel_cache.ENV_VAR, str(tmp_path / "mine"))
    assert kernel_cache.cache_dir() == str(tmp_path / "mine")
