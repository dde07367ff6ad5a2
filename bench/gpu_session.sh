#!/usr/bin/env bash
# Everything a GPU session checks and measures, in one go (PERFORMANCE.md, "Measuring
# on the GPU"): run from the repository root on a machine with an NVIDIA GPU, CuPy,
# torch, numpy and pytest; gpunn is used from the checkout (no install needed).
#
#     bash bench/gpu_session.sh OUT_DIR
#
# Writes into OUT_DIR: the GPU's description, `gpunn info` and `gpunn warmup` output,
# the whole test suite with the gpu tests (junit XML + log), and the benchmark
# against PyTorch (JSON + table). Correctness first, timings last.
set -uo pipefail
out="${1:?usage: bash bench/gpu_session.sh OUT_DIR}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export NVIDIA_TF32_OVERRIDE=0 CI=true
python=${PYTHON:-python3}

nvidia-smi > "$out/nvidia-smi.txt" 2>&1
$python -m gpunn info > "$out/info.txt" 2>&1
{ time $python -m gpunn warmup; } > "$out/warmup.txt" 2>&1
$python -m pytest -q -p no:cacheprovider -m gpu --continue-on-collection-errors \
    --junitxml="$out/pytest-gpu.xml" tests > "$out/pytest-gpu.log" 2>&1
tail -5 "$out/pytest-gpu.log"
$python -m pytest -q -p no:cacheprovider -x --continue-on-collection-errors \
    --junitxml="$out/pytest-all.xml" tests > "$out/pytest-all.log" 2>&1
tail -3 "$out/pytest-all.log"
unset NVIDIA_TF32_OVERRIDE
$python bench/gpu_vs_torch.py --out "$out" 2>&1 | tee "$out/gpu_vs_torch.txt" | tail -8
