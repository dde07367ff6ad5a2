"""The model's data entry and its forward, backward and optimizer step: the part of
:class:`~gpunn.model.Sequential` between a validated batch and an applied update."""

from __future__ import annotations

from gpunn import faults, inputs, mixed_precision
from gpunn.errors import ArgumentError, NotBuiltError
from gpunn.layers.activations import Activation
from gpunn.layers.dense import Dense


class Steps:
    """Validation of inputs, forward/backward and the guarded optimizer step of a
    :class:`~gpunn.model.Sequential` (which sets every attribute used here)."""

    # ----------------------------------------------------------------- data
    def _inputs(self, X, name: str = "X", build: bool = True):
        self.backend.set_tf32(self.tf32)  # CuPy's setting is per process
        if self.built:  # parameters written through layer views since the last call
            self.arena.params_changed()
        width = self.input_dim
        X = inputs.features(self.backend, X, self.dtype, width, name)
        if build and not self.built:
            self.build(X.shape[1])
        return X

    def _dataset(self, X, y, sample_weight=None, names=("X", "y", "sample_weight")):
        """Validates a dataset once and moves it to the device: ``(X, y, w)`` with
        ``w`` None when there are no sample weights. An unbuilt model is built from
        ``X``'s width once all of it passed."""
        self._require_compiled()
        X = self._inputs(X, names[0], build=False)
        n_out = self.output_dim if self.built else self._output_width(X.shape[1])
        y = inputs.targets(
            self.backend, y, self.loss, n_out, len(X), self.dtype, names[1]
        )
        w = inputs.sample_weights(
            self.backend, sample_weight, len(X), self.dtype, names[2]
        )
        inputs.loss_options(self.backend, self.loss, self.dtype)
        if not self.built:
            self.build(X.shape[1])
        return X, y, w

    def _output_width(self, n_in: int) -> int:
        """The width the layers would give inputs of ``n_in`` features."""
        for layer in self.layers:
            n_in = layer.output_dim(n_in)
        return n_in

    def _require_compiled(self) -> None:
        if self.loss is None:
            raise NotBuiltError("call model.compile(loss, optimizer) before training")
        bound = self.optimizer.arena
        if bound is not None and bound is not self.arena:
            raise ArgumentError(optimizer_taken(self.optimizer))

    # ----------------------------------------------------------------- compute
    def forward(self, x, training: bool = False):
        """Runs the layers on a device batch ``x`` (already validated); the output
        is in the model's dtype (float32 under mixed precision)."""
        self.arena.sync_compute()
        for layer in self.layers:
            x = layer.forward(x, training)
        return x if x.dtype == self.dtype else x.astype(self.dtype)

    def backward(self, doutputs) -> None:
        """Backpropagates ``doutputs``, writing every gradient into the arena."""
        self._backward_through(self.layers, doutputs)

    @staticmethod
    def _backward_through(layers, doutputs) -> None:
        for layer in reversed(layers):
            if doutputs is None:
                return  # no layer below has parameters: none needs a gradient
            doutputs = layer.backward(doutputs)

    def _fused_head(self):
        """The final activation that the loss takes over, or None.

        When the last layer (or the last Dense's activation) is the loss's ``link``
        (softmax for cross-entropy, sigmoid for binary cross-entropy), training and
        evaluation skip it and hand the loss the logits: the stable fused path.
        ``predict`` still applies it.
        """
        link = getattr(self.loss, "link", None)
        if link is None:
            return None
        last = self.layers[-1]
        head = last.activation if isinstance(last, Dense) else last
        if isinstance(head, Activation) and head.activation == link:
            return head
        return None

    def _loss_inputs(self, x, training: bool):
        """Runs the layers up to what the loss takes: the logits when fused."""
        head = self._fused_head()
        if head is None:
            return self.forward(x, training)
        self.arena.sync_compute()
        *body, last = self.layers
        for layer in body:
            x = layer.forward(x, training)
        if last is not head:
            x = last.forward(x, training, activate=False)
        if x.dtype != self.dtype:  # mixed precision: the loss runs in float32
            x = x.astype(self.dtype)
        temperature = getattr(head, "temperature", 1.0)
        return x if temperature == 1 else x * (1 / temperature)

    def _backward_from_loss(self, doutputs) -> None:
        head = self._fused_head()
        if head is None:
            self.backward(doutputs)
            return
        temperature = getattr(head, "temperature", 1.0)
        if temperature != 1:
            doutputs = doutputs * (1 / temperature)
        *body, last = self.layers
        if last is not head:
            doutputs = last.backward(doutputs, activate=False)
        self._backward_through(body, doutputs)

    def _penalty(self):
        """The layers' regularization losses summed (0-d device array), or None."""
        total = None
        for layer in self.layers:
            penalty = layer.penalty()
            if penalty is not None:
                total = penalty if total is None else total + penalty
        return total

    def _loss(self, x, y, sample_weight=None, training: bool = False):
        """``(loss, loss inputs)`` on a device batch, penalties included."""
        try:
            outputs = self._loss_inputs(x, training)
            loss, _ = self.loss(self.backend, outputs, y, sample_weight)
            penalty = self._penalty()
        except self.backend.out_of_memory_errors as exc:
            raise faults.out_of_memory(self, exc, len(x), "evaluation") from exc
        return (loss if penalty is None else loss + penalty), outputs

    def _gradients(self, x, y, sample_weight=None):
        """Forward and backward on a device batch, writing every gradient into the
        arena; returns (loss with penalties, loss inputs). A device out-of-memory
        error becomes :class:`~gpunn.faults.DeviceMemoryError`."""
        for layer in self.layers:  # until the step commits or discards it
            layer.stage_state = True
        try:
            with mixed_precision.overflow_expected(self):
                outputs = self._loss_inputs(x, training=True)
                loss, doutputs = self.loss(self.backend, outputs, y, sample_weight)
                penalty = self._penalty()
                self._backward_from_loss(mixed_precision.scaled(self, doutputs))
        except self.backend.out_of_memory_errors as exc:
            self._discard_layer_state()
            raise faults.out_of_memory(self, exc, len(x), "training") from exc
        except BaseException:  # Ctrl-C too: no staged layer state survives
            self._discard_layer_state()
            raise
        return (loss if penalty is None else loss + penalty), outputs

    def _train_batch(self, x, y, sample_weight=None, check=None):
        """One update on a device batch; returns (loss before the update, outputs).
        ``check``: a :class:`~gpunn.faults.StepCheck` run before the update (fit and
        train_step pass one; lr_find none, its loss diverges on purpose)."""
        loss, outputs = self._gradients(x, y, sample_weight)
        self._apply_step(loss, check, len(x))
        return loss, outputs

    def _apply_step(self, loss, check=None, batch_size: int = 0, batches: int = 1):
        """The optimizer update, once ``check(loss, batches)`` (if given) passed:
        it raises NonFiniteError or returns False (the update skipped). The layer
        state the step's forwards staged (BatchNorm's running statistics...) is
        committed with the update, in one piece a Ctrl-C does not split
        (:func:`gpunn.faults.uninterrupted`), and discarded when the step is refused
        or fails. With a loss scaler the gradients are unscaled first; with a
        dynamic one the check always runs (an overflowing step is skipped and the
        scale backs off, see :mod:`gpunn.mixed_precision`)."""
        scaler = self.loss_scaler
        try:
            if scaler is not None:
                mixed_precision.unscale_(self)
                if check is None and scaler.dynamic:
                    check = faults.StepCheck(self)
            if check is not None and not check(loss, batches):
                self._discard_layer_state()
                return
            with faults.uninterrupted():
                self.optimizer.step()
                if scaler is not None:
                    scaler.update(found_inf=False)
                for layer in self.layers:
                    layer.commit_state()
                    layer.stage_state = False
                self._steps_applied += 1
        except self.backend.out_of_memory_errors as exc:
            self._discard_layer_state()
            raise faults.out_of_memory(self, exc, batch_size, "training") from exc
        except BaseException:
            self._discard_layer_state()
            raise

    def _discard_layer_state(self) -> None:
        """Drops what training forwards staged since the last applied step."""
        for layer in self.layers:
            layer.discard_state()
            layer.stage_state = False


def optimizer_taken(optimizer) -> str:
    return (
        f"this {type(optimizer).__name__} already belongs to another model; create "
        "one optimizer per model (model.compile(loss, NewOptimizer(...)))"
    )
