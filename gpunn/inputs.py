"""Checks and moves user data to a backend, once per dataset, at the API boundary.

Dtype rule: features of any real dtype (bool, ints, float16/32/64, and bfloat16 from
``ml_dtypes`` or through DLPack) are cast to the model's dtype; object, string and
complex arrays raise TypeError. Every value is checked *after* that cast: a feature,
regression target, sample weight or loss weight that is finite in float64 but
overflows float32 is refused before any step.

Other libraries' tensors (PyTorch, JAX, CuPy: anything with ``__dlpack__``) are read
through DLPack by the backend, zero-copy on the device they live on; a tensor on
another device is moved once (:meth:`~gpunn.backends.NumpyBackend.from_dlpack`).
NumPy arrays given to a GPU model are copied to the device once; a GPU array without
DLPack given to a CPU model raises TypeError saying how to fix it. Tensors that
require grad and sparse matrices raise TypeError naming the fix (``.detach()``,
``.toarray()`` / ``.to_dense()``). The caller's arrays are never modified.
"""

from __future__ import annotations

import numpy as np

from gpunn.backends.dlpack import widen_bfloat16
from gpunn.errors import ArgumentTypeError, InvalidInputError


def host_array(x, name: str) -> np.ndarray:
    """``np.asarray(x)``, with NumPy's error on a ragged nested list (or an object
    it cannot read) raised as InvalidInputError naming ``name``."""
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(
            f"{name} must be an array of numbers (rows of equal length), got a "
            f"{type(x).__name__} NumPy cannot read as one: {exc}"
        ) from None


def host_or_device(x, name: str, backend):
    """``x`` as a NumPy array or an array of ``backend`` (bfloat16 widened)."""
    refuse_unusable(x, name)
    if isinstance(x, np.ndarray):
        return widened(x)
    if hasattr(x, "__dlpack__"):  # PyTorch, JAX, CuPy...: zero-copy where it is
        return widened(backend.from_dlpack(x, name))  # host arrays: NumPy
    if hasattr(x, "__cuda_array_interface__"):  # the backend moves it or refuses
        return x
    return widened(host_array(x, name))


def refuse_unusable(x, name: str) -> None:
    """ArgumentTypeError naming the type and the fix for a sparse matrix
    (scipy.sparse, torch sparse) or a tensor that requires grad."""
    kind = type(x).__name__
    sparse = type(x).__module__.startswith("scipy.sparse") or "sparse" in str(
        getattr(x, "layout", "")
    )
    if sparse:
        fix = ".toarray()" if hasattr(x, "toarray") else ".to_dense()"
        raise ArgumentTypeError(
            f"{name} is a sparse {kind}; gpunn takes dense arrays: pass "
            f"{name}{fix} (the dense matrix must fit in memory)"
        )
    if getattr(x, "requires_grad", False) is True:
        raise ArgumentTypeError(
            f"{name} is a {kind} that requires grad; gpunn does not track gradients "
            f"of its inputs: pass {name}.detach()"
        )


def widened(x):
    """A NumPy array of ``ml_dtypes``' bfloat16 as float32 values (exact); any other
    array as it is (the backends widen what they import through DLPack)."""
    if isinstance(x, np.ndarray) and x.dtype.kind == "V" and x.dtype.name == "bfloat16":
        return widen_bfloat16(np, x.view(np.uint16))
    return x


def _check_kind(name: str, x) -> None:
    if x.dtype.kind not in "biuf" and x.dtype.name != "bfloat16":  # widened
        raise ArgumentTypeError(
            f"{name} must hold real numbers (bool, int or float), got dtype {x.dtype}"
        )


def features(backend, X, dtype, n_features: int | None, name: str = "X"):
    """Validates a feature matrix and returns it on ``backend`` in ``dtype``.

    Raises InvalidInputError for a non-2-D array, 0 samples, 0 features, a width other
    than ``n_features``, NaN or infinity (also after the cast); TypeError for
    non-numeric dtypes or an array on the wrong device.
    """
    X = host_or_device(X, name, backend)
    check_features_layout(X, n_features, name)
    with np.errstate(over="ignore"):  # an overflowing cast is reported just below
        out = backend.asarray(X, dtype=dtype)
    check_finite(backend, out, name)
    return out


def check_features_layout(X, n_features: int | None, name: str = "X") -> None:
    """The checks of :func:`features` that need only ``X``'s dtype and shape (a
    memory-mapped file is checked so before any row is read)."""
    _check_kind(name, X)
    shape = tuple(X.shape)
    if len(shape) != 2:
        raise InvalidInputError(
            f"{name} must be 2-D with shape (n_samples, n_features), got shape {shape}"
        )
    if shape[0] == 0 or shape[1] == 0:
        raise InvalidInputError(
            f"{name} must have at least 1 sample and 1 feature, got shape {shape}"
        )
    if n_features is not None and shape[1] != n_features:
        raise InvalidInputError(
            f"{name} has {shape[1]} features per sample, but the model expects "
            f"{n_features} (shape (n, {n_features})), got shape {shape}"
        )


def check_count(y, n_samples: int, name: str = "y") -> None:
    """InvalidInputError unless ``y`` has one entry per sample of X."""
    if y.ndim == 0 or len(y) != n_samples:
        got = "a scalar" if y.ndim == 0 else f"{len(y)} samples"
        raise InvalidInputError(
            f"{name} must have one entry per sample of X ({n_samples}), got {got} "
            f"(shape {y.shape})"
        )


def values(backend, x, dtype, name: str):
    """Validates any real array (no shape rule) and returns it on ``backend``."""
    x = host_or_device(x, name, backend)
    _check_kind(name, x)
    with np.errstate(over="ignore"):
        out = backend.asarray(x, dtype=dtype)
    check_finite(backend, out, name)
    return out


def check_finite(backend, x, name: str) -> None:
    """Raises InvalidInputError when ``x`` (any backend) holds NaN or infinity."""
    if backend.all_finite(x):
        return
    if bool(backend.xp.isnan(x).any()):
        raise InvalidInputError(f"Input {name} contains NaN.")
    raise InvalidInputError(
        f"Input {name} contains infinity or a value too large for {x.dtype}."
    )


def targets(backend, y, loss, n_outputs: int, n_samples: int, dtype, name: str = "y"):
    """Validates targets against the loss and the number of samples; returns them on
    ``backend`` in the loss's form (int64 labels or ``dtype`` values)."""
    y = host_or_device(y, name, backend)
    if hasattr(y, "__cuda_array_interface__"):
        y = backend.to_numpy(backend.asarray(y))
    _check_kind(name, y)
    check_count(y, n_samples, name)
    try:
        with np.errstate(over="ignore"):  # an overflowing cast is reported below
            prepared = loss.prepare_targets(y, n_outputs, dtype)
    except (InvalidInputError, TypeError) as error:
        message = str(error)
        if name == "y" or not message.startswith("y "):
            raise
        # the losses name their targets ``y``; name the argument the caller passed
        raise type(error)(f"{name} {message[2:]}") from None
    out = backend.asarray(prepared)
    if out.dtype.kind == "f":  # values or probabilities, in the model's dtype
        check_finite(backend, out, name)
    return out


def loss_options(backend, loss, dtype) -> None:
    """Raises InvalidInputError when a weight or scalar option of ``loss``
    (``class_weight``, ``pos_weight``, a Huber ``delta``...), finite as given, is
    not finite in the model's ``dtype``."""
    with np.errstate(over="ignore"):
        options = loss.op_options(backend, dtype)
    for key, value in options.items():
        if isinstance(value, (bool, int, np.integer)) or value is None:
            continue
        if isinstance(value, (float, np.floating)):
            finite = bool(np.isfinite(np.asarray(value, dtype)))
        elif getattr(value, "dtype", None) is not None and value.dtype.kind == "f":
            finite = backend.all_finite(value)
        else:
            continue
        if not finite:
            got = _first_overflow(getattr(loss, key, None), dtype)
            raise InvalidInputError(
                f"{key} of the loss ({type(loss).__name__}) holds a value too large "
                f"for the model's dtype {np.dtype(dtype).name} (largest "
                f"{np.finfo(dtype).max:.4g}){got}"
            )


def _first_overflow(given, dtype) -> str:
    """``": got V at index I"`` for the first value of ``given`` (host numbers) that
    the cast to ``dtype`` makes infinite, or ``""`` when ``given`` is unknown."""
    if given is None:
        return ""
    host = np.asarray(given, np.float64).ravel()
    with np.errstate(over="ignore"):
        bad = np.flatnonzero(~np.isfinite(host.astype(dtype)))
    if not bad.size:
        return ""
    i = int(bad[0])
    return f": got {host[i].item()!r}" + (f" at index {i}" if host.size > 1 else "")


def sample_weights(backend, w, n_samples: int, dtype, name: str = "sample_weight"):
    """Validates per-sample loss weights: shape ``(n_samples,)``, finite, >= 0.
    Returns them on ``backend`` in ``dtype`` (None stays None)."""
    if w is None:
        return None
    w = host_or_device(w, name, backend)
    if hasattr(w, "__cuda_array_interface__"):
        w = backend.to_numpy(backend.asarray(w))
    _check_kind(name, w)
    if w.shape != (n_samples,):
        raise InvalidInputError(
            f"{name} must have shape ({n_samples},), one weight per sample, "
            f"got shape {w.shape}"
        )
    with np.errstate(over="ignore"):  # checked in the model's dtype, after the cast
        cast = w.astype(dtype)
    bad = ~np.isfinite(cast) | (cast < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        too_large = np.isfinite(w[i]) and w[i] >= 0
        why = f" (too large for {np.dtype(dtype).name})" if too_large else ""
        raise InvalidInputError(
            f"{name} must be finite and >= 0 in the model's dtype, got "
            f"{w[i].item()!r}{why} at index {i}"
        )
    return backend.asarray(cast)
