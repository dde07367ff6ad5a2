"""Losses against PyTorch (float64 reference), live: CrossEntropyLoss with weight,
label smoothing and probability targets, BCEWithLogitsLoss with pos_weight,
GaussianNLLLoss, MSE/L1/Huber and a torch.distributions mixture, each with per-sample
weights (torch's ``reduction="none"`` terms, weighted and summed), in float64 and
float32. Skipped without torch; tests/test_losses.py checks the committed golden
values in CI."""

import numpy as np
import pytest
from conftest import REDUCTION_TOL, assert_close

from gpunn import losses

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch
F = torch.nn.functional
N = 9


def t64(a):
    return torch.tensor(np.asarray(a), dtype=torch.float64)


def torch_ce(options):
    def terms(z, y):
        weight, ignore = options.get("class_weight"), options.get("ignore_index")
        target = torch.tensor(y) if y.ndim == 1 else t64(y)
        none = F.cross_entropy(
            z / options.get("temperature", 1.0),
            target,
            weight=None if weight is None else t64(weight),
            label_smoothing=options.get("label_smoothing", 0.0),
            reduction="none",
            ignore_index=-100 if ignore is None else ignore,
        )
        if y.ndim != 1:
            return none, len(y)
        kept = y[y != ignore]  # torch's mean divides by the kept rows' weights
        return none, float(np.asarray(weight)[kept].sum()) if weight else len(kept)

    return terms


def torch_bce(options):
    def terms(z, y):
        ls, p = options.get("label_smoothing", 0.0), options.get("pos_weight")
        none = F.binary_cross_entropy_with_logits(
            z,
            t64(y) * (1 - ls) + 0.5 * ls,
            pos_weight=None if p is None else t64(np.atleast_1d(p)),
            reduction="none",
        )
        return none.mean(1), len(y)

    return terms


def torch_elementwise(fn, **kwargs):
    def terms(z, y):
        return fn(z, t64(y), reduction="none", **kwargs).mean(1), len(y)

    return terms


def torch_gaussian(z, y):
    k = y.shape[1]
    none = F.gaussian_nll_loss(z[:, :k], t64(y), z[:, k:].exp(), reduction="none")
    return none.mean(1), len(y)


def torch_mdn(z, y):
    n, k, d = len(y), 3, y.shape[1]
    normal = torch.distributions.Normal(
        z[:, k : k * (1 + d)].reshape(n, k, d),
        z[:, k * (1 + d) :].reshape(n, k, d).exp(),
    )
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=z[:, :k]),
        torch.distributions.Independent(normal, 1),
    )
    return -mixture.log_prob(t64(y)), n


def ce_case(options, rows):
    def targets(rng):
        if rows:
            return rng.dirichlet(np.ones(5) * 0.5, N)
        y = rng.integers(0, 5, N)
        if options.get("ignore_index") is not None:
            y[[2, 5]] = options["ignore_index"]
        return y

    return (
        losses.SoftmaxCrossEntropy(**options),
        torch_ce(options),
        lambda rng: rng.standard_normal((N, 5)) * 4,
        targets,
    )


W = [0.3, 1.0, 2.0, 0.7, 1.2]
CASES = {
    "ce-weight-smooth": ce_case({"class_weight": W, "label_smoothing": 0.15}, False),
    "ce-temperature": ce_case({"temperature": 3.0, "label_smoothing": 0.05}, False),
    "ce-rows-weight-smooth": ce_case({"class_weight": W, "label_smoothing": 0.2}, True),
    "ce-ignore-weight-smooth": ce_case(
        {"class_weight": W, "label_smoothing": 0.15, "ignore_index": -100}, False
    ),
    "ce-ignore-in-range-smooth-temperature": ce_case(
        {"ignore_index": 1, "label_smoothing": 0.1, "temperature": 2.0}, False
    ),
    "bce-pos-weight": (
        losses.BinaryCrossEntropy([2.0, 0.5, 1.0, 4.0], 0.1),
        torch_bce({"pos_weight": [2.0, 0.5, 1.0, 4.0], "label_smoothing": 0.1}),
        lambda rng: rng.standard_normal((N, 4)) * 5,
        lambda rng: rng.random((N, 4)).round(),
    ),
    "mse": (
        losses.MeanSquaredError(),
        torch_elementwise(F.mse_loss),
        lambda rng: rng.standard_normal((N, 3)),
        lambda rng: rng.standard_normal((N, 3)),
    ),
    "huber": (
        losses.Huber(0.7),
        torch_elementwise(F.huber_loss, delta=0.7),
        lambda rng: rng.standard_normal((N, 3)) * 2,
        lambda rng: rng.standard_normal((N, 3)),
    ),
    "mae": (
        losses.MeanAbsoluteError(),
        torch_elementwise(F.l1_loss),
        lambda rng: rng.standard_normal((N, 3)),
        lambda rng: rng.standard_normal((N, 3)),
    ),
    "gaussian_nll": (
        losses.GaussianNLL(),
        torch_gaussian,
        lambda rng: np.hstack(
            [rng.standard_normal((N, 3)), rng.uniform(-5, 5, (N, 3))]
        ),
        lambda rng: rng.standard_normal((N, 3)),
    ),
    "mdn": (
        losses.mdn(3),
        torch_mdn,
        lambda rng: np.hstack(
            [rng.standard_normal((N, 9)) * 2, rng.uniform(-1.5, 1, (N, 6))]
        ),
        lambda rng: rng.standard_normal((N, 2)) * 2,
    ),
}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("case", sorted(CASES))
def test_loss_and_gradient_match_torch(backend, dtype, case, seed):
    loss, torch_terms, make_z, make_y = CASES[case]
    rng = np.random.default_rng(seed)
    z, y = make_z(rng).astype(dtype).astype(np.float64), make_y(rng)
    s = rng.uniform(0, 2, N).astype(dtype) if seed else None  # seed 0: unweighted
    zt = t64(z).requires_grad_(True)
    terms, divisor = torch_terms(zt, y)
    weights = torch.ones(N, dtype=torch.float64) if s is None else t64(s)
    expected = (terms * weights).sum() / divisor
    expected.backward()
    t = backend.asarray(loss.prepare_targets(y, z.shape[1], dtype))
    sw = None if s is None else backend.asarray(s)
    value, grad = loss(backend, backend.asarray(z.astype(dtype)), t, sw)
    assert value.dtype == dtype and grad.dtype == dtype
    assert_close(float(value), expected.item(), dtype, REDUCTION_TOL)
    assert_close(backend.to_numpy(grad), zt.grad.numpy(), dtype, REDUCTION_TOL)


@pytest.mark.parametrize("weight", [None, W], ids=["unweighted", "class_weight"])
def test_all_ignored_batch_is_zero_where_torch_gives_nan(backend, weight):
    z, y = np.random.default_rng(0).standard_normal((4, 5)), np.full(4, -100)
    w = None if weight is None else t64(weight)
    assert torch.isnan(F.cross_entropy(t64(z), torch.tensor(y), weight=w))
    loss = losses.SoftmaxCrossEntropy(0.1, weight, ignore_index=-100)
    t = backend.asarray(loss.prepare_targets(y, 5, np.float64))
    value, grad = loss(backend, backend.asarray(z), t)
    assert float(value) == 0 and not backend.to_numpy(grad).any()
