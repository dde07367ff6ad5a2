"""The comparison behind ``gpunn bench`` (shipped in the wheel, imported only by it).

- :mod:`gpunn.bench.models`: the standard models (tiny, A, B), the grid, FLOP counts,
  initial weights and synthetic data;
- :mod:`gpunn.bench.contenders`: gpunn and what it is compared with (PyTorch eager
  and ``torch.compile`` in :mod:`~gpunn.bench.torch_side`, a plain NumPy MLP,
  scikit-learn, the GEMM floor), each a :class:`~gpunn.bench.side.Side` built from
  the same weights and stepped on the same batches;
- :mod:`gpunn.bench.runner`: the grid, the first-step-loss gate, interleaved timing
  (with :mod:`~gpunn.bench.progress`'s bar);
- :mod:`gpunn.bench.report`: the terminal table, JSON and PNG plot, with
  :mod:`~gpunn.bench.machine`'s description of the machine;
- :mod:`gpunn.bench.memory`: peak memory per side.

The pytest-benchmark suites of single ops and steps live in the checkout's ``bench/``
(``pytest bench/``), with the committed raw results. ``import gpunn`` imports none of
this.
"""
