"""Activation patching: prompt pairs, sites and sweeps, the exact engine and its kernels, metrics, results."""
