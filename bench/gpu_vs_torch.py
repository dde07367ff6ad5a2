"""gpunn on the GPU against PyTorch eager (Adam ``fused=True``), same weights and data.

    python bench/gpu_vs_torch.py [--cases A:1024,A:16384,B:4096] [--steps 50]
                                 [--tf32] [--out DIR]

For each ``model:batch`` case: synthetic float32 data already on the device, gpunn's
standard model (ReLU MLP, softmax cross-entropy, Adam lr 1e-3) and a ``torch.nn``
copy with the same initial weights. First the correctness gate: the first step's
losses must agree (rtol 1e-4 with TF32 off, 1e-2 with it) and, after 5 steps on the
same batches, the weights within the multi-step tolerance; a case that fails is
reported and not timed. Then ``--steps`` timed steps per side after warm-up (kernels
compiled before timing), the clock read after a device synchronize: median of 5
repeats. gpunn is timed through ``fit`` on device data (its once-per-fit validation
excluded), with the per-step finite check (the default) and without it. Also the GEMM floor (the step's own GEMMs alone through cuBLAS), achieved
TFLOP/s and peak device memory. The table prints last; the JSON (machine, versions,
settings, every number) goes to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import sys
import time

import numpy as np

MODELS = {
    "tiny": [64, 128, 10],
    "A": [784, 1024, 1024, 10],
    "B": [4096, 4096, 4096, 4096, 4096, 10],
}
REPEATS = 5


def _gpunn_model(sizes, seed=0, check_finite=True):
    import gpunn
    from gpunn.layers import Dense

    layers = [Dense(n, activation="relu") for n in sizes[1:-1]] + [Dense(sizes[-1])]
    model = gpunn.Sequential(layers, input_dim=sizes[0], backend="gpu", seed=seed)
    model.compile("softmax_cross_entropy", gpunn.optim.Adam(1e-3), metrics=[])
    model.check_finite = check_finite
    return model


def _torch_model(model, sizes):
    import torch

    mods = []
    for i in range(len(sizes) - 1):
        mods.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            mods.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*mods).cuda()
    weights = model.get_weights()
    with torch.no_grad():
        for layer, (w, b) in zip(net[::2], zip(weights[::2], weights[1::2])):
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
            layer.bias.copy_(torch.from_numpy(b))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
    return net, opt


def _time(step, sync, steps: int) -> list[float]:
    """Seconds per step of ``steps`` calls, REPEATS times, after two warm-up calls."""
    step(), step()
    sync()
    out = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        out.append((time.perf_counter() - start) / steps)
    return out


def _fit_time(model, X, y, batch: int, sync) -> list[float]:
    """Seconds per step of ``fit`` over the device data, REPEATS times; the clock
    starts at the third batch (after the once-per-fit validation and warm-up)."""
    import gpunn

    class Clock(gpunn.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 2:
                sync()
                self.start = time.perf_counter()

        def on_train_end(self, logs=None):
            sync()
            self.seconds = (time.perf_counter() - self.start) / (steps - 2)

    steps = len(X) // batch
    out = []
    for _ in range(REPEATS):
        clock = Clock()
        model.fit(X, y, batch_size=batch, shuffle=False, verbose=0, callbacks=[clock])
        out.append(clock.seconds)
    return out


def _gemm_floor(sizes, batch, sync) -> float:
    """Seconds for the step's GEMMs alone: forward, dW and dX (not for layer 0)."""
    import cupy

    rng = cupy.random.default_rng(0)
    mats = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        x = rng.standard_normal((batch, n_in), dtype=cupy.float32)
        w = rng.standard_normal((n_in, n_out), dtype=cupy.float32)
        dy = rng.standard_normal((batch, n_out), dtype=cupy.float32)
        mats.append((x, w, dy, i > 0))

    def gemms():
        for x, w, dy, need_dx in mats:
            x @ w
            x.T @ dy
            if need_dx:
                dy @ w.T

    return float(np.median(_time(gemms, sync, 20)))


def run_case(name: str, batch: int, steps: int, tf32: bool) -> dict:
    import cupy
    import torch

    sizes = MODELS[name]
    torch.backends.cuda.matmul.allow_tf32 = tf32
    rng = np.random.default_rng(1)
    n = batch * (steps + 2)
    X = cupy.asarray(rng.standard_normal((batch, sizes[0])).astype(np.float32))
    y = cupy.asarray(rng.integers(0, sizes[-1], batch))
    model = _gpunn_model(sizes)
    model.tf32 = tf32
    net, opt = _torch_model(model, sizes)
    Xt, yt = torch.as_tensor(X, device="cuda"), torch.as_tensor(y, device="cuda")

    def torch_step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(Xt), yt)
        loss.backward()
        opt.step()
        return loss

    gate = _gate(model, torch_step, net, X, y, tf32)
    record = {"model": name, "sizes": sizes, "batch": batch, "tf32": tf32, **gate}
    if not gate["agree"]:
        return record
    sync = cupy.cuda.get_current_stream().synchronize
    pool = cupy.get_default_memory_pool()
    X_all = cupy.asarray(rng.standard_normal((n, sizes[0]), dtype=np.float32))
    y_all = cupy.asarray(rng.integers(0, sizes[-1], n))
    pool.free_all_blocks()
    torch.cuda.reset_peak_memory_stats()
    record["gpunn_s"] = _fit_time(model, X_all, y_all, batch, sync)
    record["gpunn_pool_bytes"] = int(pool.total_bytes())
    fast = _gpunn_model(sizes, check_finite=False)
    fast.tf32 = tf32
    record["gpunn_no_check_s"] = _fit_time(fast, X_all, y_all, batch, sync)
    del X_all, y_all
    record["torch_s"] = _time(torch_step, torch.cuda.synchronize, steps)
    record["torch_peak_bytes"] = int(torch.cuda.max_memory_allocated())
    record["gemm_floor_s"] = _gemm_floor(sizes, batch, sync)
    flops = 6 * batch * sum(a * b for a, b in itertools.pairwise(sizes))
    med = {k: float(np.median(record[k])) for k in ("gpunn_s", "torch_s")}
    record.update(
        flops=flops,
        samples_per_s=batch / med["gpunn_s"],
        torch_samples_per_s=batch / med["torch_s"],
        speedup_vs_torch=med["torch_s"] / med["gpunn_s"],
        pct_gemm_floor=100 * record["gemm_floor_s"] / med["gpunn_s"],
        tflops=flops / med["gpunn_s"] / 1e12,
        n_rows=n,
    )
    return record


def _gate(model, torch_step, net, X, y, tf32: bool) -> dict:
    """First-step losses, then the weights after 5 steps, gpunn vs torch."""
    rtol = 1e-2 if tf32 else 1e-4
    first = model.train_step(X, y)
    first_torch = float(torch_step())
    for _ in range(4):
        model.train_step(X, y)
        torch_step()
    ours = model.get_weights()
    theirs = [
        p.detach().cpu().numpy().T if p.ndim == 2 else p.detach().cpu().numpy()
        for p in net.parameters()
    ]
    err = max(float(np.max(np.abs(a - b))) for a, b in zip(ours, theirs))
    loss_ok = abs(first - first_torch) <= rtol * abs(first_torch)
    return {
        "first_loss": first,
        "first_loss_torch": first_torch,
        "max_weight_diff_5_steps": err,
        "agree": bool(loss_ok and err <= (1e-2 if tf32 else 1e-3)),
    }


def _machine() -> dict:
    import cupy
    import torch

    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"]
    return {
        "gpu": name.decode() if isinstance(name, bytes) else str(name),
        "cupy": cupy.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
        "driver": cupy.cuda.runtime.driverGetVersion(),
        "python": platform.python_version(),
        "NVIDIA_TF32_OVERRIDE": os.environ.get("NVIDIA_TF32_OVERRIDE"),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default="A:1024,A:16384,B:4096")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--tf32", action="store_true")
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args(argv)
    records = []
    for case in args.cases.split(","):
        name, batch = case.split(":")
        records.append(run_case(name, int(batch), args.steps, args.tf32))
        print(json.dumps(records[-1]), flush=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d_%H%M%S")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"gpu_vs_torch_{stamp}.json")
    with open(path, "w") as f:
        json.dump({"machine": _machine(), "steps": args.steps, "cases": records}, f)
    print(
        f"\n{'case':>10} {'gpunn ms':>9} {'torch ms':>9} {'x torch':>8} "
        f"{'%floor':>7} {'TFLOP/s':>8} {'no-check ms':>11}"
    )
    for r in records:
        if not r["agree"]:
            print(f"{r['model']}:{r['batch']:>6} DISAGREES with torch: {r}")
            continue
        print(
            f"{r['model']}:{r['batch']:<8} {1e3 * np.median(r['gpunn_s']):9.3f} "
            f"{1e3 * np.median(r['torch_s']):9.3f} {r['speedup_vs_torch']:8.2f} "
            f"{r['pct_gemm_floor']:7.1f} {r['tflops']:8.2f} "
            f"{1e3 * np.median(r['gpunn_no_check_s']):11.3f}"
        )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
