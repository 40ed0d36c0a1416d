"""``lmcodec demo``: real data into a Zarr store with LMCodec, read back, verified, vs zstd.

The data is the digital elevation model that matplotlib ships
(``mpl-data/sample_data/jacksboro_fault_dem.npz``, int16 metres, 344 x 403), restricted to the
rows the corpus puts in its *validation* split (the last ``ceil(344 / 8) = 43`` rows, see
:mod:`lmcodec.corpus`), so the shipped models never trained on them: 34,658 bytes, small enough
for the current CPU runtime to finish in well under a minute.

The store (Zarr format 2, written with zarr-python 3) holds two arrays with the same chunks:
``lmcodec`` (compressor ``LMCodec``) and ``zstd`` (``numcodecs.Zstd(level=19)``); both are read
back and compared with the original, and the stored chunk bytes of each are printed.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DemoData", "load_demo_data", "run_demo", "DEMO_CHUNK_ROWS"]

DEMO_FILE = "jacksboro_fault_dem.npz"
DEMO_CHUNK_ROWS = 22
"""Rows per Zarr chunk (two chunks of 22 x 403 int16, 17.7 KB each)."""


@dataclass(frozen=True)
class DemoData:
    array: np.ndarray
    description: str


def load_demo_data() -> DemoData:
    """The validation rows of matplotlib's Jacksboro fault DEM (ImportError without matplotlib)."""
    from importlib.metadata import version

    from matplotlib import cbook

    from .corpus import VAL_DENOMINATOR

    path = cbook.get_sample_data(DEMO_FILE, asfileobj=False)
    with np.load(path) as z:
        elevation = np.asarray(z["elevation"])
    n = elevation.shape[0]
    first = n - math.ceil(n / VAL_DENOMINATOR)  # the corpus' validation rows
    rows = np.ascontiguousarray(elevation[first:])
    return DemoData(rows, f"elevation (int16 metres), rows {first}..{n - 1} of {n} of matplotlib "
                          f"{version('matplotlib')}'s sample_data/{DEMO_FILE} (the corpus validation "
                          "rows: the models never trained on them)")


def _chunk_files(array_dir: Path) -> list[Path]:
    return sorted(p for p in array_dir.iterdir() if p.is_file() and not p.name.startswith("."))


def _modes(files: list[Path]) -> str:
    from .format import HEADER_SIZE, parse_header

    counts: dict[str, int] = {}
    for p in files:
        head = p.read_bytes()[:HEADER_SIZE]
        mode = parse_header(head, body_length=p.stat().st_size - HEADER_SIZE).mode.name.lower()
        counts[mode] = counts.get(mode, 0) + 1
    return ", ".join(f"{n} {m}" for m, n in sorted(counts.items()))


def run_demo(store: str | os.PathLike | None = None, model: str | None = None,
             out: Callable[[str], None] = print) -> bool:
    """Write, read back and compare; print a report through ``out``; return whether both arrays
    read back identical. ``store`` None: a temporary directory, deleted afterwards."""
    import zarr
    from numcodecs import Zstd

    from .codec import LMCodec

    data = load_demo_data()
    a = data.array
    lm = LMCodec(model=model, dtype=a.dtype.str)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(store) if store is not None else Path(tmp) / "demo.zarr"
        group = zarr.open_group(str(path), mode="w", zarr_format=2)
        out(f"data:  {a.dtype} {a.shape[0]}x{a.shape[1]} = {a.nbytes:,} bytes: {data.description}")
        out(f"store: {path} (Zarr format 2, chunks {DEMO_CHUNK_ROWS}x{a.shape[1]}, arrays 'lmcodec' and 'zstd')")
        ok = True
        for name, compressor in (("lmcodec", lm), ("zstd", Zstd(level=19))):
            arr = group.create_array(name, shape=a.shape, chunks=(DEMO_CHUNK_ROWS, a.shape[1]),
                                     dtype=a.dtype, compressors=compressor)
            t0 = time.perf_counter()
            arr[...] = a
            t1 = time.perf_counter()
            back = zarr.open_array(str(path / name), mode="r")[...]
            t2 = time.perf_counter()
            same = back.dtype == a.dtype and np.array_equal(back, a)
            ok &= same
            files = _chunk_files(path / name)
            stored = sum(p.stat().st_size for p in files)
            label = f"LMCodec ({lm.model})" if name == "lmcodec" else "zstd -19"
            modes = f"; chunks stored as {_modes(files)}" if name == "lmcodec" else ""
            out(f"{label:>24}: {stored:>8,} bytes = {100 * stored / a.nbytes:5.1f}% of raw "
                f"({8 * stored / a.nbytes:.2f} bits/byte); write {t1 - t0:.1f} s, read {t2 - t1:.1f} s; "
                f"read back {'identical' if same else 'DIFFERENT'}{modes}")
    return ok
