"""The model's weights and state: copies in and out, snapshots, ``save``,
configs and export, for :class:`~gpunn.model.Sequential`."""

from __future__ import annotations

from typing import Self

import numpy as np

from gpunn import inputs
from gpunn.arena import ParameterArena
from gpunn.checks import check_path
from gpunn.errors import ArgumentError, ArgumentTypeError, NotBuiltError
from gpunn.persistence import model_io
from gpunn.persistence.config import model_arguments, model_config


class Weights:
    """Parameters and layer state of a built :class:`~gpunn.model.Sequential` (which
    sets every attribute used here), and what saves or rebuilds them."""

    def _require_built(self) -> ParameterArena:
        if not self.built:
            raise NotBuiltError("model is not built: pass input_dim or call fit first")
        return self.arena

    def get_weights(self) -> list[np.ndarray]:
        """Copies of every parameter as NumPy arrays, in layer order (Dense: W, b)."""
        arena = self._require_built()
        return [
            self.backend.to_numpy(arena.view(arena.params, s)).copy()
            for s in arena.slots
        ]

    def set_weights(self, weights) -> None:
        """Sets every parameter from NumPy arrays in :meth:`get_weights` order."""
        arena = self._require_built()
        if isinstance(weights, (str, bytes)) or not hasattr(weights, "__iter__"):
            raise ArgumentTypeError(
                f"weights must be a list of {len(arena.slots)} arrays, got "
                f"{type(weights).__name__}"
            )
        weights = list(weights)
        if len(weights) != len(arena.slots):
            raise ArgumentError(
                f"weights must be a list of {len(arena.slots)} arrays, got {len(weights)}"
            )
        arrays = []
        for slot, w in zip(arena.slots, weights):
            name = f"weights for {slot.key}"
            w = inputs.values(self.backend, w, self.dtype, name)
            if w.shape != slot.shape:
                raise ArgumentError(
                    f"{name} must have shape {slot.shape}, got {w.shape}"
                )
            arrays.append(w)
        for slot, w in zip(arena.slots, arrays):
            arena.view(arena.params, slot)[...] = w
        arena.params_changed()

    def get_state(self) -> dict[str, np.ndarray]:
        """Copies of every layer's non-trainable state (BatchNorm running statistics,
        fitted Standardize/Whiten statistics) as ``{"layer.name": array}``."""
        self._require_built()
        return {
            f"{layer.name}.{key}": value
            for layer in self.layers
            for key, value in layer.get_state().items()
        }

    def set_state(self, state: dict) -> None:
        """Restores what :meth:`get_state` returned (every entry, nothing else)."""
        self._require_built()
        if not isinstance(state, dict):
            raise ArgumentTypeError(
                f"state must be a dict like get_state()'s, got {type(state).__name__}"
            )
        expected = set(self.get_state())
        if set(state) != expected:
            raise ArgumentError(
                f"state must have the entries {sorted(expected)}, got {sorted(state)}"
            )
        previous = self.get_state()
        for layer in self.layers:
            try:
                layer.set_state(_part(state, layer))
            except (ValueError, TypeError) as exc:
                for done in self.layers:  # all or nothing
                    done.set_state(_part(previous, done))
                raise type(exc)(f"state of layer {layer.name}: {exc}") from exc

    def _snapshot(self, with_scaler: bool = True) -> dict:
        """A device copy of the parameters, a host copy of the layer state and (with
        ``with_scaler``) the loss scaler's state: what :meth:`_restore` puts back.
        Weights-only snapshots (EarlyStopping's best epoch) leave the scaler, whose
        state belongs to the run, not to the weights."""
        arena, scaler = self._require_built(), self.loss_scaler
        keep = with_scaler and scaler is not None
        return {
            "params": arena.params.copy(),
            "state": self.get_state(),
            "loss_scaler": scaler.state_dict() if keep else None,
        }

    def _restore(self, snapshot: dict) -> None:
        self.arena.params[...] = snapshot["params"]
        self.arena.params_changed()
        if snapshot.get("loss_scaler") is not None:  # weights-only snapshots lack it
            self.loss_scaler.load_state_dict(snapshot["loss_scaler"])
        self.set_state(snapshot["state"])

    def count_params(self) -> int:
        return self._require_built().num_params

    def save(self, path, include_optimizer: bool = True) -> None:
        """Saves the built model to one safetensors file, atomically: architecture,
        dtype, input width, seed, weights (``"dense_0.kernel"`` shaped ``(n_in,
        units)``, as :meth:`get_weights`), layer state (``"batchnorm_1.running_mean"``,
        as :meth:`get_state`) and, when compiled and ``include_optimizer``, the loss,
        optimizer and metric configs. ``gpunn.load(path)`` rebuilds it bitwise.

        Raises:
            NotBuiltError: the model is not built.
            ValueError: something ``gpunn.load`` could not rebuild (a layer class not
                in :mod:`gpunn.layers`, a loss or an lr given as a plain callable);
                nothing is written.
            OSError: the write failed; an existing file at ``path`` is intact.
        """
        check_path("path", path)
        arena = self._require_built()
        weights = {
            slot.key: self.backend.to_numpy(arena.view(arena.params, slot))
            for slot in arena.slots
        }
        config = self.get_config(include_optimizer)
        model_io.write(path, config, weights, self.get_state())

    def get_config(self, include_optimizer: bool = True) -> dict:
        """The architecture as a JSON-able dict: dtype, input width (None before
        the model is built), seed, layer configs and, when compiled and
        ``include_optimizer``, the loss, optimizer and metric configs (see
        :mod:`gpunn.persistence.config`). Weights are not included."""
        return model_config(self, include_optimizer)

    @classmethod
    def from_config(cls, config: dict, backend=None) -> Self:
        """A new model from :meth:`get_config`'s dict, built when ``input_dim`` is
        set (fresh weights drawn from ``seed``) and compiled when the dict has a
        ``compile`` entry. ``backend`` as for the constructor. ValueError /
        TypeError naming the bad entry (e.g. ``layers[2]``)."""
        args = model_arguments(config)
        model = cls(
            args["layers"],
            input_dim=args["input_dim"],
            dtype=args["dtype"],
            backend=backend,
            seed=args["seed"],
            precision=args["precision"],
        )
        if args["compile"] is not None:
            model.compile(**args["compile"])
        return model

    def export(self, path, dtype=None, opset: int = 17) -> None:
        """Writes the inference graph to an ONNX file, atomically: input ``"input"``
        ``(batch, n_in)`` with a dynamic batch, output ``"output"``, the values
        :meth:`predict` returns. Needs ``pip install "gpunn[onnx]"``.

        Args:
            path: the ``.onnx`` file to write (missing directories are created).
            dtype: ``"float32"``, ``"float64"`` or ``"float16"``; None keeps the
                model's dtype (a mixed-precision model's float32 master weights:
                its ``predict`` computes in 16 bits, so the two agree to 16-bit
                rounding). Default: None.
            opset: ONNX opset, >= 13. Default: 17.

        See :func:`gpunn.export.export_onnx` for what is exported and raised."""
        from gpunn.export import export_onnx  # local: onnx is optional

        export_onnx(self, path, dtype, opset)


def _part(state: dict, layer) -> dict:
    """The entries of a model state that belong to ``layer``, without its prefix."""
    prefix = layer.name + "."
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
