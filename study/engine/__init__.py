"""The compute side: solvers, models, the hand backend's solve, training, instrumentation (torch)."""
