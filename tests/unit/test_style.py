"""The figures' log scale is the same on every CPU: its logarithm is the C library's scalar one, not numpy's
SIMD kernels (whose AVX-512 versions round differently in the last bit and moved fig17's and fig19's PDF path
coordinates across their 6-digit rounding)."""
import math

import numpy as np

from study.report import style


def test_log_axis_transform_is_the_scalar_logarithm():
    import matplotlib.pyplot as plt

    style.apply()
    fig, ax = plt.subplots()
    try:
        ax.set_xscale("log")
        rng = np.random.default_rng(0)
        values = np.concatenate([10 ** rng.uniform(-12, 12, 20000), rng.uniform(0.5, 2000, 20000)])
        got = ax.xaxis.get_transform().transform_non_affine(values)
        want = np.array([math.log10(v) for v in values])
        assert np.array_equal(got, want)
        edge = ax.xaxis.get_transform().transform_non_affine(np.array([0.0, -1.0, np.inf, np.nan]))
        assert edge[0] == -1000 and edge[2] == np.inf and np.isnan(edge[3])  # matplotlib clips <= 0 to -1000
    finally:
        plt.close(fig)
