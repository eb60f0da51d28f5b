"""study: a comparative study of Neural ODE solvers on the two-spiral benchmark."""
__version__ = "0.1.0"
