"""study: a comparative study of Neural ODE solvers on four tasks: classification, fitting dynamics, density estimation, real images."""
__version__ = "0.1.0"
