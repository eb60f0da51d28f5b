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


def test_a_failed_png_leaves_the_previous_pdf_and_png(tmp_path, monkeypatch):
    """A full disk while the PNG is written: the PDF, written first, must not have replaced its previous file
    (a new PDF beside an old PNG); both previous files stay and no temporary file is left."""
    import errno
    import os

    import matplotlib.pyplot as plt

    (tmp_path / "fig.pdf").write_bytes(b"old pdf")
    (tmp_path / "fig.png").write_bytes(b"old png")
    real_fsync = os.fsync

    def full_for_the_png(fd):
        if ".png." in os.readlink(f"/proc/self/fd/{fd}"):  # the PNG's temporary file
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_for_the_png)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    try:
        style.save(fig, tmp_path, "fig")
    except OSError as exc:
        assert exc.errno == errno.ENOSPC and exc.filename == str(tmp_path / "fig.png")
    else:
        raise AssertionError("the PNG's write did not fail")
    assert (tmp_path / "fig.pdf").read_bytes() == b"old pdf" and (tmp_path / "fig.png").read_bytes() == b"old png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.pdf", "fig.png"]
    monkeypatch.setattr(os, "fsync", real_fsync)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    written = style.save(fig, tmp_path, "fig")  # with room on the disk: both replaced
    assert written == [tmp_path / "fig.pdf", tmp_path / "fig.png"]
    assert (tmp_path / "fig.pdf").read_bytes()[:5] == b"%PDF-" and (tmp_path / "fig.png").read_bytes()[:4] == b"\x89PNG"
