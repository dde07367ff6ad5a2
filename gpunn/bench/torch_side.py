"""PyTorch as a benchmark side: eager with fused or foreach Adam, or the whole step
under ``torch.compile`` (see :mod:`gpunn.bench.contenders`)."""

from __future__ import annotations

import os

from gpunn.backends import threads
from gpunn.bench.models import LR, PRECISIONS
from gpunn.bench.side import Side


class Torch(Side):
    """``torch.nn`` Linear/ReLU layers with the same weights, ``cross_entropy``,
    ``torch.optim.Adam`` (``fused=True`` or ``foreach=True``), in eager mode or the
    whole step (forward, backward, optimizer) under ``torch.compile``. Mixed
    precision as PyTorch users write it: the forward and the loss under
    ``torch.autocast`` (bfloat16 or float16), float32 parameters, and for float16
    ``torch.amp.GradScaler`` with its defaults (the fused Adam takes the scaler's
    found-inf flag on the device)."""

    threads = "torch"  # torch's own OpenMP pool

    def __init__(self, case, weights, batches, variant: str):
        import torch

        self.torch = torch
        self.device = "cuda" if case.device == "gpu" else "cpu"
        if self.device == "cpu":  # the budget NumPy's BLAS gets (gpunn.bench.runner)
            torch.set_num_threads(threads.budget())
        if self.device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = PRECISIONS[case.precision].tf32
        self.key = f"torch-{variant}"
        self.label = {
            "fused": "torch eager, Adam fused",
            "foreach": "torch eager, Adam foreach",
            "compile": "torch.compile, Adam",
        }[variant]
        self.net = self._net(weights)
        options = {"fused": True} if variant == "fused" else {"foreach": True}
        opt = torch.optim.Adam(self.net.parameters(), lr=LR, **options)
        step = _torch_step(
            torch, self.net, opt, PRECISIONS[case.precision], self.device
        )
        if variant == "compile":
            torch._dynamo.reset()  # a fresh cache: one compile per case, no limit hit
            _cold_inductor(torch)
            step = torch.compile(step, dynamic=False)
        self._step = step
        super().__init__(case, [self._tensors(x, y) for x, y in batches])

    def _net(self, weights):
        nn, layers = self.torch.nn, []
        for i, (w, b) in enumerate(weights):
            linear = nn.Linear(*w.shape, device=self.device)
            with self.torch.no_grad():
                linear.weight.copy_(self.torch.from_numpy(w.T.copy()))
                linear.bias.copy_(self.torch.from_numpy(b.copy()))
            layers += [linear] if i == len(weights) - 1 else [linear, nn.ReLU()]
        return nn.Sequential(*layers)

    def _tensors(self, x, y):
        """The shared batch as tensors: zero-copy views of the NumPy or CuPy arrays."""
        return tuple(self.torch.as_tensor(a, device=self.device) for a in (x, y))

    def sync(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()


def _cold_inductor(torch) -> None:
    """Turns off inductor's on-disk caches, so the compile time is a first compile's
    and not a cache hit from an earlier run (``TORCHINDUCTOR_FORCE_DISABLE_CACHES=0``
    in the environment keeps them)."""
    if os.environ.get("TORCHINDUCTOR_FORCE_DISABLE_CACHES") != "0":
        from torch._inductor import config

        config.force_disable_caches = True


def _torch_step(torch, net, opt, precision, device: str):
    functional = torch.nn.functional
    if precision.half is None:

        def step(x, y):
            opt.zero_grad(set_to_none=True)
            loss = functional.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
            return loss.detach()

        return step
    dtype = getattr(torch, precision.half)
    scaler = torch.amp.GradScaler(device, enabled=precision.scaled)

    def mixed_step(x, y):
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=dtype):
            loss = functional.cross_entropy(net(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss.detach()

    return mixed_step
