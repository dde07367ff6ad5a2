"""Writes activations_golden.json: PyTorch's outputs and gradients in float64 for the
activation layers, so CI checks the torch conventions (kinks, extremes) without torch.
Run by hand when a case is added: python tests/data/make_activations_golden.py."""

import json
from pathlib import Path

import numpy as np
import torch

SEED = 11
# kinks, the extremes the README lists, and ordinary values
FIXED = [
    -1e4,
    -88,
    -30,
    -5,
    -2.5,
    -1,
    -0.3,
    -1e-3,
    0,
    1e-3,
    0.3,
    1,
    2.5,
    5,
    30,
    88,
    1e4,
]
SHAPE = (5, 7)

# (gpunn layer, its kwargs, slopes set before the call: PReLU only)
CASES = [
    ("LeakyReLU", {}, None),
    ("LeakyReLU", {"negative_slope": 0.2}, None),
    ("LeakyReLU", {"negative_slope": 0.0}, None),
    ("ELU", {}, None),
    ("ELU", {"alpha": 0.5}, None),
    ("SiLU", {}, None),
    ("GELU", {}, None),
    ("GELU", {"approximate": "tanh"}, None),
    ("Softmax", {}, None),
    ("Softmax", {"temperature": 0.5}, None),
    ("Softmax", {"temperature": 3.0}, None),
    ("PReLU", {}, [0.25]),
    ("PReLU", {"init": -0.1}, [-0.1]),
    ("PReLU", {"per_unit": True}, [0.25, -0.5, 0.0, 1.0, 0.1, 2.0, -1.5]),
    ("Swish", {"beta": 1.7, "trainable": True}, None),
    ("Swish", {"beta": 0.6}, None),
]


def inputs():
    rng = np.random.default_rng(SEED)
    x = np.concatenate([FIXED, rng.standard_normal(np.prod(SHAPE) - len(FIXED)) * 3])
    return x.reshape(SHAPE), rng.standard_normal(SHAPE)


def torch_fn(layer, kwargs, weight):
    """The torch function for a case and its parameter (None when it has none)."""
    if layer == "PReLU":
        module = torch.nn.PReLU(len(weight), dtype=torch.float64)
        with torch.no_grad():
            module.weight.copy_(torch.tensor(weight, dtype=torch.float64))
        return module, module.weight
    if layer == "Swish":
        beta = torch.tensor([kwargs["beta"]], dtype=torch.float64, requires_grad=True)
        return (lambda x: x * torch.sigmoid(beta * x)), beta
    if layer == "Softmax":
        temperature = kwargs.get("temperature", 1.0)
        return (lambda x: torch.softmax(x / temperature, dim=1)), None
    return getattr(torch.nn, layer)(**kwargs), None


def compute() -> dict:
    x, dy = inputs()
    cases = []
    for layer, kwargs, weight in CASES:
        fn, param = torch_fn(layer, kwargs, weight)
        xt = torch.tensor(x, requires_grad=True)
        y = fn(xt)
        y.backward(torch.tensor(dy))
        case = {"layer": layer, "kwargs": kwargs, "weight": weight}
        case["y"] = y.detach().numpy().tolist()
        case["dx"] = xt.grad.numpy().tolist()
        case["dparam"] = None if param is None else param.grad.numpy().tolist()
        cases.append(case)
    return {
        "torch": torch.__version__,
        "x": x.tolist(),
        "dy": dy.tolist(),
        "cases": cases,
    }


def main():
    path = Path(__file__).with_name("activations_golden.json")
    path.write_text(json.dumps(compute(), indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
