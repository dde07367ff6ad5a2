"""gpunn.optim.LossScaler follows torch.amp.GradScaler's state machine: the same
scales, growth trackers and skipped steps for the same sequence of finite and
overflowing gradients (against torch when it is installed, against the rules
written out otherwise); its state round-trips and is validated."""

import json

import numpy as np
import pytest

from gpunn.errors import NonFiniteError
from gpunn.optim import loss_scaler
from gpunn.optim.loss_scaler import LossScaler, StaticLossScaler
from gpunn.precision import get as policy

# overflow pattern: runs of good steps between overflows, and a long good run
SCRIPT = [False] * 3 + [True] + [False] * 5 + [True, True] + [False] * 9 + [True]
SCRIPT += [False] * 4


def _ours(found, **kwargs):
    scaler = LossScaler(**kwargs)
    trace = []
    for inf in found:
        scaler.update(inf)
        trace.append((scaler.scale, scaler._growth_tracker))
    return scaler, trace


def test_against_torch_grad_scaler():
    torch = pytest.importorskip("torch")
    kwargs = {"init_scale": 2.0**10, "growth_factor": 3.0, "backoff_factor": 0.25}
    kwargs["growth_interval"] = 4
    param = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.SGD([param], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", **kwargs)
    theirs = []
    for inf in SCRIPT:
        scaler.scale(param.sum())  # GradScaler's scale tensor is made lazily
        param.grad = torch.tensor([1.0, float("inf") if inf else 2.0, 3.0])
        scaler.step(opt)
        scaler.update()
        theirs.append((scaler.get_scale(), scaler._get_growth_tracker()))
    ours, trace = _ours(SCRIPT, **kwargs)
    assert trace == theirs
    assert ours.skipped_steps == sum(SCRIPT)
    state = scaler.state_dict()
    mine = ours.state_dict()
    for key in ("scale", "growth_factor", "backoff_factor", "growth_interval"):
        assert mine[key] == state[key], key
    assert mine["_growth_tracker"] == state["_growth_tracker"]


def test_the_rules_written_out():
    scaler, trace = _ours([False] * 3 + [True, False], growth_interval=3)
    assert trace == [
        (2.0**16, 1),
        (2.0**16, 2),
        (2.0**17, 0),
        (2.0**16, 0),
        (2.0**16, 1),
    ]
    assert scaler.skipped_steps == 1 and scaler.get_scale() == 2.0**16


def test_the_scale_never_grows_to_infinity():
    scaler = LossScaler(init_scale=2.0**127, growth_interval=1)
    scaler.update(False)
    assert scaler.scale == 2.0**127 and scaler._growth_tracker == 0


def test_a_scale_below_two_to_minus_24_is_a_non_finite_model():
    scaler = LossScaler(init_scale=2.0**-23)
    scaler.update(True)
    assert scaler.scale == 2.0**-24
    before = scaler.state_dict()
    with pytest.raises(NonFiniteError, match="below 2\\*\\*-24"):
        scaler.update(True)
    assert scaler.state_dict() == before


def test_the_inverse_scale_is_float32_like_torch():
    scaler = LossScaler(init_scale=3.0)
    assert scaler.inv_scale() == float(np.float32(1 / 3))


def test_state_round_trips_through_json_and_is_validated():
    scaler, _ = _ours(SCRIPT, growth_interval=5)
    state = json.loads(json.dumps(scaler.state_dict()))
    other = LossScaler()
    other.load_state_dict(state)
    assert other.state_dict() == scaler.state_dict()
    bad = [
        {**state, "scale": -1.0},
        {**state, "scale": float("inf")},
        {**state, "_growth_tracker": 5},
        {**state, "skipped_steps": -1},
        {**state, "growth_factor": 1.0},
        {k: v for k, v in state.items() if k != "scale"},
        {**state, "extra": 1},
        [1, 2],
    ]
    for entry in bad:
        with pytest.raises((ValueError, TypeError)):
            other.load_state_dict(entry)
        assert other.state_dict() == scaler.state_dict()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"init_scale": 0}, "init_scale"),
        ({"init_scale": 1e39}, "init_scale must be finite"),
        ({"growth_factor": 0.5}, "growth_factor"),
        ({"backoff_factor": 1.0}, "backoff_factor"),
        ({"growth_interval": 0}, "growth_interval"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LossScaler(**kwargs)


def test_compile_argument_resolution():
    fp16, bf16 = policy("mixed_float16", "float32"), policy("mixed_bfloat16", "float32")
    assert isinstance(loss_scaler.get("auto", fp16), LossScaler)
    assert loss_scaler.get("auto", bf16) is None
    assert loss_scaler.get(None, fp16) is None
    static = loss_scaler.get(128, bf16)
    assert isinstance(static, StaticLossScaler) and static.scale == 128
    static.update(False)
    assert static.scale == 128
    with pytest.raises(NonFiniteError, match="static loss scale 128"):
        static.update(True)
    with pytest.raises(ValueError, match="loss_scale must be"):
        loss_scaler.get("static", fp16)
