"""Compiled backends. ``cpu`` holds Numba CPU kernels; ``cuda`` the GPU ones."""
