"""An ONNX graph recorded as plain data, and symbolic tensors that trace gpunn's
reference ops into it.

:class:`Graph` records nodes as :class:`Node` tuples and constants as NumPy arrays,
so building a graph needs no ``onnx`` import (only :mod:`gpunn.export.onnx_model`
turns it into protobuf). A :class:`Sym` is one tensor of the graph: its arithmetic
operators (``+ - * / @``, unary ``-``, comparisons) and the array module
:class:`SymXp` (``where``, ``maximum``, ``exp``, ``clip``, ...) each append a node, so
an op written once against ``self.xp`` (the NumPy backend's reference ops) runs on a
``Sym`` and leaves its own computation in the graph. Python scalars and NumPy arrays
mixed with a ``Sym`` become constants in the graph's dtype, as NumPy 2 casts weak
scalars; operations on constants alone run in NumPy at export time (e.g. a
BatchNorm's ``1 / sqrt(running_var + eps)``).
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import numpy as np


class Node(NamedTuple):
    op_type: str
    inputs: tuple
    outputs: tuple
    attrs: dict
    name: str


class Graph:
    """Nodes and constants of one ONNX graph whose float tensors have ``dtype``.

    Args:
        dtype: the float dtype of the graph's tensors and constants.
    """

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)
        self.nodes: list[Node] = []
        self.initializers: dict[str, np.ndarray] = {}
        self.prefix = ""
        self._count = 0
        self._scalars: dict = {}

    @contextlib.contextmanager
    def scope(self, name: str):
        """Names the nodes and constants made inside ``with`` ``<name>/...``."""
        outer, self.prefix = self.prefix, f"{self.prefix}{name}/"
        try:
            yield
        finally:
            self.prefix = outer

    def fresh(self, hint: str) -> str:
        """A new unique tensor name ``<scope>/<hint>_<n>``."""
        self._count += 1
        return f"{self.prefix}{hint}_{self._count}"

    def input(self, name: str) -> Sym:
        return Sym(self, name)

    def const(self, value, hint: str = "const") -> Sym:
        """``value`` (a Python scalar or array) as a constant in the graph's dtype
        (booleans stay boolean); equal scalars share one constant."""
        array = np.asarray(value)
        array = np.ascontiguousarray(value, None if array.dtype == bool else self.dtype)
        key = (array.dtype.char, array.tobytes()) if array.ndim == 0 else None
        if key is not None and key in self._scalars:
            return self._scalars[key]
        name = self.fresh(hint)
        self.initializers[name] = array
        found = Sym(self, name, array.dtype == bool)
        if key is not None:
            self._scalars[key] = found
        return found

    def op(self, op_type: str, *inputs, boolean: bool = False, **attrs) -> Sym:
        """Appends a node ``op_type(*inputs, **attrs)`` with one output."""
        names = tuple(self.lift(x).name for x in inputs)
        out = self.fresh(op_type)
        self.nodes.append(Node(op_type, names, (out,), attrs, out))
        return Sym(self, out, boolean)

    def lift(self, value) -> Sym:
        """``value`` itself when it is a Sym, else a constant."""
        return value if isinstance(value, Sym) else self.const(value)

    def output(self, value: Sym, name: str) -> None:
        """Makes ``value`` the graph output ``name``: the last node's output is
        renamed, anything else (the input itself) goes through an Identity node."""
        last = self.nodes[-1] if self.nodes else None
        if last is not None and last.outputs == (value.name,):
            self.nodes[-1] = last._replace(outputs=(name,))
        else:
            self.nodes.append(Node("Identity", (value.name,), (name,), {}, name))


class Sym:
    """A symbolic tensor of a :class:`Graph`: operators append nodes."""

    __array_ufunc__ = None  # NumPy defers to the reflected operators below

    def __init__(self, graph: Graph, name: str, boolean: bool = False):
        self.graph, self.name, self.boolean = graph, name, boolean

    def _binary(self, op_type, other, reflected=False, boolean=False):
        a, b = (other, self) if reflected else (self, other)
        return self.graph.op(op_type, a, b, boolean=boolean)

    def __add__(self, other):
        return self._binary("Add", other)

    def __radd__(self, other):
        return self._binary("Add", other, True)

    def __sub__(self, other):
        return self._binary("Sub", other)

    def __rsub__(self, other):
        return self._binary("Sub", other, True)

    def __mul__(self, other):
        return self._binary("Mul", other)

    def __rmul__(self, other):
        return self._binary("Mul", other, True)

    def __truediv__(self, other):
        return self._binary("Div", other)

    def __rtruediv__(self, other):
        return self._binary("Div", other, True)

    def __matmul__(self, other):
        return self._binary("MatMul", other)

    def __neg__(self):
        return self.graph.op("Neg", self)

    def __gt__(self, other):
        return self._binary("Greater", other, boolean=True)

    def __ge__(self, other):
        return self._binary("GreaterOrEqual", other, boolean=True)

    def __lt__(self, other):
        return self._binary("Less", other, boolean=True)

    def __le__(self, other):
        return self._binary("LessOrEqual", other, boolean=True)

    def __repr__(self) -> str:
        return f"Sym({self.name!r})"


def _symbolic(*args) -> Graph | None:
    """The graph of the first Sym among ``args``, or None (all constants)."""
    return next((a.graph for a in args if isinstance(a, Sym)), None)


class SymXp:
    """The part of the array-module API that gpunn's reference layer ops use, on
    :class:`Sym` tensors; with constants only, each function is NumPy's."""

    @staticmethod
    def where(condition, a, b):
        g = _symbolic(condition, a, b)
        if g is None:
            return np.where(condition, a, b)
        return g.op("Where", condition, a, b)

    @staticmethod
    def maximum(a, b):
        g = _symbolic(a, b)
        return np.maximum(a, b) if g is None else g.op("Max", a, b)

    @staticmethod
    def minimum(a, b):
        g = _symbolic(a, b)
        return np.minimum(a, b) if g is None else g.op("Min", a, b)

    @staticmethod
    def clip(x, lo, hi):
        return SymXp.minimum(SymXp.maximum(x, lo), hi)

    @staticmethod
    def abs(x):
        return np.abs(x) if _symbolic(x) is None else x.graph.op("Abs", x)

    @staticmethod
    def exp(x):
        return np.exp(x) if _symbolic(x) is None else x.graph.op("Exp", x)

    @staticmethod
    def expm1(x):
        """``exp(x) - 1`` (ONNX has no expm1: absolute error of one ulp of 1)."""
        return np.expm1(x) if _symbolic(x) is None else SymXp.exp(x) - 1

    @staticmethod
    def tanh(x):
        return np.tanh(x) if _symbolic(x) is None else x.graph.op("Tanh", x)

    @staticmethod
    def sqrt(x):
        return np.sqrt(x) if _symbolic(x) is None else x.graph.op("Sqrt", x)

    @staticmethod
    def trunc(x):
        if _symbolic(x) is None:
            return np.trunc(x)
        g = x.graph
        return g.op("Where", x < 0, g.op("Ceil", x), g.op("Floor", x))

    @staticmethod
    def copysign(a, b):
        """``|a|`` with the sign of ``b`` (``b = -0.0`` counts as positive)."""
        if _symbolic(a, b) is None:
            return np.copysign(a, b)
        magnitude = SymXp.abs(a)
        return SymXp.where(b < 0, -magnitude, magnitude)
