"""scikit-learn's stochastic training loop (``solver="sgd"`` and ``"adam"``) on a
:class:`~gpunn.sklearn._network.Network`.

Everything random is drawn as scikit-learn draws it, from the estimator's
``_random_state`` on the host: the early-stopping split (``train_test_split``) and
each epoch's permutation (``sklearn.utils.shuffle`` of the running sample order).
The data sit on the device once; each epoch uploads one index array and gathers
every batch there. Batch losses are summed on the device and read once per epoch.
The stopping rules are scikit-learn's: ``tol`` and ``n_iter_no_change`` on the
training loss, or on the validation score with ``early_stopping`` (the best
weights are kept and restored), and the ``adaptive`` schedule's lr / 5 steps.
"""

from __future__ import annotations

import warnings

import numpy as np

from gpunn.data.chunks import rows_of
from gpunn.sklearn import _optimizers


def fit(est, net, X, y, sample_weight, incremental: bool) -> None:
    """Runs scikit-learn's ``_fit_stochastic`` for ``est`` on ``net``; ``X`` and
    ``y`` (2-D, binarized labels for a classifier) are host arrays."""
    _prepare_solver(est, net, incremental)
    if est.early_stopping and incremental:
        raise ValueError("partial_fit does not support early_stopping=True")
    train, val = _split(est, X, y, sample_weight)
    n_samples = len(train[0])
    batch_size = _batch_size(est.batch_size, n_samples)
    data = tuple(net.to_device(a) for a in train)
    if val is not None:
        val = (net.to_device(val[0]), *val[1:])
    order = np.arange(n_samples, dtype=int)
    try:
        est.n_iter_ = 0
        for _ in range(est.max_iter):
            if est.shuffle:
                from sklearn.utils import shuffle

                order = shuffle(order, random_state=est._random_state)
            loss = _epoch(est, net, data, order if est.shuffle else None, batch_size)
            if _end_epoch(est, net, loss, n_samples, val, incremental):
                break
    except KeyboardInterrupt:
        warnings.warn("Training interrupted by user.")
    if est.early_stopping:
        est.coefs_, est.intercepts_ = est._best_coefs, est._best_intercepts
    else:
        est.coefs_, est.intercepts_ = net.get_weights()


def _prepare_solver(est, net, incremental: bool) -> None:
    solver = getattr(est, "_optimizer", None)
    if not incremental or solver is None:
        est._optimizer = _new_solver(est, net)
    elif getattr(solver, "net", None) is not net:  # scikit-learn's, or another net's
        if hasattr(solver, "to_sklearn"):
            solver = solver.to_sklearn(solver.net, est.coefs_ + est.intercepts_)
        est._optimizer = _optimizers.from_sklearn(net, solver)
    est._optimizer.net = net


def _new_solver(est, net):
    if est.solver == "sgd":
        return _optimizers.SGD(
            net,
            est.learning_rate_init,
            est.learning_rate,
            est.momentum,
            est.nesterovs_momentum,
            est.power_t,
        )
    return _optimizers.Adam(
        net, est.learning_rate_init, est.beta_1, est.beta_2, est.epsilon
    )


def _split(est, X, y, sample_weight):
    """``(train, val)``: ``train = (X, y, w)`` host arrays, ``val = (X, y, w)`` with
    labels for a classifier, or None without early stopping."""
    if not est.early_stopping:
        return (X, y, sample_weight), None
    from sklearn.base import is_classifier
    from sklearn.model_selection import train_test_split

    stratify = y if is_classifier(est) and est.n_outputs_ == 1 else None
    train, val = train_test_split(
        np.arange(len(X)),
        random_state=est._random_state,
        test_size=est.validation_fraction,
        stratify=stratify,
    )
    if len(val) < 2:
        raise ValueError(
            "The validation set is too small. Increase 'validation_fraction' "
            "or the size of your dataset."
        )
    w = sample_weight
    y_val = y[val]
    if is_classifier(est):
        y_val = est._label_binarizer.inverse_transform(y_val)
    train = (X[train], y[train], None if w is None else w[train])
    return train, (X[val], y_val, None if w is None else w[val])


def _batch_size(batch_size, n_samples: int) -> int:
    if batch_size == "auto":
        return min(200, n_samples)
    if batch_size > n_samples:
        warnings.warn(
            "Got `batch_size` less than 1 or larger than "
            "sample size. It is going to be clipped"
        )
    return int(np.clip(batch_size, 1, n_samples))


def _epoch(est, net, data, order, batch_size: int):
    """One pass over the device data; returns the summed ``batch loss * batch
    size`` as a 0-d device array."""
    backend, xp = net.backend, net.xp
    backend.set_tf32(False)
    n = len(data[0])
    if order is not None:
        order = backend.asarray(order)
    total, solver = None, est._optimizer
    take = rows_of(backend.take_rows)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        xb, yb, wb = take(data, order, start, stop)
        loss = net.gradient_(
            xb, yb, wb, est._loss_name(), est.out_activation_, est.alpha
        )
        loss = loss * (stop - start)
        total = loss if total is None else total + loss
        solver.update_(xp, net.params, net.grads, net.scratch)
        net.params_written()
    return total


def _end_epoch(est, net, total, n_samples: int, val, incremental: bool) -> bool:
    """scikit-learn's end of an epoch: the loss curve, the stopping rules and the
    schedule. Returns whether to stop."""
    est.n_iter_ += 1
    est.loss_ = float(net.backend.to_numpy(total)) / n_samples
    est.t_ += n_samples
    est.loss_curve_.append(est.loss_)
    if est.verbose:
        print(f"Iteration {est.n_iter_}, loss = {est.loss_:.8f}")
    _update_no_improvement_count(est, net, val)
    est._optimizer.iteration_ends(est.t_)
    if est._no_improvement_count > est.n_iter_no_change:
        what = "Validation score" if val is not None else "Training loss"
        msg = (
            f"{what} did not improve more than tol={est.tol:f} for "
            f"{est.n_iter_no_change} consecutive epochs."
        )
        if est._optimizer.trigger_stopping(msg, est.verbose):
            return True
        est._no_improvement_count = 0
    if incremental:
        return True
    if est.n_iter_ == est.max_iter:
        from sklearn.exceptions import ConvergenceWarning

        warnings.warn(
            f"Stochastic Optimizer: Maximum iterations ({est.max_iter}) "
            "reached and the optimization hasn't converged yet.",
            ConvergenceWarning,
        )
    return False


def _update_no_improvement_count(est, net, val) -> None:
    if val is None:
        if est.loss_curve_[-1] > est.best_loss_ - est.tol:
            est._no_improvement_count += 1
        else:
            est._no_improvement_count = 0
        est.best_loss_ = min(est.best_loss_, est.loss_curve_[-1])
        return
    score = est._gpunn_score(net, *val)
    est.validation_scores_.append(score)
    if est.verbose:
        print(f"Validation score: {est.validation_scores_[-1]:f}")
    if score < est.best_validation_score_ + est.tol:
        est._no_improvement_count += 1
    else:
        est._no_improvement_count = 0
    if score > est.best_validation_score_:
        est.best_validation_score_ = score
        est._best_coefs, est._best_intercepts = net.get_weights()
