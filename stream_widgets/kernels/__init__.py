"""GPU kernels (Triton). Nothing here is imported by the package: callers import a kernel module lazily."""
