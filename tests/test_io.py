"""Files in and out: the streamed .npz (memory of one batch, atomic), output paths checked before the work."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from difflab.errors import DifflabError
from difflab.io import check_writable, npz_stream


def test_a_streamed_npz_reads_as_np_savez_writes_it(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 3, 4, 5)).astype(np.float32)
    with npz_stream(tmp_path / "s.npz", "samples", x.shape) as write:
        for lo in range(0, 1000, 300):
            write(x[lo:lo + 300])
    np.savez(tmp_path / "ref.npz", samples=x)
    with np.load(tmp_path / "s.npz") as a, np.load(tmp_path / "ref.npz") as b:
        assert a.files == b.files == ["samples"]
        assert a["samples"].dtype == np.float32 and np.array_equal(a["samples"], b["samples"])


def test_streaming_holds_one_batch_not_the_whole_array(tmp_path):
    """200 batches of 1 MB: traced peak memory stays near one batch (a few MB), not the 200 MB written."""
    batch = np.ones((256, 1024), np.float32)  # 1 MiB
    tracemalloc.start()
    try:
        with npz_stream(tmp_path / "big.npz", "samples", (200 * 256, 1024)) as write:
            for _ in range(200):
                write(batch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (tmp_path / "big.npz").stat().st_size > 200 * 2**20
    assert peak < 8 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_an_interrupted_or_short_stream_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with npz_stream(tmp_path / "a.npz", "samples", (10, 2)) as write:
            write(np.zeros((5, 2)))
            raise KeyboardInterrupt
    with pytest.raises(DifflabError, match="was given 5 of its 10 rows"):
        with npz_stream(tmp_path / "b.npz", "samples", (10, 2)) as write:
            write(np.zeros((5, 2)))
    with pytest.raises(DifflabError, match="does not continue an array of shape"):
        with npz_stream(tmp_path / "c.npz", "samples", (10, 2)) as write:
            write(np.zeros((5, 3)))
    assert list(tmp_path.iterdir()) == []  # no file, no temporary leftovers


def test_check_writable(tmp_path):
    assert check_writable(tmp_path / "new" / "deeper" / "x.npz") == tmp_path / "new" / "deeper" / "x.npz"
    assert not (tmp_path / "new").exists()  # checked, not created
    (tmp_path / "d").mkdir()
    with pytest.raises(DifflabError, match="is a directory"):
        check_writable(tmp_path / "d")
    (tmp_path / "f").write_text("x")
    assert check_writable(tmp_path / "f") == tmp_path / "f"  # an existing file may be replaced
    with pytest.raises(DifflabError, match="is a file, not a directory"):
        check_writable(tmp_path / "f", directory=True)
    with pytest.raises(DifflabError, match="is not a writable directory"):
        check_writable(tmp_path / "f" / "x.npz")  # its parent is a file
    with pytest.raises(DifflabError, match="is not a writable directory"):
        check_writable("/proc/x.npz")  # a pseudo file system: no file can be made there, even by root
