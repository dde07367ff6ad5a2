"""Learning-rate schedules: closed forms at chosen steps against independent float64
references, torch.optim.lr_scheduler golden sequences, composition, configs, errors."""

import json
import math

import numpy as np
import pytest

import gpunn
from gpunn import schedules
from gpunn.layers import Dense
from gpunn.schedules import (
    Constant,
    CosineDecay,
    ExponentialDecay,
    PolynomialDecay,
    StepDecay,
    Warmup,
    scale_lr,
)

# lr of updates 0, 1, ... from torch.optim.lr_scheduler (torch 2.13, float64), the
# scheduler stepped after every optimizer step; test_schedules_torch.py recomputes them.
# fmt: off
TORCH_GOLDEN = [
    ({"name": "step", "lr": 0.1, "step_size": 3, "gamma": 0.5},  # StepLR
     [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.0125]),
    ({"name": "exponential", "lr": 0.1, "decay": 0.25},  # ExponentialLR(gamma=0.75)
     [0.1, 0.07500000000000001, 0.05625000000000001, 0.0421875, 0.031640625000000006,
      0.023730468750000004, 0.0177978515625, 0.013348388671875001, 0.01001129150390625,
      0.007508468627929688]),
    ({"name": "polynomial", "lr": 0.1, "total_steps": 6, "power": 2.0},  # PolynomialLR
     [0.1, 0.06944444444444446, 0.04444444444444447, 0.02500000000000001,
      0.011111111111111117, 0.0027777777777777775, 0.0, 0.0, 0.0, 0.0]),
    ({"name": "cosine", "lr": 0.1, "total_steps": 8, "min_lr": 0.001},  # CosineAnnealingLR
     [0.1, 0.0962320368593087, 0.0855017856687341, 0.06944282990207196, 0.0505,
      0.03155717009792806, 0.0154982143312659, 0.004767963140691306, 0.001]),
    # SequentialLR([LinearLR(start_factor=0.25, total_iters=4), CosineAnnealingLR(T_max=6,
    # eta_min=0.02)], milestones=[4]) on lr=0.2
    ({"name": "warmup", "warmup_steps": 4, "start_lr": 0.05,
      "after": {"name": "cosine", "lr": 0.2, "total_steps": 6, "min_lr": 0.02}},
     [0.05, 0.08750000000000001, 0.12500000000000003, 0.16250000000000003, 0.2,
      0.1879422863405995, 0.15500000000000003, 0.11000000000000003, 0.06500000000000003,
      0.03205771365940052]),
]
# fmt: on
GOLDEN_IDS = [config["name"] for config, _ in TORCH_GOLDEN]

ALL = [
    Constant(0.3),
    ExponentialDecay(0.1, 0.01),
    StepDecay(0.1, 3, gamma=0.5),
    PolynomialDecay(0.1, 20, end_lr=0.001, power=0.5),
    CosineDecay(0.1, 20, min_lr=1e-4),
    Warmup(CosineDecay(0.1, 20), 5, start_lr=0.01),
    Warmup(Warmup(StepDecay(0.2, 4), 3), 2, start_lr=0.001),
    Warmup(0.05, 4),
]


def values(schedule, steps):
    return [schedule(k) for k in steps]


@pytest.mark.parametrize("config, expected", TORCH_GOLDEN, ids=GOLDEN_IDS)
def test_matches_torch_golden(config, expected):
    schedule = schedules.from_config(config)
    got = values(schedule, range(len(expected)))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


def test_closed_forms_at_chosen_steps():
    lr = 0.1
    exponential = ExponentialDecay(lr, 0.2)
    expected = lr
    for k in range(40):  # lr <- (1 - decay) * lr, one update at a time
        assert exponential(k) == pytest.approx(expected, rel=1e-13)
        expected *= 0.8
    step = StepDecay(lr, 3, gamma=0.5)
    assert values(step, [0, 2, 3, 5, 6, 100]) == pytest.approx(
        [0.1, 0.1, 0.05, 0.05, 0.025, 0.1 * 0.5**33], rel=1e-13
    )
    poly = PolynomialDecay(lr, 10, end_lr=0.01, power=2.0)
    assert values(poly, [0, 5, 10, 11, 10**9]) == pytest.approx(
        [0.1, 0.09 * 0.25 + 0.01, 0.01, 0.01, 0.01], rel=1e-13
    )
    assert PolynomialDecay(0.1, 4)(1) == pytest.approx(0.075, rel=1e-13)  # linear
    assert PolynomialDecay(0.1, 4, end_lr=0.5)(2) == pytest.approx(0.3, rel=1e-13)
    cosine = CosineDecay(lr, 10, min_lr=0.02)
    assert values(cosine, [0, 5, 10, 11, 10**9]) == pytest.approx(
        [0.1, 0.06, 0.02, 0.02, 0.02], rel=1e-13
    )
    third = 0.02 + 0.08 * (1 + math.cos(math.pi / 3)) / 2  # step 10/3 of 10
    assert CosineDecay(lr, 30, min_lr=0.02)(10) == pytest.approx(third, rel=1e-13)
    assert values(Constant(0.3), [0, 7, 10**12]) == [0.3, 0.3, 0.3]


def test_warmup_then_cosine_composes():
    after = CosineDecay(0.4, 10, min_lr=0.04)
    schedule = Warmup(after, 4, start_lr=0.0)
    assert values(schedule, range(4)) == pytest.approx([0.0, 0.1, 0.2, 0.3], abs=1e-15)
    for k in range(15):  # the cosine starts at its own step 0 when the warmup ends
        assert schedule(4 + k) == after(k)
    assert schedule(4) == 0.4 and schedule(14) == pytest.approx(0.04, rel=1e-13)


def test_warmup_variants():
    assert values(Warmup(0.2, 2, start_lr=0.1), [0, 1, 2, 50]) == pytest.approx(
        [0.1, 0.15, 0.2, 0.2], rel=1e-13
    )
    step = StepDecay(0.1, 2)
    assert values(Warmup(step, 0), range(6)) == values(step, range(6))
    custom = Warmup(lambda k: 1.0 / (k + 1), 2)  # any callable step -> lr
    assert values(custom, [0, 1, 2, 3]) == pytest.approx([0.0, 0.5, 1.0, 0.5])
    config = json.loads(json.dumps(custom.get_config()))  # JSON-able, but a repr
    assert config["after"].startswith("<function")
    with pytest.raises(TypeError, match="cannot rebuild 'warmup'.*plain callable"):
        schedules.from_config(config)


def test_values_are_python_floats_in_float64():
    schedule = CosineDecay(np.float32(0.1), np.int64(7), min_lr=np.float32(0.0))
    for step in (0, np.int64(3), np.int32(9)):
        assert type(schedule(step)) is float
    assert schedule.lr == float(np.float32(0.1))  # kept exactly, no float32 math
    tiny = ExponentialDecay(1.0, 1e-9)(10**6)
    assert tiny == pytest.approx(math.exp(10**6 * math.log1p(-1e-9)), rel=1e-9)
    assert tiny != 1.0  # float32 would round 1 - 1e-9 to 1
    assert type(scale_lr(np.float32(0.1), np.int64(512))) is float


@pytest.mark.parametrize("schedule", ALL, ids=repr)
@pytest.mark.parametrize("step", [-1, 1.5, 2.0, True, "3", None, np.float64(2)])
def test_step_must_be_a_non_negative_int(schedule, step):
    with pytest.raises(ValueError, match="step must be an int >= 0"):
        schedule(step)


@pytest.mark.parametrize(
    "make, arg",
    [
        (lambda: Constant(0.0), "lr"),
        (lambda: Constant(-1), "lr"),
        (lambda: Constant(float("nan")), "lr"),
        (lambda: ExponentialDecay(0.1, 1.0), "decay"),
        (lambda: ExponentialDecay(0.1, -0.1), "decay"),
        (lambda: StepDecay(0.1, 0), "step_size"),
        (lambda: StepDecay(0.1, 2.5), "step_size"),
        (lambda: StepDecay(0.1, 2, gamma=0.0), "gamma"),
        (lambda: StepDecay(0.1, 2, gamma=1.5), "gamma"),
        (lambda: PolynomialDecay(0.1, 0), "total_steps"),
        (lambda: PolynomialDecay(0.1, 5, end_lr=-0.1), "end_lr"),
        (lambda: PolynomialDecay(0.1, 5, power=0.0), "power"),
        (lambda: PolynomialDecay(float("inf"), 5), "lr"),
        (lambda: CosineDecay(0.1, -3), "total_steps"),
        (lambda: CosineDecay(0.1, 3, min_lr=0.2), "min_lr"),
        (lambda: CosineDecay(0.1, 3, min_lr=-0.1), "min_lr"),
        (lambda: Warmup(0.1, -1), "warmup_steps"),
        (lambda: Warmup(0.1, 3, start_lr=-1.0), "start_lr"),
        (lambda: Warmup(-0.1, 3), "lr"),
        (lambda: scale_lr(0.0, 32), "lr"),
        (lambda: scale_lr(0.1, 0), "batch_size"),
        (lambda: scale_lr(0.1, 32, reference=0), "reference"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(make, arg):
    with pytest.raises(ValueError, match=rf"^{arg} must be"):
        make()


def test_wrong_types_raise_type_error():
    with pytest.raises(TypeError, match="lr must be a real number"):
        Constant("0.1")
    with pytest.raises(TypeError, match="after must be a schedule"):
        Warmup("cosine", 10)


@pytest.mark.parametrize("schedule", ALL, ids=repr)
def test_config_round_trip_through_json(schedule):
    config = json.loads(json.dumps(schedule.get_config()))
    rebuilt = schedules.from_config(config)
    assert type(rebuilt) is type(schedule)
    assert rebuilt.get_config() == schedule.get_config()
    steps = [0, 1, 2, 3, 4, 5, 7, 10, 19, 20, 21, 1000]
    assert values(rebuilt, steps) == values(schedule, steps)
    assert repr(rebuilt) == repr(schedule)


def test_nested_config_holds_the_inner_schedule():
    config = Warmup(StepDecay(0.1, 5), 3).get_config()
    assert config == {
        "name": "warmup",
        "after": {"name": "step", "lr": 0.1, "step_size": 5, "gamma": 0.1},
        "warmup_steps": 3,
        "start_lr": 0.0,
    }
    assert Warmup(0.1, 2).get_config()["after"] == {"name": "constant", "lr": 0.1}


def test_get_by_name():
    cosine = schedules.get("Cosine", lr=0.1, total_steps=10, min_lr=0.01)
    assert isinstance(cosine, CosineDecay) and cosine(10) == pytest.approx(0.01)
    assert isinstance(schedules.get("constant", lr=0.1), Constant)
    assert isinstance(schedules.get("exponential", lr=0.1, decay=0.1), ExponentialDecay)
    assert isinstance(schedules.get("step", lr=0.1, step_size=2), StepDecay)
    assert isinstance(schedules.get("polynomial", lr=1, total_steps=3), PolynomialDecay)
    assert schedules.get(cosine) is cosine
    with pytest.raises(ValueError, match=r"schedule must be one of .*'cosine'"):
        schedules.get("linear", lr=0.1)
    with pytest.raises(ValueError, match=r"unknown \['T_max'\] and missing"):
        schedules.get("cosine", lr=0.1, T_max=10)
    with pytest.raises(ValueError, match=r"missing \['total_steps'\]"):
        schedules.get("cosine", lr=0.1)


@pytest.mark.parametrize("config", [None, [], {"lr": 0.1}, "cosine"])
def test_from_config_refuses_non_configs(config):
    with pytest.raises(ValueError, match="config must be a dict with a 'name'"):
        schedules.from_config(config)


def test_scale_lr_is_the_linear_scaling_rule():
    assert scale_lr(0.1, 256) == pytest.approx(0.1)
    assert scale_lr(0.1, 1024) == pytest.approx(0.4)
    assert scale_lr(0.2, 32, reference=64) == pytest.approx(0.1)


def test_an_optimizer_uses_schedule_k_for_update_k():
    """SGD driven by a schedule == SGD whose lr is set by hand to schedule(k) before
    update k (0-based), bitwise; the optimizer reports the schedule's config."""
    schedule = Warmup(CosineDecay(0.2, 6, min_lr=0.02), 3, start_lr=0.01)
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
    models = []
    for lr in (schedule, 1.0):
        model = gpunn.Sequential(
            [Dense(4, activation="tanh"), Dense(2)],
            input_dim=3,
            dtype="float64",
            backend="cpu",
            seed=0,
        )
        model.compile("mse", gpunn.optim.SGD(lr=lr, momentum=0.9))
        models.append(model)
    scheduled, by_hand = models
    for k in range(12):
        assert scheduled.optimizer.lr == schedule(k)
        by_hand.optimizer.lr = schedule(k)
        scheduled.train_step(X, Y)
        by_hand.train_step(X, Y)
    for a, b in zip(scheduled.get_weights(), by_hand.get_weights()):
        np.testing.assert_array_equal(a, b)
    config = json.loads(json.dumps(scheduled.optimizer.hyperparameters()))["lr"]
    assert schedules.from_config(config).get_config() == schedule.get_config()
