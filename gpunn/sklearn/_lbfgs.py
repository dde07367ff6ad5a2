"""``solver="lbfgs"``: full-batch L-BFGS, the loss and gradient on the backend.

SciPy's L-BFGS-B (as scikit-learn calls it: ``maxiter=max_iter``,
``maxfun=max_fun``, ``gtol=tol``) runs its two-loop recursion on the host over the
packed parameter vector; each evaluation uploads that vector into the arena once,
runs one forward and backward pass over all the (device-resident) data, and reads
the loss and the packed gradient back.
"""

from __future__ import annotations

import numpy as np


def fit(est, net, X, y, sample_weight) -> None:
    """Runs scikit-learn's ``_fit_lbfgs`` for ``est`` on ``net``."""
    import scipy.optimize
    from sklearn.utils.optimize import _check_optimize_result

    _set_indptr(est, net.shapes)
    packed = np.hstack([a.ravel() for a in est.coefs_ + est.intercepts_])
    data = (net.to_device(X), net.to_device(y), net.to_device(sample_weight))
    loss, out = est._loss_name(), est.out_activation_
    result = scipy.optimize.minimize(
        lambda p: net.loss_grad(p, *data, loss, out, est.alpha),
        packed,
        method="L-BFGS-B",
        jac=True,
        options={"maxfun": est.max_fun, "maxiter": est.max_iter, "gtol": est.tol},
    )
    est.n_iter_ = _check_optimize_result("lbfgs", result, est.max_iter)
    est.loss_ = result.fun
    net.set_packed(result.x)
    est.coefs_, est.intercepts_ = net.get_weights()


def _set_indptr(est, shapes) -> None:
    """scikit-learn's packing bookkeeping (``_coef_indptr``, ``_intercept_indptr``),
    kept so that its own ``_unpack`` and ``_loss_grad_lbfgs`` work on the estimator."""
    est._coef_indptr, est._intercept_indptr, start = [], [], 0
    for fan_in, fan_out in shapes:
        end = start + fan_in * fan_out
        est._coef_indptr.append((start, end, (fan_in, fan_out)))
        start = end
    for _, fan_out in shapes:
        est._intercept_indptr.append((start, start + fan_out))
        start += fan_out
