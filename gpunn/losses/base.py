"""The :class:`Loss` contract with the model, and the checks of host targets and
weights that losses share (run once per dataset, never in the training loop)."""

from __future__ import annotations

import numbers

import numpy as np

from gpunn.errors import ArgumentError, ArgumentTypeError, InvalidInputError, LabelError


class Loss:
    """A named loss: validates targets once per dataset, then runs its fused op.

    Attributes:
        name: the registry name (``losses.get(name)``).
        op: the backend op, called as ``op(outputs, targets, **options)``; it returns
            the loss and its gradient with respect to ``outputs`` in one call.
        task: ``"multiclass"``, ``"binary"`` or ``"regression"``: which metrics apply.
        link: the final activation fused into this loss (``"softmax"``,
            ``"sigmoid"``) or None. When a model's last activation equals ``link``,
            the model gives the loss (and the metrics) the pre-activation outputs.
    """

    name = ""
    op = ""
    task = ""
    link = None

    def __call__(self, backend, outputs, targets, sample_weight=None):
        """Returns ``(loss, doutputs)``: the loss as a 0-d device array and its
        gradient with respect to ``outputs``. ``sample_weight`` (device ``(batch,)``)
        multiplies each sample's loss; the mean still divides by the batch size
        (Keras' ``sum_over_batch_size``)."""
        options = self.op_options(backend, outputs.dtype)
        if sample_weight is not None:
            options["sample_weight"] = sample_weight
        return getattr(backend, self.op)(outputs, targets, **options)

    def op_options(self, backend, dtype) -> dict:
        """The op's keyword arguments that differ from their defaults (so a default
        loss calls ``op(outputs, targets)``); arrays on ``backend`` in ``dtype``."""
        return {}

    def prepare_targets(self, y, n_outputs: int, dtype) -> np.ndarray:
        """Checks host targets ``y`` against the output width and returns them in the
        form the op takes (raises InvalidInputError / LabelError)."""
        raise NotImplementedError

    def point_estimate(self, backend, outputs):
        """The prediction that regression metrics compare with the targets (the
        outputs themselves unless the loss predicts a distribution)."""
        return outputs

    def get_config(self) -> dict:
        """JSON-able ``{"name": ..., **arguments}``; ``losses.get(config)`` rebuilds
        the loss."""
        return {"name": self.name}

    def _device(self, backend, dtype, key: str, host: np.ndarray):
        """``host`` on ``backend`` in ``dtype``, copied once and cached."""
        cache = self.__dict__.setdefault("_device_cache", {})
        slot = (backend.name, np.dtype(dtype).str, key)
        if slot not in cache:
            cache[slot] = backend.asarray(host, dtype=dtype)
        return cache[slot]

    def __repr__(self) -> str:
        config = self.get_config()
        args = ", ".join(f"{k}={v!r}" for k, v in config.items() if k != "name")
        return f"{type(self).__name__}({args})"


def weight_vector(name: str, value, scalar_ok: bool = False):
    """A hyperparameter of per-class / per-output weights: None, or a 1-D sequence
    (a scalar too when ``scalar_ok``) of finite numbers >= 0; returns float64."""
    if value is None:
        return None
    if scalar_ok and isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = [value]
    array = np.asarray(value)
    if (
        array.ndim != 1
        or array.size == 0
        or array.dtype.kind not in "iuf"
        or not np.isfinite(array).all()
        or (array < 0).any()
    ):
        shape = "a number or " if scalar_ok else ""
        raise ArgumentError(
            f"{name} must be {shape}a non-empty 1-D sequence of finite numbers >= 0, "
            f"got {value!r}"
        )
    return array.astype(np.float64)


def check_numeric(name: str, y) -> None:
    """TypeError unless ``y`` holds real numbers."""
    if y.dtype.kind not in "iubf":
        raise ArgumentTypeError(f"{name} must be numeric, got dtype {y.dtype}")


def values_like(loss: str, y, width: int, dtype, what: str = "") -> np.ndarray:
    """Finite targets of shape ``(n, width)`` (1-D accepted when ``width == 1``),
    returned in ``dtype``."""
    if y.ndim == 1 and width == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2 or y.shape[1] != width:
        raise InvalidInputError(
            f"y for {loss} must have shape (n, {width}){what}, got shape {y.shape}"
        )
    check_numeric("y", y)
    if not np.isfinite(y).all():
        raise InvalidInputError(f"y for {loss} contains NaN or infinity")
    return y.astype(dtype)


def integer_labels(
    loss: str, y, n_classes: int, ignore_index: int | None = None
) -> np.ndarray:
    """Class labels ``(n,)`` in ``[0, n_classes)`` or equal to ``ignore_index``
    (integral floats accepted) as int64; LabelError names the first bad value and
    its index."""
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if bad.size:
            i = int(bad[0])
            raise LabelError(
                f"y must hold integer class labels, got {y[i].item()!r} at index {i}"
            )
    elif y.dtype.kind not in "iub":
        raise ArgumentTypeError(
            f"y for {loss} must be integer labels, got dtype {y.dtype}"
        )
    bad = (y < 0) | (y >= n_classes)
    if ignore_index is not None:
        bad &= y != ignore_index
    bad = np.flatnonzero(bad)
    if bad.size:
        i = int(bad[0])
        ignored = "" if ignore_index is None else f" (or ignore_index={ignore_index})"
        raise LabelError(
            f"y must hold labels in [0, {n_classes}){ignored} for a model with "
            f"{n_classes} outputs, got {y[i].item()!r} at index {i}"
        )
    return y.astype(np.int64)


def prepare_sample_weight(sample_weight, n_samples: int, dtype) -> np.ndarray:
    """Checks per-sample weights once per dataset: one finite number >= 0 per sample.

    Args:
        sample_weight: array-like ``(n_samples,)`` (a column ``(n_samples, 1)`` is
            accepted), ints or floats.
        n_samples: the number of samples of ``X``.
        dtype: the model's dtype; the weights are returned as a host array of it.

    Raises: TypeError for non-numeric weights, InvalidInputError naming the shape
    or the first bad value and its index.
    """
    w = np.asarray(sample_weight)
    check_numeric("sample_weight", w)
    if w.ndim == 2 and w.shape[1] == 1:
        w = w[:, 0]
    if w.shape != (n_samples,):
        raise InvalidInputError(
            f"sample_weight must have shape ({n_samples},), one weight per sample, "
            f"got shape {w.shape}"
        )
    bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
    if bad.size:
        i = int(bad[0])
        raise InvalidInputError(
            f"sample_weight must hold finite numbers >= 0, got {w[i].item()!r} at "
            f"index {i}"
        )
    return w.astype(dtype)
