#!/usr/bin/env bash
# One short GPU session, most proof per minute first: run from the repository root on
# a machine with an NVIDIA GPU, CuPy, torch, numpy and pytest (gpunn is used from the
# checkout; nothing is installed).
#
#     bash bench/gpu_session.sh [--dry-run] OUT_DIR
#
# Stages, each under its own time limit, each logged to its own file, each printing
# the tail of its log:
#   1 env       nvidia-smi, versions, gpunn info
#   2 warmup    gpunn warmup: every kernel compiles and loads on this GPU
#   3 parity    CPU-vs-GPU training for every optimizer (float32, float64), fit/evaluate
#   4 headline  gpunn bench: models A and B, batch 4096, fp32 and tf32, against torch
#   5 mixed     gpunn bench: A and B at 4096 in bf16 and fp16 against torch.autocast
#   6 stream    model A at 4096 streamed from a memory-mapped file against in-memory
#               (fp32, and TF32 where the copy is more exposed)
#   7 suite     every gpu-marked test (-n 8 --timeout 120 when xdist/timeout are there)
#   8 grid      gpunn bench: batch 256, 1024 and 16384, fp32 and tf32, against torch
#   9 compile   gpunn bench against torch.compile: A and B at 4096, A at 256, fp32
#  10 ops       the op and step benchmark suites (pytest bench/), short rounds
#  11 sklearn   gpunn.sklearn's MLPClassifier against scikit-learn, 200k x 100
# The whole run stays inside GPU_SESSION_BUDGET seconds (default 500, under the
# device's 10-minute limit with room for the tarball): a stage gets at most what is
# left, and a stage with too little left is recorded as skipped. Everything ends up
# in OUT_DIR/gpu_proof.tgz (summary.txt, one log per stage, the junit XML files
# gpu_tests_<date>.xml and parity_<date>.xml, gpunn bench's JSON, tables and plots in
# headline/, mixed/, grid/ and compile/, the suites' JSON, the streaming and
# scikit-learn JSON),
# written even when the run is interrupted.
#
# --dry-run checks this script on a machine without a GPU (CI does, in
# tests/test_gpu_session.py): the same stages on the CPU with tiny sizes, gpu-marked
# tests skipping, `gpunn warmup` failing as it must without a GPU.
set -uo pipefail

dry=0
if [ "${1:-}" = "--dry-run" ]; then
    dry=1
    shift
fi
out="${1:?usage: bash bench/gpu_session.sh [--dry-run] OUT_DIR}"
work="$out/gpu_proof"
mkdir -p "$work"
budget="${GPU_SESSION_BUDGET:-500}"
deadline=$((SECONDS + budget))
reserve=10 # seconds kept for packing
day=$(date -u +%Y%m%d)
python=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 CI=true
export NVIDIA_TF32_OVERRIDE=0 # correctness stages; the bench sets TF32 itself

pack() {
    tar -czf "$out/gpu_proof.tgz" -C "$out" gpu_proof
    echo "== packed $out/gpu_proof.tgz ($(du -k "$out/gpu_proof.tgz" | cut -f1) KiB)"
}
trap 'pack; exit 130' INT TERM

# stage NAME LIMIT COMMAND...: COMMAND under min(LIMIT, time left), logged to
# work/NAME.log; one line per stage in work/summary.txt.
stage() {
    local name=$1 limit=$2
    shift 2
    local left=$((deadline - SECONDS - reserve))
    if [ "$left" -lt 10 ]; then
        echo "$name: skipped (only ${left}s of the budget left)" | tee -a "$work/summary.txt"
        return
    fi
    [ "$limit" -le "$left" ] || limit=$left
    local start=$SECONDS
    timeout -k 5 "$limit" "$@" >"$work/$name.log" 2>&1
    local status=$?
    local verdict="exit $status"
    [ "$status" -eq 124 ] && verdict="timed out"
    echo "$name: $verdict in $((SECONDS - start))s (limit ${limit}s)" | tee -a "$work/summary.txt"
    tail -n 12 "$work/$name.log" | sed 's/^/    /'
}

has() { "$python" -c "import $1" >/dev/null 2>&1; }

if [ "$dry" -eq 1 ]; then
    device=cpu
    parity_tests="tests/test_gpu_backend.py"
    suite_tests="tests/test_gpu_backend.py tests/test_kernels_subnormals.py"
    bench_ops=(bench/test_ops_bench.py -k "cpu and forward and relu and not leaky")
    small=(--models tiny --steps 2 --precision fp32 --against numpy)
    headline=("${small[@]}" --batch-sizes 16)
    mixed=(--models tiny --steps 2 --precision bf16 --against numpy --batch-sizes 16)
    sklearn=(--max-iter 2 --seeds 1)
    stream=(--batch-size 64 --batches 4 --epochs 2 --rounds 1)
    stream_tf32=()
    grid=("${small[@]}" --batch-sizes 8,32)
    compiled=("${small[@]}" --batch-sizes 16)
else
    device=gpu
    parity_tests="tests/test_kernel_training.py tests/test_gpu_backend.py"
    suite_tests="tests"
    bench_ops=(bench -k "gpu and not 64M")
    headline=(--models A,B --batch-sizes 4096 --precision fp32,tf32 --against torch --steps 20)
    mixed=(--models A,B --batch-sizes 4096 --precision bf16,fp16 --against torch --steps 20)
    sklearn=(--gpu --epochs 2)
    stream=(--rounds 2 --epochs 3)
    stream_tf32=(--rounds 2 --epochs 3 --tf32)
    grid=(--models tiny,A,B --batch-sizes 256,1024,16384 --precision fp32,tf32 --against torch --steps 20)
    compiled=(--models A,B --batch-sizes 256,4096 --precision fp32 --against torch-compile --steps 20)
fi
parallel=()
[ "$dry" -eq 0 ] && has xdist && parallel+=(-n 8)
has pytest_timeout && parallel+=(--timeout 120)
pytest=("$python" -m pytest -q -p no:cacheprovider -m gpu)

{
    echo "gpunn GPU session $(date -u +%Y-%m-%dT%H:%M:%SZ), dry run: $dry"
    echo "commit: ${GPUNN_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
    echo "budget: ${budget}s"
} >"$work/summary.txt"

env_report() {
    nvidia-smi -L
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    "$python" - <<'EOF'
import importlib.metadata as m
for name in ("numpy", "cupy", "cupy-cuda12x", "cupy-cuda13x", "torch", "pytest",
             "pytest-xdist", "pytest-timeout", "pytest-benchmark", "hypothesis"):
    try:
        print(name, m.version(name))
    except m.PackageNotFoundError:
        pass
EOF
    "$python" -m gpunn info
}

export -f env_report
export python
stage env 30 bash -c env_report
stage warmup 90 "$python" -m gpunn warmup
# shellcheck disable=SC2086 # the test paths are words
stage parity 90 "${pytest[@]}" --junitxml="$work/parity_$day.xml" $parity_tests
stage headline 120 "$python" -m gpunn bench --device "$device" "${headline[@]}" --out "$work/headline"
stage mixed 90 "$python" -m gpunn bench --device "$device" "${mixed[@]}" --out "$work/mixed"
stream_both() {
    "$python" bench/streaming_vs_memory.py --device "$device" "${stream[@]}" \
        --out "$work/stream" || return
    [ ${#stream_tf32[@]} -eq 0 ] || "$python" bench/streaming_vs_memory.py \
        --device "$device" "${stream_tf32[@]}" --out "$work/stream"
}
export -f stream_both
export device work
stage stream 90 bash -c "stream=(${stream[*]}); stream_tf32=(${stream_tf32[*]}); stream_both"
# shellcheck disable=SC2086
stage suite 180 "${pytest[@]}" "${parallel[@]}" --junitxml="$work/gpu_tests_$day.xml" $suite_tests
stage grid 150 "$python" -m gpunn bench --device "$device" "${grid[@]}" --out "$work/grid"
stage compile 150 "$python" -m gpunn bench --device "$device" "${compiled[@]}" --out "$work/compile"
stage ops 90 "$python" -m pytest -q -p no:cacheprovider "${bench_ops[@]}" \
    --benchmark-max-time=0.2 --benchmark-min-rounds=3 \
    --benchmark-json="$work/suites_${device}_$day.json"
stage sklearn 150 "$python" bench/sklearn_vs_gpunn.py "${sklearn[@]}" --out "$work/sklearn"

echo "== headline"
cat "$work"/headline/bench_*.txt 2>/dev/null | sed 's/^/    /'
echo "== summary"
cat "$work/summary.txt"
trap - INT TERM
pack
