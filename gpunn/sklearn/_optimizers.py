"""scikit-learn's stochastic solvers over gpunn's flat parameter arena.

These are not ``torch.optim``'s rules (those live in :mod:`gpunn.optim`); they are
``sklearn.neural_network._stochastic_optimizers`` written once against the backend's
array module, so they run on NumPy and CuPy alike, with the same operations in the
same order (float64 results equal scikit-learn's):

- Adam: ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``, then
  ``p += -lr_t m / (sqrt(v) + eps)`` with ``lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)``:
  the bias corrections are folded into the step size and ``eps`` is added to the
  uncorrected root (torch adds it to the corrected one).
- SGD: ``u = momentum * u - lr * g`` (the velocity holds the update, lr included),
  then ``p += u``, or with Nesterov ``p += momentum * u - lr * g``.
- Learning rates: ``invscaling`` sets ``lr = lr_init / (t + 1) ** power_t`` at the
  end of each epoch (``t``: samples seen); ``adaptive`` divides it by 5 each time
  the stopping rule fires, until it is at most 1e-6.

Each solver converts to and from scikit-learn's own optimizer object
(:meth:`to_sklearn` / :func:`from_sklearn`), so a fitted estimator pickles as plain
scikit-learn state and scikit-learn's code can carry on from it.
"""

from __future__ import annotations

import math

MIN_ADAPTIVE_LR = 1e-6


class _Solver:
    """Hyperparameters plus flat state buffers shaped like ``arena.params``."""

    def __init__(self, learning_rate_init: float):
        self.learning_rate_init = learning_rate_init
        self.learning_rate = float(learning_rate_init)

    def iteration_ends(self, time_step: int) -> None:
        """Called after each epoch with the number of samples seen so far."""

    def trigger_stopping(self, msg: str, verbose) -> bool:
        """The stopping rule fired: returns whether training stops."""
        if verbose:
            print(msg + " Stopping.")
        return True


class Adam(_Solver):
    """scikit-learn's Adam over flat arrays ``(params, grads)`` of one arena."""

    kind = "adam"

    def __init__(self, net, learning_rate_init, beta_1, beta_2, epsilon):
        super().__init__(learning_rate_init)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.t = 0
        self.ms = net.zeros_like_params()
        self.vs = net.zeros_like_params()

    def update_(self, xp, params, grads, scratch) -> None:
        """One step: updates ``params`` in place from ``grads``; ``scratch`` is a
        buffer of the same shape that is overwritten."""
        b1, b2 = self.beta_1, self.beta_2
        self.t += 1
        self.ms *= b1
        xp.multiply(grads, 1 - b1, out=scratch)
        self.ms += scratch
        self.vs *= b2
        xp.multiply(grads, grads, out=scratch)
        scratch *= 1 - b2
        self.vs += scratch
        self.learning_rate = (
            self.learning_rate_init * math.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        )
        xp.sqrt(self.vs, out=scratch)
        scratch += self.epsilon
        denominator = scratch
        update = self.ms * -self.learning_rate
        update /= denominator
        params += update

    def to_sklearn(self, net, params_host):
        from sklearn.neural_network._stochastic_optimizers import AdamOptimizer

        solver = AdamOptimizer(
            params_host,
            self.learning_rate_init,
            self.beta_1,
            self.beta_2,
            self.epsilon,
        )
        solver.t, solver.learning_rate = self.t, self.learning_rate
        solver.ms, solver.vs = net.unflatten(self.ms), net.unflatten(self.vs)
        return solver


class SGD(_Solver):
    """scikit-learn's SGD with momentum (optionally Nesterov's) and its schedules."""

    kind = "sgd"

    def __init__(
        self, net, learning_rate_init, lr_schedule, momentum, nesterov, power_t
    ):
        super().__init__(learning_rate_init)
        self.lr_schedule, self.momentum = lr_schedule, momentum
        self.nesterov, self.power_t = nesterov, power_t
        self.velocities = net.zeros_like_params()

    def iteration_ends(self, time_step: int) -> None:
        if self.lr_schedule == "invscaling":
            self.learning_rate = (
                float(self.learning_rate_init) / (time_step + 1) ** self.power_t
            )

    def trigger_stopping(self, msg: str, verbose) -> bool:
        if self.lr_schedule != "adaptive":
            return super().trigger_stopping(msg, verbose)
        if self.learning_rate <= MIN_ADAPTIVE_LR:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(f"{msg} Setting learning rate to {self.learning_rate:f}")
        return False

    def update_(self, xp, params, grads, scratch) -> None:
        """One step, in place (see :meth:`Adam.update_`)."""
        xp.multiply(grads, self.learning_rate, out=scratch)
        self.velocities *= self.momentum
        self.velocities -= scratch
        if self.nesterov:
            update = self.velocities * self.momentum
            update -= scratch
            params += update
        else:
            params += self.velocities

    def to_sklearn(self, net, params_host):
        from sklearn.neural_network._stochastic_optimizers import SGDOptimizer

        solver = SGDOptimizer(
            params_host,
            self.learning_rate_init,
            self.lr_schedule,
            self.momentum,
            self.nesterov,
            self.power_t,
        )
        solver.learning_rate = self.learning_rate
        solver.velocities = net.unflatten(self.velocities)
        return solver


def from_sklearn(net, solver):
    """A flat solver on ``net``'s arena carrying on from scikit-learn's optimizer
    object ``solver`` (its state, step and current learning rate)."""
    if hasattr(solver, "ms"):
        ours = Adam(
            net,
            solver.learning_rate_init,
            solver.beta_1,
            solver.beta_2,
            solver.epsilon,
        )
        ours.t = int(solver.t)
        ours.ms[...] = net.flatten(solver.ms)
        ours.vs[...] = net.flatten(solver.vs)
    else:
        ours = SGD(
            net,
            solver.learning_rate_init,
            solver.lr_schedule,
            solver.momentum,
            solver.nesterov,
            solver.power_t,
        )
        ours.velocities[...] = net.flatten(solver.velocities)
    ours.learning_rate = float(solver.learning_rate)
    return ours
