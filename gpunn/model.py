"""``Sequential``: a stack of layers over one parameter arena, one backend, one dtype and
one seeded random generator."""

from __future__ import annotations

import numpy as np

from gpunn import data, faults, guards, inputs, losses, mixed_precision, optim, training
from gpunn import metrics as metrics_lib
from gpunn import precision as precisions
from gpunn.arena import ParameterArena
from gpunn.backends import get_backend
from gpunn.checks import check_bool, check_callable, check_int, check_path
from gpunn.data import adapt as data_adapt
from gpunn.errors import ArgumentError, ArgumentTypeError, NotBuiltError
from gpunn.layers.activations import Activation
from gpunn.layers.base import Layer
from gpunn.layers.dense import Dense
from gpunn.lr_find import lr_find as range_test
from gpunn.optim import loss_scaler as loss_scalers
from gpunn.persistence import model_io
from gpunn.persistence.config import model_arguments, model_config
from gpunn.summary import describe

DTYPES = ("float32", "float64")
DEFAULT_METRICS = ("accuracy",)


class Sequential:
    """A feed-forward stack of layers, trained as one.

    Args:
        layers: the layers, input to output. More can be added with :meth:`add`
            before the model is built.
        input_dim: number of input features; when None the model is built on the
            first call to ``fit``/``train_step``/``predict`` from the data's width.
        dtype: ``"float32"`` or ``"float64"``: parameters, activations and gradients.
            Default: ``"float32"``.
        backend: ``"cpu"``, ``"gpu"``, ``"auto"`` or None (env ``GPUNN_BACKEND``, else
            ``"auto"``). See :func:`gpunn.backends.get_backend`.
        seed: seed of the model's ``numpy.random.Generator``, the only source of
            randomness (initial weights, shuffling). None draws one from the OS and
            records it in ``model.seed``.
        tf32: let float32 matmuls on the GPU use TF32 tensor cores (inputs rounded
            to a 10-bit mantissa, float32 accumulation): several times faster on
            Ampere and later, about 1e-3 relative error per product. Set for the
            process each time the model trains or predicts; no effect on the CPU.
            Default: False.
        precision: ``"float32"`` (everything in ``dtype``), ``"mixed_bfloat16"`` or
            ``"mixed_float16"`` (Keras' policy names; ``dtype`` must be float32):
            parameters, gradients and optimizer state stay float32, the layers
            compute in the 16-bit type with float32 accumulation, losses,
            normalization statistics and reductions run in float32, ``predict``
            returns float32. ``mixed_float16`` scales the loss dynamically
            (:class:`~gpunn.optim.LossScaler`, ``model.loss_scaler``). See
            :mod:`gpunn.precision`. Default: ``"float32"``.

    Attributes:
        check_finite: check each training step's loss and gradients before its
            update (one device reduction and one host read per step) and raise
            :class:`~gpunn.errors.NonFiniteError`, nothing updated, when one is NaN
            or infinite (see :mod:`gpunn.faults`). Set it to False to apply such
            updates anyway. Default: True.

    Example::

        model = gpunn.Sequential([Dense(256, activation="relu"), Dense(10)], seed=0)
        model.compile("softmax_cross_entropy", gpunn.optim.Adam(1e-3))
        history = model.fit(X, y, epochs=10, batch_size=64)
    """

    check_finite = True  # see Attributes; an instance attribute overrides it

    def __init__(
        self,
        layers=(),
        input_dim: int | None = None,
        dtype="float32",
        backend=None,
        seed: int | None = None,
        tf32: bool = False,
        precision="float32",
    ):
        if isinstance(layers, (str, bytes, Layer)) or not hasattr(layers, "__iter__"):
            raise ArgumentTypeError(
                f"layers must be a list of gpunn Layers, got {type(layers).__name__}"
            )
        self.backend = get_backend(backend)
        self.tf32 = check_bool("tf32", tf32)
        self.dtype = _model_dtype(dtype)
        self.policy = precisions.get(precision, self.dtype)
        self.loss_scaler = None
        if seed is None:  # drawn from the OS, never from a global RNG; recorded
            seed = int(np.random.SeedSequence().entropy % 2**63)
        self.seed = check_int("seed", seed, 0)
        self.rng = np.random.default_rng(self.seed)
        self.layers: list[Layer] = []
        for layer in layers:
            self.add(layer)
        self.arena: ParameterArena | None = None
        self.input_dim: int | None = None
        self.loss = self.optimizer = None
        self.metrics: list = []
        self._steps_applied = 0  # optimizer steps this model applied (guards)
        if input_dim is not None:
            self.build(input_dim)

    # ----------------------------------------------------------------- building
    def add(self, layer: Layer) -> None:
        if not isinstance(layer, Layer):
            raise ArgumentTypeError(
                f"layers must be gpunn Layers, got {type(layer).__name__}"
            )
        if self.built:
            raise RuntimeError("cannot add a layer to a model that is already built")
        guards.check_free(self, [*self.layers, layer])
        self.layers.append(layer)

    @property
    def built(self) -> bool:
        return getattr(self, "arena", None) is not None

    def build(self, input_dim: int) -> None:
        """Lays out every layer's parameters in one arena and draws their initial
        values from the model's generator, in layer order. A build that fails
        leaves the model, its layers and its generator as they were."""
        input_dim = check_int("input_dim", input_dim, 1)
        if self.built:
            raise RuntimeError(
                f"model is already built with input_dim={self.input_dim}"
            )
        if not self.layers:
            raise ArgumentError("a Sequential model needs at least one layer")
        guards.check_free(self, self.layers)
        if self.optimizer is not None and self.optimizer.arena is not None:
            raise ArgumentError(_taken(self.optimizer))
        with guards.undo_on_error(self):
            self._build(input_dim)
        guards.claim(self)

    def _build(self, input_dim: int) -> None:
        self._name_layers()
        specs, width = [], input_dim
        for layer in self.layers:
            specs += [(layer.name, spec) for spec in layer.build(width, self.rng)]
            width = layer.n_out
        arena = ParameterArena(
            self.backend, self.dtype, specs, self.policy.compute_dtype
        )
        trainable = {name for name, _ in specs}
        below = False  # does a layer before this one have parameters?
        for layer in self.layers:
            layer.bind(
                self.backend,
                arena.views(layer.name, arena.params),
                arena.views(layer.name, arena.grads),
            )
            if arena.compute is not None:  # mixed precision: the 16-bit weights
                layer.compute_params = arena.views(layer.name, arena.compute)
            layer.needs_dx, below = below, below or layer.name in trainable
        self.arena, self.input_dim, self.output_dim = arena, input_dim, width
        if self.optimizer is not None:
            self.optimizer.bind(arena)

    def _name_layers(self) -> None:
        taken = {layer.name for layer in self.layers if layer.name}
        if len(taken) != sum(1 for layer in self.layers if layer.name):
            raise ArgumentError("layer names must be unique within a model")
        for i, layer in enumerate(self.layers):
            if not layer.name:
                layer.name = f"{type(layer).__name__.lower()}_{i}"
                while layer.name in taken:
                    layer.name += "_"
                taken.add(layer.name)

    def compile(
        self,
        loss="softmax_cross_entropy",
        optimizer="adam",
        metrics=DEFAULT_METRICS,
        loss_scale="auto",
    ) -> None:
        """Sets the loss, the optimizer and the metrics reported by fit/evaluate.

        When the model ends in the loss's link (a softmax for cross-entropy, a
        sigmoid for binary cross-entropy, as in Keras' ``Dense(10,
        activation="softmax")`` with ``"categorical_crossentropy"``), training and
        evaluation hand the loss the logits and use its fused, stable gradient;
        ``predict`` still returns probabilities.

        Args:
            loss: a name or alias from :func:`gpunn.losses.names` (e.g.
                ``"softmax_cross_entropy"``, ``"categorical_crossentropy"``,
                ``"binary_crossentropy"``, ``"mse"``, ``"gaussian_nll"``) or a Loss.
            optimizer: an :class:`~gpunn.optim.Optimizer` or a name from
                :func:`gpunn.optim.names` with default hyperparameters.
                Default: ``"adam"``.
            metrics: metric names (``"accuracy"``, ``"top_k_accuracy"``,
                ``"binary_accuracy"``, ``"precision"``, ``"recall"``, ``"f1"``,
                ``"mse"``, ``"mae"``, ``"r2"``) or Metric objects; each must suit the
                loss. Default: ``("accuracy",)``, dropped for regression losses.
            loss_scale: loss scaling for 16-bit training: ``"dynamic"`` (a
                :class:`~gpunn.optim.LossScaler` with torch.amp.GradScaler's rules and
                defaults), a positive number (a fixed scale), a LossScaler, or None.
                ``"auto"``: dynamic for ``precision="mixed_float16"``, none
                otherwise. Kept as ``model.loss_scaler``. Default: ``"auto"``.
        """
        loss = losses.get(loss)
        if metrics is DEFAULT_METRICS and loss.task == "regression":
            metrics = ()
        if isinstance(metrics, (str, metrics_lib.Metric)):
            metrics = (metrics,)
        if not isinstance(metrics, (list, tuple)):
            raise ArgumentTypeError(
                "metrics must be a list of metric names or Metric objects, got "
                f"{type(metrics).__name__}"
            )
        found = [metrics_lib.get(m, loss) for m in metrics]
        optimizer = optim.get(optimizer)
        scaler = loss_scalers.get(loss_scale, self.policy)
        if optimizer.arena is not None and optimizer.arena is not self.arena:
            raise ArgumentError(_taken(optimizer))
        if self.built:
            optimizer.bind(self.arena)
        self.loss, self.metrics, self.optimizer = loss, found, optimizer
        self.loss_scaler = scaler

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
            raise ArgumentError(_taken(self.optimizer))

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

    @guards.guarded("train_step", exclusive_call=True)
    def train_step(self, x, y, sample_weight=None) -> float:
        """One optimizer update on one batch; returns that batch's loss (with any
        regularization penalties) before the update. A NaN or infinite loss or
        gradient raises :class:`~gpunn.errors.NonFiniteError` before the update
        (unless ``check_finite`` is off)."""
        x, y, w = self._dataset(x, y, sample_weight, ("x", "y", "sample_weight"))
        self._discard_layer_state()  # left by forwards outside a step (gradcheck)
        loss, _ = self._train_batch(x, y, w, faults.StepCheck(self))
        return float(loss)

    @guards.guarded("fit", exclusive_call=True)
    def fit(
        self,
        X,
        y=None,
        epochs: int = 1,
        batch_size: int = 32,
        shuffle: bool = True,
        validation_data=None,
        validation_split: float = 0.0,
        verbose: int = 1,
        callbacks=None,
        sample_weight=None,
        accumulate_steps: int = 1,
        resume_from=None,
        class_weight=None,
        initial_epoch: int = 0,
        steps_per_epoch: int | None = None,
        validation_steps: int | None = None,
    ) -> training.History:
        """Trains for ``epochs`` passes over ``(X, y)``.

        Args:
            X, y: features ``(n, n_features)`` and targets (see the loss): arrays
                (NumPy, or any tensor with ``__dlpack__``: PyTorch, JAX, CuPy), a
                memory-mapped array (``numpy.load(path, mmap_mode="r")``, read in
                chunks, shuffled by chunks and within them; see
                :mod:`gpunn.data`), or for ``X`` an iterable of ``(x, y)`` /
                ``(x, y, sample_weight)`` batches with ``y`` None.
            epochs: passes over the data. Default: 1.
            batch_size: samples per batch (per gradient computation); an
                iterable's batches keep their own size. Default: 32.
            shuffle: a fresh permutation from the model's generator each epoch
                (ignored for an iterable, as in Keras).
            validation_data: ``(X_val, y_val)``, ``(X_val, y_val, w_val)`` or an
                iterable of batches, evaluated after each epoch (``val_`` logs).
            validation_split: or hold out this last fraction of ``(X, y)``.
            verbose: 0 silent, 1 progress bar, 2 one line per epoch. Default: 1.
            callbacks: :mod:`gpunn.callbacks` instances. Default: None. A step whose
                loss or gradients are NaN or infinite raises NonFiniteError before
                its update (``check_finite``); with ``TerminateOnNaN`` among the
                callbacks it is skipped and training stops instead.
            sample_weight: ``(n,)`` non-negative weights of each sample's loss.
            accumulate_steps: average the gradients of this many batches before
                each optimizer step (an effective batch of ``accumulate_steps *
                batch_size`` that never sits in memory at once). Default: 1.
            resume_from: a checkpoint file from
                :class:`~gpunn.checkpointing.ModelCheckpoint`: parameters, layer
                state, optimizer state and step, lr schedule, generators, callbacks'
                state and the epoch and batch reached are restored, and training
                goes on from there (bitwise as if uninterrupted, on the CPU) up to
                ``epochs`` in total. Pass the same data, batch_size, shuffle and
                accumulate_steps (checked for a mid-epoch checkpoint) and the same
                callbacks (matched by ``state_key``: class and what they watch or
                write, in any order) to resume theirs. A
                checkpoint that does not fit the model, optimizer or dtype raises
                CheckpointError with the model untouched; ``epochs`` at or below
                the checkpoint's epoch raises ValueError (nothing to train). A
                checkpoint written after a callback stopped training resumes and
                trains on. ``initial_epoch``, if not 0, must be the checkpoint's
                epoch. Default: None.
            class_weight: ``{label: weight}``: each sample's loss times its
                class's weight, averaged over the batch size as ``sample_weight``
                is (Keras' meaning; multiplied with ``sample_weight``; missing
                classes weigh 1). Default: None.
            initial_epoch: the epoch to start at, as in Keras: trains epochs
                ``initial_epoch .. epochs - 1``; History and callbacks see those
                numbers. Default: 0.
            steps_per_epoch: batches per epoch of an iterable ``X``, drawn from one
                iterator kept across epochs; None: each epoch is one pass of it.
                Training stops with a warning when it runs out. Default: None.
            validation_steps: batches per evaluation of an iterable
                ``validation_data``; None: until it ends. Default: None.

        Returns: the :class:`~gpunn.callbacks.History` (with the checkpoint's earlier
        epochs when resuming).

        While it runs, BLAS keeps to the cores this process has been given (its CPU
        affinity and cgroup quota), or to ``GPUNN_NUM_THREADS`` threads when that is
        set (:mod:`gpunn.backends.threads`). One ``fit`` (or ``train_step``,
        ``lr_find``) at a time per model: a second one from another thread raises
        RuntimeError.
        """
        with self.backend.cpu_threads(), faults.interrupts_deferred():
            return training.fit(
                self,
                X,
                y,
                epochs=epochs,
                batch_size=batch_size,
                shuffle=shuffle,
                validation_data=validation_data,
                validation_split=validation_split,
                verbose=verbose,
                callbacks=callbacks,
                sample_weight=sample_weight,
                accumulate_steps=accumulate_steps,
                resume_from=resume_from,
                class_weight=class_weight,
                initial_epoch=initial_epoch,
                steps_per_epoch=steps_per_epoch,
                validation_steps=validation_steps,
            )

    @guards.guarded("lr_find", exclusive_call=True)
    def lr_find(
        self,
        X,
        y,
        start: float = 1e-7,
        end: float = 10.0,
        steps: int = 100,
        batch_size: int = 32,
        smoothing: float = 0.98,
        divergence: float = 4.0,
        plot=None,
        sample_weight=None,
    ):
        """The learning-rate range test: trains one minibatch per step while the lr
        grows exponentially from ``start`` to ``end``, then restores the model
        (parameters, layer state, optimizer state and step, lr, generator).

        Args:
            X, y: training data (batches are drawn from fresh permutations).
            start, end: first and last learning rate. Defaults: 1e-7, 10.
            steps: number of minibatch updates (the lr grows by
                ``(end / start) ** (1 / (steps - 1))`` each). Default: 100.
            batch_size: samples per minibatch. Default: 32.
            smoothing: factor of the loss's exponential moving average.
                Default: 0.98.
            divergence: stop once the smoothed loss exceeds this multiple of its
                minimum (or is not finite). Default: 4.
            plot: a path to save a PNG plot to (needs matplotlib). Default: None.
            sample_weight: optional per-sample loss weights.

        Returns: a :class:`~gpunn.lr_find.LRFinderResult` with ``lrs``, ``losses``,
        ``smoothed`` and ``suggested_lr`` (steepest descent of the smoothed loss).
        """
        return range_test(
            self,
            X,
            y,
            start,
            end,
            steps,
            batch_size,
            smoothing,
            divergence,
            plot,
            sample_weight,
        )

    @guards.guarded("evaluate")
    def evaluate(
        self, X, y=None, batch_size: int = 1024, sample_weight=None, steps=None
    ) -> dict:
        """Returns ``{"loss": ..., <metric>: ...}`` over ``(X, y)`` in eval mode; the
        loss includes regularization penalties and ``sample_weight``. ``X`` as for
        :meth:`fit` (arrays, a memory-mapped array read in chunks, or an iterable
        of batches with ``y`` None, of which ``steps`` batches are evaluated; None:
        until it ends)."""
        batch_size = training.check_batch_size(batch_size)
        steps = training.check_steps("steps", steps)
        source = data.source_for(self, X, y, sample_weight, steps=steps)
        return training.evaluate_source(self, source, batch_size)

    @guards.guarded("predict")
    def predict(self, X, batch_size: int = 1024, steps=None) -> np.ndarray:
        """Returns the raw network outputs for ``X`` as a NumPy array ``(n,
        outputs)``. ``X``: an array, a memory-mapped array (read in chunks), or an
        iterable of batches (``x``, or tuples whose first entry is ``x``), of
        which ``steps`` are predicted (None: until it ends)."""
        batch_size = training.check_batch_size(batch_size)
        steps = training.check_steps("steps", steps)
        names = ("X", "y", "sample_weight")
        source = data.source_for(self, X, targets=False, steps=steps, names=names)
        if source.kind != "array":
            return training.predict_source(self, source, batch_size)
        return self._predict_arrays(source.data[0], batch_size)

    @guards.guarded("predict")
    def __call__(self, x) -> np.ndarray:
        """``model(x)``: :meth:`predict` on ``x`` as one batch (an array or tensor
        of shape ``(batch, n_features)``); returns what ``predict`` returns."""
        if data.is_batches(x) or data.is_memmap(x):
            raise ArgumentTypeError(
                f"model(x) takes one batch as an array, got {type(x).__name__}; "
                "use model.predict(x) for iterables and memory-mapped arrays"
            )
        X = self._inputs(x, "x")
        return self._predict_arrays(X, len(X))

    def _predict_arrays(self, X, batch_size: int) -> np.ndarray:
        try:
            chunks = [
                self.forward(X[i : i + batch_size])
                for i in range(0, len(X), batch_size)
            ]
            return self.backend.to_numpy(self.backend.xp.concatenate(chunks))
        except self.backend.out_of_memory_errors as exc:
            size = min(batch_size, len(X))
            raise faults.out_of_memory(self, exc, size, "prediction") from exc

    def __repr__(self) -> str:
        return describe(self)

    # ----------------------------------------------------------------- weights
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

    @guards.guarded("adapt", exclusive_call=True)
    def adapt(self, X, steps=None) -> None:
        """Fits every adaptable preprocessing layer (``Standardize``, ``Whiten``) from
        ``X``, in order: each sees ``X`` as the layers before it transform it (eval
        mode). Builds the model from ``X``'s width if needed. A memory-mapped array
        or an iterable of batches (``x`` or tuples starting with ``x``; ``steps``
        of them, None: until it ends) is read in one pass per adaptable layer, its
        statistics accumulated in float64 (:mod:`gpunn.data.adapt`)."""
        adaptable = [layer for layer in self.layers if layer.adaptable]
        if not adaptable:
            raise ArgumentError(
                "the model has no adaptable layer (Standardize, Whiten) to adapt"
            )
        steps = training.check_steps("steps", steps)
        if data.is_batches(X) or data.is_memmap(X):
            source = data.source_for(self, X, targets=False, steps=steps)
            rows = getattr(source, "chunk_rows", 1)
            return data_adapt.adapt_streamed(self, source, rows)
        if steps is not None:
            raise ArgumentError("steps is for X given as an iterable of batches")
        X = self._inputs(X)
        x = X
        for layer in self.layers:
            if layer.adaptable:
                layer.adapt(x)
            if layer is adaptable[-1]:
                return
            x = layer.forward(x, training=False)

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
    def from_config(cls, config: dict, backend=None) -> Sequential:
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

    def summary(self, print_fn=print) -> str:
        """Prints (and returns) a table of layers, output widths, parameter counts and
        forward FLOPs per sample."""
        return training.summary_table(self, check_callable("print_fn", print_fn))


def _taken(optimizer) -> str:
    return (
        f"this {type(optimizer).__name__} already belongs to another model; create "
        "one optimizer per model (model.compile(loss, NewOptimizer(...)))"
    )


def _part(state: dict, layer) -> dict:
    """The entries of a model state that belong to ``layer``, without its prefix."""
    prefix = layer.name + "."
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _model_dtype(dtype) -> np.dtype:
    try:  # None is refused: NumPy would read it as float64
        found = None if dtype is None else np.dtype(dtype)
    except TypeError:
        found = None
    if found is None or found.name not in DTYPES:
        raise ArgumentError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return found
