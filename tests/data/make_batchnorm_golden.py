"""Writes batchnorm_golden.json: torch.nn.BatchNorm1d in float64 over a few training
batches (outputs, input and parameter gradients, running statistics) and one eval
batch, for tests/test_batchnorm.py (run by hand when a case is added:
python tests/data/make_batchnorm_golden.py)."""

import json
from pathlib import Path

import numpy as np
import torch

BATCHES, BATCH, FEATURES, SEED = 3, 6, 4, 11

# gpunn BatchNorm keyword arguments (the torch ones are the same)
CASES = [
    {"momentum": 0.1, "eps": 1e-5, "affine": True},
    {"momentum": None, "eps": 1e-3, "affine": True},
    {"momentum": 0.3, "eps": 1e-5, "affine": False},
]


def run(case, rng):
    bn = torch.nn.BatchNorm1d(FEATURES, dtype=torch.float64, **case)
    gamma, beta = rng.uniform(0.5, 2, FEATURES), rng.standard_normal(FEATURES)
    if case["affine"]:
        with torch.no_grad():
            bn.weight.copy_(torch.from_numpy(gamma))
            bn.bias.copy_(torch.from_numpy(beta))
    out = {"case": case, "gamma": gamma.tolist(), "beta": beta.tolist(), "steps": []}
    for _ in range(BATCHES):
        x = rng.standard_normal((BATCH, FEATURES)) * 2 + 1
        dy = rng.standard_normal((BATCH, FEATURES))
        xt = torch.tensor(x, requires_grad=True)
        bn.zero_grad()
        y = bn.train()(xt)
        y.backward(torch.from_numpy(dy))
        step = {"x": x.tolist(), "dy": dy.tolist(), "y": y.detach().tolist()}
        step["dx"] = xt.grad.tolist()
        if case["affine"]:
            step["dgamma"] = bn.weight.grad.tolist()
            step["dbeta"] = bn.bias.grad.tolist()
        step["running_mean"] = bn.running_mean.tolist()
        step["running_var"] = bn.running_var.tolist()
        out["steps"].append(step)
    x_eval = rng.standard_normal((5, FEATURES))
    out["x_eval"] = x_eval.tolist()
    out["y_eval"] = bn.eval()(torch.from_numpy(x_eval)).detach().tolist()
    return out


def main():
    rng = np.random.default_rng(SEED)
    golden = {"torch": torch.__version__, "cases": [run(c, rng) for c in CASES]}
    path = Path(__file__).with_name("batchnorm_golden.json")
    path.write_text(json.dumps(golden, indent=1) + "\n")


if __name__ == "__main__":
    main()
