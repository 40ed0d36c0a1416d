"""Helpers shared by the storage integration tests (zarr, HDF5, xarray, dask).

Round trips write with the real ``lm-tiny-v1`` model (fast enough for a few KB) and read back in a
fresh interpreter, which knows nothing of the writer's state. The sample data is smooth with a
little noise, so that the model beats zstd on many chunks (the tests check that some chunks are
LM-coded, so the model really runs in the writers, readers and workers).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lmcodec.format import HEADER_SIZE, Mode, parse_header
from lmcodec.mixcoding import decimal_floats

TINY = "lm-tiny-v1"
DTYPES = ("uint8", "int16", "float32", "float64")
SHAPE = (37, 23)
CHUNKS = (16, 16)
"""3 x 2 chunks; the last chunk row (5 of 16) and column (7 of 16) are partial."""

DOCS = Path(__file__).resolve().parents[1] / "docs"


def sample(dtype: str, shape: tuple[int, int] = SHAPE, seed: int = 0) -> np.ndarray:
    """Deterministic 2-D smooth-plus-noise data of ``dtype``: whole numbers within +-110
    (shifted by 128 for unsigned dtypes)."""
    rng = np.random.default_rng(seed)
    y, x = np.indices(shape)
    base = 100 * np.sin(x / 5.0) * np.cos(y / 7.0) + rng.normal(0, 2, shape)
    if np.dtype(dtype).kind == "u":
        base += 128
    return np.round(base).astype(dtype)


def coded_dtype(chunk: bytes) -> np.dtype | None:
    """The element dtype a chunk was coded as: its header's, or for a chunk with a decimal step
    (whose header holds the integers' dtype) the floats'."""
    h = parse_header(chunk)
    if h.mode == Mode.LM_MIX:
        floats = decimal_floats(chunk[HEADER_SIZE:], h.segment_length, h.version)
        if floats is not None:
            return floats
    return h.dtype


def chunk_modes(chunks: Iterable[bytes]) -> Counter:
    """How many of the encoded ``chunks`` are in each mode (``"RAW"``, ``"ZSTD"``, ``"LM"``, ``"LM_MIX"``)."""
    return Counter(parse_header(c).mode.name for c in chunks)


def run_python(args: list[str], cwd: Path, pythonpath: Iterable[Path] = ()) -> str:
    """Run ``python *args`` in a fresh interpreter; fail the test with its output on error.

    ``pythonpath`` directories are put on ``PYTHONPATH`` (e.g. one with a helper module that
    dask workers must import). Returns stdout.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    res = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    return res.stdout


def run_code(
    code: str, cwd: Path, args: Iterable[str] = (), pythonpath: Iterable[Path] = ()
) -> str:
    """:func:`run_python` for a snippet of code (``sys.argv[1:]`` is ``args``)."""
    return run_python(["-c", code, *args], cwd, pythonpath)


def run_docs_page(name: str, cwd: Path) -> None:
    """Run each ```python block of ``docs/<name>`` as a script of its own, in order, in ``cwd``
    (the blocks are copy-paste examples, so each must stand alone)."""
    blocks = re.findall(r"^```python\n(.*?)^```", (DOCS / name).read_text(), flags=re.S | re.M)
    assert blocks, f"docs/{name} has no python blocks"
    for n, block in enumerate(blocks):
        script = cwd / f"docs_example_{n}.py"
        script.write_text(block)
        run_python([str(script)], cwd)
