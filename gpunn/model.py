"""``Sequential``: a stack of layers over one parameter arena, one backend, one dtype and
one seeded random generator."""

from __future__ import annotations

import numpy as np

from gpunn import data, faults, guards, losses, optim, training
from gpunn import metrics as metrics_lib
from gpunn import precision as precisions
from gpunn.arena import ParameterArena
from gpunn.backends import get_backend
from gpunn.checks import check_bool, check_callable, check_int
from gpunn.data import adapt as data_adapt
from gpunn.errors import ArgumentError, ArgumentTypeError
from gpunn.layers.base import Layer
from gpunn.lr_find import lr_find as range_test
from gpunn.optim import loss_scaler as loss_scalers
from gpunn.steps import Steps, optimizer_taken
from gpunn.summary import describe
from gpunn.weights import Weights

DTYPES = ("float32", "float64")
DEFAULT_METRICS = ("accuracy",)


class Sequential(Steps, Weights):
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
            raise ArgumentError(optimizer_taken(self.optimizer))
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
            raise ArgumentError(optimizer_taken(optimizer))
        if self.built:
            optimizer.bind(self.arena)
        self.loss, self.metrics, self.optimizer = loss, found, optimizer
        self.loss_scaler = scaler

    # ----------------------------------------------------------------- training
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

    def summary(self, print_fn=print) -> str:
        """Prints (and returns) a table of layers, output widths, parameter counts and
        forward FLOPs per sample."""
        return training.summary_table(self, check_callable("print_fn", print_fn))


def _model_dtype(dtype) -> np.dtype:
    try:  # None is refused: NumPy would read it as float64
        found = None if dtype is None else np.dtype(dtype)
    except TypeError:
        found = None
    if found is None or found.name not in DTYPES:
        raise ArgumentError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return found
