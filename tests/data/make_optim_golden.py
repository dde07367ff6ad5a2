"""Writes optim_golden.json: torch.optim trajectories in float64 for the golden-value
tests (run by hand when a case is added: python tests/data/make_optim_golden.py).

torch runs with float64 as its default dtype, so its host scalars (NAdam's
``mu_product``) are float64 like gpunn's; the other cases do not depend on it."""

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
    ("RMSprop", "RMSprop", {}),
    ("RMSprop", "RMSprop", {"lr": 0.01, "alpha": 0.9, "weight_decay": 0.01}),
    (
        "RMSprop",
        "RMSprop",
        {"lr": 0.005, "centered": True, "momentum": 0.9, "eps": 1e-6},
    ),
    ("RMSprop", "RMSprop", {"lr": 0.01, "centered": True, "maximize": True}),
    ("RMSprop", "RMSprop", {"lr": 0.002, "momentum": 0.5, "weight_decay": 0.1}),
    ("Adagrad", "Adagrad", {}),
    (
        "Adagrad",
        "Adagrad",
        {
            "lr": 0.1,
            "lr_decay": 0.05,
            "initial_accumulator_value": 0.3,
            "weight_decay": 0.01,
        },
    ),
    ("Adagrad", "Adagrad", {"lr": 0.05, "eps": 1e-6, "maximize": True}),
    ("Adadelta", "Adadelta", {}),
    ("Adadelta", "Adadelta", {"lr": 0.5, "rho": 0.5, "eps": 1e-4, "weight_decay": 0.1}),
    ("Adadelta", "Adadelta", {"rho": 0.99, "maximize": True}),
    ("Adamax", "Adamax", {}),
    (
        "Adamax",
        "Adamax",
        {"lr": 0.01, "betas": (0.5, 0.9), "eps": 1e-4, "weight_decay": 0.05},
    ),
    ("Adamax", "Adamax", {"lr": 0.02, "maximize": True}),
    ("NAdam", "NAdam", {}),
    ("NAdam", "NAdam", {"lr": 0.01, "weight_decay": 0.1}),
    (
        "NAdam",
        "NAdam",
        {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True},
    ),
    (
        "NAdam",
        "NAdam",
        {
            "lr": 0.02,
            "betas": (0.5, 0.99),
            "momentum_decay": 0.01,
            "eps": 1e-6,
            "maximize": True,
        },
    ),
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
    torch.set_default_dtype(torch.float64)
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
