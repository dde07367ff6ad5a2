"""A CPU emulator for the CUDA kernels in kernels/ (see emulator.py)."""
