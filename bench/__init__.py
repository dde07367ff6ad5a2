"""gpunn's benchmarks, shipped in the wheel as ``gpunn.bench``.

- :mod:`gpunn.bench.runner` is the comparison behind ``gpunn bench``: the standard
  models (:mod:`gpunn.bench.models`) trained side by side with PyTorch, a plain NumPy
  MLP, scikit-learn and the GEMM floor (:mod:`gpunn.bench.contenders`) on the same
  weights and data, reported as a table, JSON and a plot (:mod:`gpunn.bench.report`).
- ``test_*.py`` are pytest-benchmark suites for the fused ops and whole training steps
  (``pytest bench/``); they are not part of the test suite.
- ``cpu_report.py`` and ``scaling.py`` are the CPU accuracy-and-time report against
  scikit-learn on the digits and the data-parallel scaling run; ``results/`` holds
  committed raw results (not shipped).

Nothing here is imported by ``import gpunn``.
"""
