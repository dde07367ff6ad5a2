"""CUDA C++ sources of gpunn's fused GPU kernels, shipped as package data (``*.cu``,
``*.cuh``) and compiled at run time by CuPy's NVRTC."""
