"""Special functions written once against an array module ``xp`` (NumPy has no ``erf``
and SciPy is not a dependency), and the constants the GELU ops use.

:func:`erf` follows W. J. Cody, "Rational Chebyshev approximations for the error
function", Math. Comp. 23 (1969) 631-638, as in his SPECFUN routine ``CALERF``: three
rational approximations on ``[0, 0.46875]``, ``(0.46875, 4]`` and ``(4, inf)``, and
``exp(-y**2)`` split in two factors so its rounding error stays small. All three
branches are computed on clamped copies of ``|x|`` and selected elementwise, so there
is no data-dependent control flow (nothing waits for the device) and no overflow
warning.
"""

from __future__ import annotations

import math

INV_SQRT_2 = 1 / math.sqrt(2)
INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
SQRT_2_OVER_PI = math.sqrt(2 / math.pi)  # GELU's tanh approximation
GELU_TANH_CUBIC = 0.044715

_INV_SQRT_PI = 5.6418958354775628695e-1
_THRESH = 0.46875
_ONE_BELOW = 6.0  # erf(6) = 1 - 2e-17 rounds to 1.0 in float64
# erf(x) = x * A(x**2) / B(x**2) on [0, 0.46875]
_A = (
    3.16112374387056560e00,
    1.13864154151050156e02,
    3.77485237685302021e02,
    3.20937758913846947e03,
    1.85777706184603153e-1,
)
_B = (
    2.36012909523441209e01,
    2.44024637934444173e02,
    1.28261652607737228e03,
    2.84423683343917062e03,
)
# erfc(y) = exp(-y**2) * C(y) / D(y) on (0.46875, 4]
_C = (
    5.64188496988670089e-1,
    8.88314979438837594e00,
    6.61191906371416295e01,
    2.98635138197400131e02,
    8.81952221241769090e02,
    1.71204761263407058e03,
    2.05107837782607147e03,
    1.23033935479799725e03,
    2.15311535474403846e-8,
)
_D = (
    1.57449261107098347e01,
    1.17693950891312499e02,
    5.37181101862009858e02,
    1.62138957456669019e03,
    3.29079923573345963e03,
    4.36261909014324716e03,
    3.43936767414372164e03,
    1.23033935480374942e03,
)
# erfc(y) = exp(-y**2) / y * (1/sqrt(pi) - z * P(z) / Q(z)), z = 1 / y**2, on (4, inf)
_P = (
    3.05326634961232344e-1,
    3.60344899949804439e-1,
    1.25781726111229246e-1,
    1.60837851487422766e-2,
    6.58749161529837803e-4,
    1.63153871373020978e-2,
)
_Q = (
    2.56852019228982242e00,
    1.87295284992346047e00,
    5.27905102951428412e-1,
    6.05183413124413191e-2,
    2.33520497626869185e-3,
)


def gelu_is_tanh(approximate: str) -> bool:
    """True for GELU's ``approximate="tanh"``, False for ``"none"`` (exact, by erf)."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return approximate == "tanh"


def gelu_tanh_inner(x):
    """``sqrt(2 / pi) * (x + 0.044715 * x**3)``, written ``x * (1 + k * x**2)`` so it
    overflows only where ``x**2`` does."""
    return SQRT_2_OVER_PI * x * (1 + GELU_TANH_CUBIC * x * x)


def _rational(z, num, den):
    """Cody's nested form of ``N(z) / M(z)``: ``N = num[-1] z^n + num[0] z^(n-1) + ...
    + num[-2]``, ``M = z^n + den[0] z^(n-1) + ... + den[-1]``."""
    p, q = num[-1] * z, z
    for a, b in zip(num[:-2], den[:-1]):
        p = (p + a) * z
        q = (q + b) * z
    return (p + num[-2]) / (q + den[-1])


def _exp_minus_square(xp, y):
    """``exp(-y**2)`` as ``exp(-s**2) * exp(-(y - s) * (y + s))`` with ``s = y`` cut
    to a multiple of 1/16: ``s**2`` is exact, so the large exponent carries no
    rounding."""
    s = xp.trunc(y * 16) / 16
    return xp.exp(-s * s) * xp.exp(-(y - s) * (y + s))


def erf(xp, x):
    """``erf(x) = 2 / sqrt(pi) * integral_0^x exp(-t**2) dt``, elementwise, in ``x``'s
    dtype (within a few ulp in float64); ``erf(+-inf) = +-1``, NaN stays NaN."""
    y = xp.abs(x)
    small = xp.minimum(y, _THRESH)
    inner = small * _rational(small * small, _A, _B)
    mid = xp.clip(y, _THRESH, 4.0)
    erfc_mid = _exp_minus_square(xp, mid) * _rational(mid, _C, _D)
    far = xp.clip(y, 4.0, _ONE_BELOW)
    z = 1 / (far * far)
    erfc_far = (
        _exp_minus_square(xp, far) * (_INV_SQRT_PI - z * _rational(z, _P, _Q)) / far
    )
    erfc = xp.where(y <= 4.0, erfc_mid, erfc_far)
    out = xp.where(y <= _THRESH, inner, (0.5 - erfc) + 0.5)
    return xp.copysign(out, x)
