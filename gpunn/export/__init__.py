"""Export of trained models for deployment: ONNX (``pip install "gpunn[onnx]"``).

- :func:`export_onnx` (``model.export(path)``, ``gpunn export MODEL.safetensors
  model.onnx``): the inference graph in an ONNX file, written atomically.
- :func:`to_onnx`: the same graph as an ``onnx.ModelProto``.

The graph is traced from gpunn's own reference ops (:mod:`gpunn.export.trace`), so
it computes what ``predict`` computes; ``onnx`` is imported only when exporting.
"""

from gpunn.export.onnx_model import DEFAULT_OPSET, DTYPES, export_onnx, to_onnx
from gpunn.export.trace import ExportError

__all__ = ["DEFAULT_OPSET", "DTYPES", "ExportError", "export_onnx", "to_onnx"]
