"""Numerical faults and device out-of-memory errors inside a training step.

**Non-finite steps.** ``fit`` and ``train_step`` check each optimizer step before its
update: one reduction on the device (:meth:`NumpyBackend.step_is_finite`: the loss plus
zero times the sum of the squared flat gradient, non-finite as soon as either holds a
NaN or an infinity) and one read of its result on the host. A failed check raises
:class:`~gpunn.errors.NonFiniteError` naming the epoch and batch (1-based, as the
progress bar counts them), the optimizer step and whether the loss or only the
gradients are not finite; the update is not applied, so the parameters, the optimizer
state and its step counter are bitwise as before that step. With gradient
accumulation the check runs once per accumulated group, before its step. A
:class:`~gpunn.callbacks.TerminateOnNaN` among ``fit``'s callbacks turns the error into
a graceful stop (the step skipped, the message printed). ``model.check_finite =
False`` turns the check off (and its host read: a GPU step then never waits).
``lr_find`` does not check: its range test drives the loss to diverge on purpose.

**Overflowing squares.** The reduction sums the *squares* of the gradients, so a
finite gradient whose square overflows the dtype (above about 1.8e19 in float32) fails
the check too: applied, it would make Adam's (RMSprop's, Adagrad's...) second moment
infinite and freeze those weights for good.

**Ctrl-C.** The update itself (clipping, the optimizer's arithmetic over every block
of the arena, the step counter, the layer state the step commits) runs inside
:func:`uninterrupted`: a ``KeyboardInterrupt`` arriving there is raised once the step
is complete, so an interrupted ``fit`` leaves parameters, optimizer state, step count
and layer state all at step ``t`` or all at ``t + 1``, and ``fit`` can go on.

**Device out of memory.** An allocation failure of the backend
(``backend.out_of_memory_errors``: CuPy's ``OutOfMemoryError`` on the GPU, nothing on
the CPU) inside a training step, ``evaluate`` or ``predict`` is raised again as
:class:`DeviceMemoryError` (a ``MemoryError``), whose message keeps the backend's own
(the bytes asked for, allocated and the pool limit) and adds the layer and phase that
were running, the batch size and a hint. The optimizer update is the last thing in a
step, so an out-of-memory in the forward or backward pass leaves the parameters and
the optimizer state unchanged, and a smaller batch can train at once.
"""

from __future__ import annotations

import math
import signal
import threading
import traceback

from gpunn.errors import DeviceMemoryError, NonFiniteError

__all__ = [
    "DeviceMemoryError",
    "StepCheck",
    "interrupts_deferred",
    "out_of_memory",
    "step_verdict",
    "uninterrupted",
]


class StepCheck:
    """Checks one training step's loss and gradients before its optimizer update.

    Args:
        model: the model being trained (reads ``model.check_finite``, its backend,
            gradient arena and optimizer).
        callbacks: ``fit``'s callbacks; any with an ``on_non_finite_step(batch,
            error)`` hook (:class:`~gpunn.callbacks.TerminateOnNaN`) is called
            instead of raising, and the step is skipped. Default: none.
        epoch: the epoch in progress (0-based), or None outside ``fit``
            (``train_step``).

    Attributes:
        batch: the batch in progress (1-based), set by the training loop.
    """

    def __init__(self, model, callbacks=(), epoch: int | None = None):
        self.model, self.epoch, self.batch = model, epoch, None
        self.handlers = [c for c in callbacks if hasattr(c, "on_non_finite_step")]

    def __call__(self, loss, batches: int = 1) -> bool:
        """True when the update may be applied: ``loss`` (a 0-d device array, or
        None), the arena's gradients and what the step would commit are finite, or
        the check is off. Otherwise raises NonFiniteError, or returns False after
        telling the handlers. With a dynamic loss scaler (mixed_float16) the check
        always runs (the gradients are unscaled by then): a step that is not finite
        is skipped and the scale backs off (NonFiniteError once the scale would
        fall below 2**-24). ``batches``: how many batches were accumulated into
        the gradients."""
        model, scaler = self.model, self.model.loss_scaler
        dynamic = scaler is not None and scaler.dynamic
        if not (model.check_finite or dynamic):
            return True
        loss = 0.0 if loss is None else loss
        if bool(step_verdict(model, loss)):
            return True
        if dynamic:
            scaler.update(found_inf=True)
            return False
        error = NonFiniteError(self._message(loss, batches))
        if not self.handlers:
            raise error
        for handler in self.handlers:
            handler.on_non_finite_step(self.batch - 1, error)
        return False

    def _gradients_message(self, value: float) -> str:
        model = self.model
        grads = model.arena.grads
        if not model.backend.all_finite(grads):
            return f"non-finite gradients (the loss, {value:.6g}, is finite)"
        if bool(model.backend.step_is_finite(value, grads)):
            return (
                f"optimizer state overflow (the loss, {value:.6g}, and the gradients "
                f"are finite, but {type(model.optimizer).__name__}'s sum of squared "
                f"gradients would exceed the largest {grads.dtype})"
            )
        return (
            f"gradients too large for {grads.dtype} (the loss, {value:.6g}, and the "
            "gradients are finite, but the sum of their squares overflows: the "
            "optimizer state, e.g. Adam's second moment, would become infinite)"
        )

    def _message(self, loss, batches: int) -> str:
        backend = self.model.backend
        value = float(backend.to_numpy(loss))
        staged = [layer.name for layer in self.model.layers if _bad_state(layer)]
        parts = [] if math.isfinite(value) else [f"non-finite loss ({value})"]
        if staged:
            parts.append(
                f"non-finite layer state (the state of {', '.join(staged)} would not "
                "be finite: an extreme input row?)"
            )
        what = " and ".join(parts) or self._gradients_message(value)
        step = self.model.optimizer.steps + 1
        if self.epoch is None:
            where = f"in train_step, before optimizer step {step}"
        else:
            span = f"batch {self.batch}"
            if batches > 1:
                span = f"batches {self.batch - batches + 1}-{self.batch} (accumulated)"
            where = f"at epoch {self.epoch + 1}, {span}, before optimizer step {step}"
        return (
            f"{what} {where}: the update was skipped, so parameters, optimizer "
            "state, step count and layer state are as before it. Try a lower "
            "learning rate, gradient clipping (clip_norm=...) or look for extreme "
            "input values; set model.check_finite = False to apply such updates "
            "anyway"
        )


def step_verdict(model, loss):
    """Whether a step may be applied, as a 0-d device bool (no host read): the loss
    and the gradients finite, with their sum of squares
    (:meth:`~gpunn.backends.NumpyBackend.step_is_finite`), the layer state the step
    would commit finite, and an optimizer buffer that only grows (Adagrad's) still
    finite after it."""
    ok = model.backend.step_is_finite(loss, model.arena.grads)
    for layer in model.layers:
        staged = layer.staged_is_finite()
        ok = ok if staged is None else ok & staged
    grown = model.optimizer.state_stays_finite()
    return ok if grown is None else ok & grown


def with_layer_state(model, loss):
    """``loss`` (a 0-d device array), made NaN when the layer state the step staged
    is not finite (no host read). On several ranks the reduced loss then carries one
    rank's overflowing BatchNorm statistics to every rank, so all refuse the step
    together instead of one raising while the others wait in the next
    all-reduce."""
    for layer in model.layers:
        finite = layer.staged_is_finite()
        if finite is not None:
            loss = model.backend.xp.where(finite, loss, math.nan).astype(loss.dtype)
    return loss


def _bad_state(layer) -> bool:
    """Whether ``layer`` staged state that is not finite."""
    flag = layer.staged_is_finite()
    return flag is not None and not bool(flag)


class _Sigint:
    """Ctrl-C held back in critical sections, for the main thread.

    A handler of gpunn's, installed while a fit runs (:func:`interrupts_deferred`)
    or for one block, records a SIGINT that arrives while a critical section is
    open (``depth > 0``) and passes any other to the handler it replaced. Opening
    and closing a section inside a fit costs two integer updates, not two
    ``sigaction`` calls: it runs once per training step."""

    installed = False
    depth = 0
    pending = None  # the frame of a SIGINT held back
    previous = None  # the handler gpunn's replaced

    @classmethod
    def handle(cls, signum, frame) -> None:
        if cls.depth:
            cls.pending = frame
        else:
            cls.previous(signum, frame)

    @classmethod
    def install(cls) -> bool:
        """Installs the handler (main thread only) unless SIGINT is ignored or left
        to the OS; returns whether it did."""
        if cls.installed or threading.get_ident() != _MAIN:
            return False
        previous = signal.signal(signal.SIGINT, cls.handle)
        if not callable(previous):
            signal.signal(signal.SIGINT, previous)
            return False
        cls.installed, cls.previous = True, previous
        return True

    @classmethod
    def uninstall(cls) -> None:
        signal.signal(signal.SIGINT, cls.previous)
        cls.installed, cls.previous = False, None


_MAIN = threading.main_thread().ident


class _Section:
    """One critical section (see :func:`uninterrupted`)."""

    def __enter__(self):
        self.main = threading.get_ident() == _MAIN
        if self.main:
            self.own = _Sigint.install()  # outside a fit: for this block
            _Sigint.depth += 1
        return self

    def __exit__(self, kind, error, tb) -> None:
        if not self.main:
            return
        _Sigint.depth -= 1
        frame, handler = _Sigint.pending, _Sigint.previous
        if not _Sigint.depth:
            _Sigint.pending = None
        if self.own:
            _Sigint.uninstall()
        if frame is not None and not _Sigint.depth and kind is None:
            handler(signal.SIGINT, frame)  # raises KeyboardInterrupt, by default


def uninterrupted() -> _Section:
    """Holds back Ctrl-C (SIGINT) while the block runs, then raises it.

    In the main thread, with a Python SIGINT handler installed (Python's default
    raises KeyboardInterrupt), a signal arriving inside the block is recorded and
    the handler runs once the block has finished (unless an error is already
    propagating), so work that must not stop half way (an optimizer update over the
    whole arena) completes first. Elsewhere (other threads, a SIGINT ignored or left
    to the OS) the block runs as it is. Nests: the outermost block raises.
    """
    return _Section()


def interrupts_deferred() -> _Deferring:
    """Keeps gpunn's SIGINT handler installed for the block (``fit`` holds it), so
    each :func:`uninterrupted` section inside costs no system call; outside a
    section a Ctrl-C is raised at once, as usual."""
    return _Deferring()


class _Deferring:
    def __enter__(self):
        self.own = _Sigint.install()
        return self

    def __exit__(self, kind, error, tb) -> None:
        if self.own:
            _Sigint.uninstall()


def out_of_memory(model, error, batch_size: int, action: str) -> DeviceMemoryError:
    """The :class:`DeviceMemoryError` for a backend out-of-memory ``error`` raised
    while ``model`` ran ``action`` (``"training"``, ``"evaluation"``,
    ``"prediction"``) on a batch of ``batch_size`` samples. Clears the local
    variables of the frames the error unwound, so the arrays they held can be freed
    while the exception is kept."""
    part, in_update = _failing_part(model, error.__traceback__)
    traceback.clear_frames(error.__traceback__)
    smaller = max(batch_size // 2, 1)
    state = (
        "the update had begun, so parameters and optimizer state may be partly updated"
        if in_update
        else "parameters and optimizer state are unchanged"
    )
    return DeviceMemoryError(
        f"{model.backend.name.upper()} out of memory in {part} during {action} with "
        f"a batch of {batch_size} samples: {error} Hint: use a smaller batch_size "
        f"(e.g. {smaller}) or free other device memory; {state}."
    )


def _failing_part(model, tb) -> tuple[str, bool]:
    """``(description, in the optimizer update)`` of the innermost part of
    ``model`` (a layer, the loss, the optimizer) running in traceback ``tb``."""
    layers = {id(layer) for layer in model.layers}
    found, in_update = "the model", False
    while tb is not None:
        code, owner = tb.tb_frame.f_code, tb.tb_frame.f_locals.get("self")
        if id(owner) in layers:
            found = f"layer {owner.name} ({type(owner).__name__}.{code.co_name})"
        elif owner is not None and owner is model.loss:
            found = f"the loss ({type(owner).__name__})"
        elif owner is not None and owner is model.optimizer:
            found, in_update = f"the optimizer update ({type(owner).__name__})", True
        tb = tb.tb_next
    return found, in_update
