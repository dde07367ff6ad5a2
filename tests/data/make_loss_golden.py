"""Writes loss_golden.json: PyTorch's losses and their gradients in float64 for the
golden-value tests, so CI checks the torch rules without torch (run by hand when a
case is added: python tests/data/make_loss_golden.py).

Each case names a gpunn loss and its options, the outputs and targets given to it,
and torch's loss and gradient with respect to the outputs (autograd)."""

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

SEED, BATCH, CLASSES = 11, 6, 4


def tensor(a, grad=False):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


def cross_entropy(z, y, options):
    weight = options.get("class_weight")
    return F.cross_entropy(
        z / options.get("temperature", 1.0),
        torch.tensor(y) if np.asarray(y).dtype.kind == "i" else tensor(y),
        weight=None if weight is None else tensor(weight),
        label_smoothing=options.get("label_smoothing", 0.0),
    )


def binary_cross_entropy(z, y, options):
    ls = options.get("label_smoothing", 0.0)
    weight = options.get("pos_weight")
    return F.binary_cross_entropy_with_logits(
        z,
        tensor(y) * (1 - ls) + 0.5 * ls,
        pos_weight=None if weight is None else tensor(np.atleast_1d(weight)),
    )


def gaussian_nll(z, y, options):
    k = z.shape[1] // 2
    return F.gaussian_nll_loss(
        z[:, :k], tensor(y), z[:, k:].exp(), full=options.get("full", False)
    )


def mdn(z, y, options):
    n_comp = options["n_components"]
    n, d = z.shape[0], np.asarray(y).shape[1]
    mu = z[:, n_comp : n_comp * (1 + d)].reshape(n, n_comp, d)
    sigma = z[:, n_comp * (1 + d) :].reshape(n, n_comp, d).exp()
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=z[:, :n_comp]),
        torch.distributions.Independent(torch.distributions.Normal(mu, sigma), 1),
    )
    return -mixture.log_prob(tensor(y)).mean()


TORCH = {
    "softmax_cross_entropy": cross_entropy,
    "binary_cross_entropy": binary_cross_entropy,
    "mse": lambda z, y, o: F.mse_loss(z, tensor(y)),
    "mae": lambda z, y, o: F.l1_loss(z, tensor(y)),
    "huber": lambda z, y, o: F.huber_loss(z, tensor(y), delta=o.get("delta", 1.0)),
    "gaussian_nll": gaussian_nll,
    "mdn": mdn,
}


def data(rng):
    """Inputs per target kind, drawn once from one seeded generator."""
    probs = rng.dirichlet(np.ones(CLASSES), BATCH)
    extreme = rng.standard_normal((BATCH, CLASSES)) * 1e4
    labels = rng.integers(0, CLASSES, BATCH)
    return {
        "logits": rng.standard_normal((BATCH, CLASSES)) * 3,
        "extreme": extreme,
        "labels": labels,
        "onehot": np.eye(CLASSES)[labels],
        "probs": probs,
        "binary": rng.integers(0, 2, (BATCH, 3)).astype(np.float64),
        "bin_logits": rng.standard_normal((BATCH, 3)) * 4,
        "values": rng.standard_normal((BATCH, 3)),
        "targets": rng.standard_normal((BATCH, 3)) * 2,
        "nll_outputs": np.hstack(
            [rng.standard_normal((BATCH, 2)), rng.uniform(-3, 3, (BATCH, 2))]
        ),
        "nll_targets": rng.standard_normal((BATCH, 2)),
        "mdn_outputs": np.hstack(
            [
                rng.standard_normal((BATCH, 3)),
                rng.standard_normal((BATCH, 6)),
                rng.uniform(-1, 0.5, (BATCH, 6)),
            ]
        ),
        "mdn_targets": rng.standard_normal((BATCH, 2)),
    }


W4 = [0.5, 2.0, 1.0, 0.25]
CE = "softmax_cross_entropy"
BCE = "binary_cross_entropy"
# (gpunn loss name, options, outputs key, targets key)
CASES = [
    (CE, {}, "logits", "labels"),
    (CE, {"class_weight": W4}, "logits", "labels"),
    (CE, {"label_smoothing": 0.2}, "logits", "labels"),
    (CE, {"class_weight": W4, "label_smoothing": 0.3}, "logits", "labels"),
    (CE, {"temperature": 2.5}, "logits", "labels"),
    (CE, {}, "logits", "probs"),
    (CE, {"class_weight": W4, "label_smoothing": 0.1}, "logits", "probs"),
    (CE, {"class_weight": W4}, "logits", "onehot"),
    (CE, {"label_smoothing": 0.1, "temperature": 0.5}, "logits", "onehot"),
    (CE, {}, "extreme", "labels"),
    (CE, {"class_weight": W4}, "extreme", "probs"),
    (BCE, {}, "bin_logits", "binary"),
    (BCE, {"pos_weight": [3.0, 0.5, 1.0]}, "bin_logits", "binary"),
    (BCE, {"pos_weight": 2.0, "label_smoothing": 0.2}, "bin_logits", "binary"),
    (BCE, {"label_smoothing": 0.1}, "extreme", "onehot"),
    ("mse", {}, "values", "targets"),
    ("mae", {}, "values", "targets"),
    ("huber", {}, "values", "targets"),
    ("huber", {"delta": 0.5}, "values", "targets"),
    ("gaussian_nll", {}, "nll_outputs", "nll_targets"),
    ("gaussian_nll", {"full": True}, "nll_outputs", "nll_targets"),
    ("mdn", {"n_components": 3}, "mdn_outputs", "mdn_targets"),
]


def main():
    arrays = data(np.random.default_rng(SEED))
    cases = []
    for name, options, out_key, target_key in CASES:
        z = tensor(arrays[out_key], grad=True)
        loss = TORCH[name](z, arrays[target_key], options)
        loss.backward()
        cases.append(
            {
                "loss": name,
                "options": options,
                "outputs": out_key,
                "targets": target_key,
                "value": loss.item(),
                "grad": z.grad.numpy().tolist(),
            }
        )
    doc = {
        "torch": torch.__version__,
        "arrays": {k: v.tolist() for k, v in arrays.items()},
        "cases": cases,
    }
    path = Path(__file__).with_name("loss_golden.json")
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {path.name}: {len(cases)} cases (torch {torch.__version__})")


if __name__ == "__main__":
    main()
