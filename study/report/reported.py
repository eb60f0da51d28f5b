"""The numbers the source article reports (its results and memory tables), as plain data.

They are what the study tests, never what it reports as its own results.
"""
ARTICLE = {
    "euler": {"accuracy": 0.894, "params": 18_906, "time_s": 23.6, "nfe": 80_000, "memory_kb": 11.5},
    "rk4": {"accuracy": 0.909, "params": 18_906, "time_s": 91.5, "nfe": 320_000, "memory_kb": 30.2},
    "resnet": {"accuracy": 0.929, "params": 364_236, "time_s": 35.3, "nfe": None, "memory_kb": 6.1},
}
