"""Writes optim_golden.json: torch.optim trajectories in float64 for the golden-value
tests (run by hand when a case is added: python tests/data/make_optim_golden.py)."""

import json
from pathlib import Path

import numpy as np
import torch

STEPS, SIZE, SEED = 6, 37, 7

# (gpunn class name, torch class name, kwargs)
CASES = [
    ("SGD", "SGD", {"lr": 0.1}),
    ("SGD", "SGD", {"lr": 0.05, "momentum": 0.9}),
    (
        "SGD",
        "SGD",
        {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01},
    ),
    (
        "SGD",
        "SGD",
        {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.1},
    ),
    ("SGD", "SGD", {"lr": 0.05, "momentum": 0.5, "maximize": True}),
    ("Adam", "Adam", {}),
    (
        "Adam",
        "Adam",
        {"lr": 0.01, "betas": (0.3, 0.9), "eps": 1e-6, "weight_decay": 0.1},
    ),
    ("Adam", "Adam", {"lr": 0.01, "amsgrad": True, "weight_decay": 0.01}),
    ("Adam", "Adam", {"lr": 0.02, "maximize": True}),
    ("AdamW", "AdamW", {}),
    ("AdamW", "AdamW", {"lr": 0.05, "betas": (0.5, 0.99), "weight_decay": 0.3}),
    ("AdamW", "AdamW", {"lr": 0.01, "amsgrad": True}),
]


def trajectory(torch_name, kwargs, p0, grads):
    p = torch.tensor(p0, dtype=torch.float64, requires_grad=True)
    opt = getattr(torch.optim, torch_name)([p], **kwargs)
    out = []
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        out.append(p.detach().numpy().tolist())
    return out


def main():
    rng = np.random.default_rng(SEED)
    p0 = rng.standard_normal(SIZE)
    grads = rng.standard_normal((STEPS, SIZE)) * np.linspace(0.01, 3, SIZE)
    grads[:, 0] = 0.0  # a parameter that never gets a gradient
    cases = [
        {
            "optimizer": name,
            "kwargs": kwargs,
            "params": trajectory(torch_name, kwargs, p0, grads),
        }
        for name, torch_name, kwargs in CASES
    ]
    doc = {
        "torch": torch.__version__,
        "p0": p0.tolist(),
        "grads": grads.tolist(),
        "cases": cases,
    }
    path = Path(__file__).with_name("optim_golden.json")
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(
        f"wrote {path.name}: {len(cases)} cases x {STEPS} steps (torch {torch.__version__})"
    )


if __name__ == "__main__":
    main()
