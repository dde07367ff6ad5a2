#!/usr/bin/env bash
# Everything a GPU session checks and measures, in one go (PERFORMANCE.md, "Measuring
# on the GPU"): run from the repository root on a machine with an NVIDIA GPU, CuPy,
# torch, numpy and pytest; gpunn is used from the checkout (no install needed).
#
#     bash bench/gpu_session.sh OUT_DIR [BUDGET_SECONDS]
#
# Correctness first, timings last, each stage under its own time limit so that a
# slow stage cannot eat the next one's (BUDGET_SECONDS, default 540, is split
# between them). Writes into OUT_DIR: the GPU's description, `gpunn info` and
# `gpunn warmup` output, the gpu-marked tests (junit XML + log), `gpunn bench` on
# the GPU (JSON, table, plot when matplotlib is there) and the op benchmarks.
set -uo pipefail
out="${1:?usage: bash bench/gpu_session.sh OUT_DIR [BUDGET_SECONDS]}"
budget="${2:-540}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 CI=true
export NVIDIA_TF32_OVERRIDE=0
python=${PYTHON:-python3}
stage() { # stage SECONDS NAME COMMAND...: run COMMAND under a limit, log to OUT/NAME.log
    local limit=$1 name=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" > "$out/$name.log" 2>&1
    echo "== $name: exit $? in $((SECONDS - start)) s (limit $limit s)"
    tail -4 "$out/$name.log"
}

nvidia-smi > "$out/nvidia-smi.txt" 2>&1
stage $((budget / 12)) info $python -m gpunn info
stage $((budget / 6)) warmup $python -m gpunn warmup
stage $((budget / 3)) pytest-gpu $python -m pytest -q -p no:cacheprovider -m gpu \
    --continue-on-collection-errors --junitxml="$out/pytest-gpu.xml" tests
unset NVIDIA_TF32_OVERRIDE # the bench sets TF32 per precision itself
stage $((budget / 4)) bench $python -m gpunn bench --device gpu --models A,B \
    --batch-sizes 1024,4096,16384 --precision fp32,tf32 --against torch \
    --steps 20 --out "$out"
stage $((budget / 12)) bench-ops $python -m pytest -q -p no:cacheprovider bench \
    -k "gpu and not 64M" --benchmark-json="$out/bench-ops.json"
cat "$out"/bench_gpu_*.txt 2>/dev/null | tail -40
