"""scikit-learn estimators trained by gpunn (``pip install "gpunn[sklearn]"``).

- :class:`MLPClassifier`, :class:`MLPRegressor`: drop-in replacements for
  scikit-learn's, with ``device`` and ``dtype`` added.
- :class:`NeuralNetClassifier`, :class:`NeuralNetRegressor`: any gpunn model (a
  function returning a compiled :class:`gpunn.Sequential`) as an estimator.
- :func:`expected_failed_checks`: the scikit-learn estimator checks these classes
  are known not to pass, with the reason, for ``check_estimator``.
"""

try:
    import sklearn  # noqa: F401
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError(
        'gpunn.sklearn needs scikit-learn: pip install "gpunn[sklearn]"'
    ) from exc

from gpunn.sklearn._builders import mlp
from gpunn.sklearn._checks import expected_failed_checks
from gpunn.sklearn._mlp import MLPClassifier, MLPRegressor
from gpunn.sklearn._wrappers import NeuralNetClassifier, NeuralNetRegressor

__all__ = [
    "MLPClassifier",
    "MLPRegressor",
    "NeuralNetClassifier",
    "NeuralNetRegressor",
    "expected_failed_checks",
    "mlp",
]
