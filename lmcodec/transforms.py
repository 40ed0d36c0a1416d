"""Element transforms applied before the byte shuffle in mode ``lm_mix`` (docs/format.md §4.4).

A transform maps the chunk's whole elements to residuals of the same size, on the *unsigned
integer view* of each element's bits (``uintN`` in the element's byte order, ``N`` = 8 x the
itemsize of the shuffle dtype; plain bytes are ``uint8`` elements), with wrap-around (mod
``2**N``) arithmetic, so every transform is a bijection and floats are transformed through their
bit patterns. Tail bytes (a partial element at the end of a chunk) are left as they are.

=========  =========  ================================================================
id         name       residual ``y`` of element ``i`` (``x`` = the elements, ``r`` = row length)
=========  =========  ================================================================
0          none       ``y[i] = x[i]``
1          delta      ``y[0] = x[0]``, ``y[i] = x[i] - x[i-1]``
2          up         ``y[i] = x[i]`` for ``i < r``, ``y[i] = x[i] - x[i-r]`` (needs ``r >= 1``)
3          delta_zz   ``zz(y)`` with ``y`` of delta
4          up_zz      ``zz(y)`` with ``y`` of up (needs ``r >= 1``)
=========  =========  ================================================================

``r`` is the chunk's record length (elements per row), the same number the mixer uses.
``zz`` (zigzag, format version 3 and later) maps a difference that is small in two's complement to a small
unsigned number, ``zz(d) = (2d mod 2**N) XOR (all ones if the top bit of d is set, else 0)``:
0, -1, 1, -2, ... become 0, 1, 2, 3, ... (inverse ``d = (z >> 1) XOR (all ones if z is odd)``),
so the high byte planes of small differences are zero whatever their sign, where plain deltas
make them 0x00 or 0xFF with the sign (about one bit per byte on noisy signals).

Which layout the encoder takes is a policy, not part of the format: :func:`choose_coding` tries
the transforms on the byte-shuffled elements and, for multi-byte elements, the plain bytes in
memory order (no shuffle, no transform: the chunk header then records no dtype), and keeps the
candidate LZMA2 (preset 9, 64 KiB dictionary) codes smallest (on a sample of a chunk over 256 KiB:
:func:`proxy_sample`). Among transforms 0-2 this proxy picked
within about 0.01 bits/byte of the best choice (benchmarks/transform_eval.py, mixer version 1); plain bytes win on
float data whose byte planes are nearly random one by one but not together (measured in
docs/benchmarks.md). Float32/float64 chunks of short decimals also offer both layouts of their
decimal integers (:mod:`lmcodec.decimals`, format version 5), which then take the transforms.
"""

from __future__ import annotations

import enum
import lzma
import os
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from .decimals import DecimalStep, find_step, pack_step, to_integers
from .preprocess import shuffle, shuffle_dtype

__all__ = ["Transform", "Coding", "apply_transform", "invert_transform", "choose_transform", "choose_coding"]


class Transform(enum.IntEnum):
    NONE = 0
    DELTA = 1
    UP = 2
    DELTA_ZZ = 3
    UP_ZZ = 4

    @property
    def base(self) -> "Transform":
        """The difference the transform takes (``NONE``, ``DELTA`` or ``UP``)."""
        return {Transform.DELTA_ZZ: Transform.DELTA, Transform.UP_ZZ: Transform.UP}.get(self, self)

    @property
    def zigzag(self) -> bool:
        return self in (Transform.DELTA_ZZ, Transform.UP_ZZ)


_PROXY_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9, "dict_size": 1 << 16}]
_MIN_CHOICE_BYTES = 256
"""Chunks smaller than this are not worth trying transforms on (always ``none``, shuffled)."""
_PLAIN_MARGIN = 0.95
"""Plain bytes are taken only when their proxy size is below this fraction of the best shuffled
candidate's: on the 39 validation samples of the float32 kind (each at most 64 KiB, coded both
ways by LMCodec), near ties (proxy within 5 %) were mostly won by the shuffled layout
(2.607 bits/byte without the margin, 2.572 with it, 2.743 always shuffled); float64 (1114
samples) 2.388 vs 2.389."""
_PARALLEL_PROXY_BYTES = 64 << 10
"""Proxy sizes are computed on several threads only when the candidates hold at least this many
bytes in all."""
_SAMPLE_WINDOWS = 4
_SAMPLE_WINDOW_BYTES = 64 << 10
"""Chunks larger than ``_SAMPLE_WINDOWS * _SAMPLE_WINDOW_BYTES`` (256 KiB) are judged on that many
evenly spaced windows of this size (the proxy's dictionary size): on the 24 corpus validation
chunks over 256 KiB the choice took 3.0 instead of 9.6 CPU-seconds and picked the same layout for
23 (6354130's message has the 24th)."""


class Coding(NamedTuple):
    """The ``lm_mix`` layout of one chunk.

    ``dtype``: the shuffle dtype (``None``: the bytes in memory order, one plane; with a decimal
    step the integer dtype of the floats' size); ``transform``: the element transform on that
    dtype's elements; ``record``: the mixer's record length in bytes of one plane per row (0:
    unknown, the mixer detects it); ``decimal``: the decimal step (:mod:`lmcodec.decimals`),
    whose integers the transform then applies to, or None.
    """

    dtype: np.dtype | None
    transform: Transform
    record: int
    decimal: DecimalStep | None = None


def _elements(data: np.ndarray, dtype) -> tuple[np.ndarray, int]:
    """``(unsigned element view, number of element bytes)`` of the uint8 array ``data``."""
    dt = shuffle_dtype(dtype)
    k = 1 if dt is None else dt.itemsize
    whole = data.shape[0] // k * k
    order = ">" if dt is not None and k > 1 and dt.byteorder == ">" else "<"
    udt = np.dtype(f"{order}u{k}") if k > 1 else np.dtype(np.uint8)
    return data[:whole].view(udt), whole


def _sign_mask(y: np.ndarray) -> np.ndarray:
    """All ones where the top bit of the unsigned ``y`` is set, else 0 (same dtype)."""
    return np.uint8(0) - (y >> np.uint8(8 * y.itemsize - 1)).astype(y.dtype)


def apply_transform(data: np.ndarray, dtype, transform: Transform, record: int) -> np.ndarray:
    """The transformed chunk: a fresh uint8 1-D array of the same length as ``data``."""
    transform = Transform(transform)
    out = np.array(data, dtype=np.uint8, copy=True)
    x, _ = _elements(np.asarray(data, dtype=np.uint8), dtype)
    y, _ = _elements(out, dtype)
    if transform.base == Transform.DELTA and len(x) > 1:
        y[1:] = x[1:] - x[:-1]  # unsigned: wraps
    elif transform.base == Transform.UP:
        if record < 1:
            raise ValueError(f"transform {transform.name.lower()!r} needs a record length >= 1")
        if len(x) > record:
            y[record:] = x[record:] - x[:-record]
    if transform.zigzag:
        y[:] = (y << np.uint8(1)) ^ _sign_mask(y)
    return out


def invert_transform(data: np.ndarray, dtype, transform: Transform, record: int) -> np.ndarray:
    """Inverse of :func:`apply_transform` (``data`` is modified in place and returned)."""
    transform = Transform(transform)
    y, _ = _elements(data, dtype)
    if transform.zigzag:
        y[:] = (y >> np.uint8(1)) ^ (np.uint8(0) - (y & np.uint8(1)).astype(y.dtype))
        transform = transform.base
    if transform == Transform.DELTA and len(y) > 1:
        y[:] = np.cumsum(y, dtype=np.uint64).astype(y.dtype)  # sums mod 2**64, then mod 2**N
    elif transform == Transform.UP and len(y) > record:
        rows = -(-len(y) // record)
        grid = np.zeros(rows * record, dtype=np.uint64)
        grid[: len(y)] = y
        y[:] = np.cumsum(grid.reshape(rows, record), axis=0, dtype=np.uint64).reshape(-1)[: len(y)].astype(y.dtype)
    return data


def candidates(n_elements: int, record: int, integers: bool) -> list[Transform]:
    """Transforms worth trying for a chunk of ``n_elements`` whole elements; the zigzag ones
    only for ``integers`` of two or more bytes, whose high byte planes they clear (where the
    proxy liked them and the model did not: float bit patterns, 1.46 -> 1.68 bits/byte on the
    float32 kind's 1 MiB chunks; 8-bit samples, 2.23 -> 2.33 on the paper's audio)."""
    out = [Transform.NONE, Transform.DELTA] + ([Transform.DELTA_ZZ] if integers else [])
    if 1 <= record < n_elements:
        out += [Transform.UP] + ([Transform.UP_ZZ] if integers else [])
    return out


def _proxy_sizes(blobs: list[np.ndarray]) -> list[int]:
    """Bytes LZMA2 (preset 9, 64 KiB dictionary, raw) codes each uint8 array of ``blobs`` to,
    computed concurrently on up to one thread per core (``lzma`` releases the GIL) when they are
    large enough for that to pay (measured: slower than one thread for 512-byte chunks)."""

    def size(blob: np.ndarray) -> int:
        return len(lzma.compress(blob.tobytes(), format=lzma.FORMAT_RAW, filters=_PROXY_FILTERS))

    workers = min(len(blobs), os.cpu_count() or 1)
    if workers < 2 or sum(b.nbytes for b in blobs) < _PARALLEL_PROXY_BYTES:
        return [size(b) for b in blobs]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(size, blobs))


def proxy_sample(data: np.ndarray, itemsize: int) -> np.ndarray:
    """The bytes the proxy judges ``data`` (uint8) by: all of it up to ``_SAMPLE_WINDOWS *
    _SAMPLE_WINDOW_BYTES`` bytes, else that many windows of ``_SAMPLE_WINDOW_BYTES`` (a multiple
    of ``itemsize``) spread evenly from the first to the last byte, each starting on an element
    boundary, concatenated. A transform of the sample equals the transform of each window within
    it except at the first element (delta) or row (up) of each window."""
    n = data.shape[0]
    if n <= _SAMPLE_WINDOWS * _SAMPLE_WINDOW_BYTES:
        return data
    width = _SAMPLE_WINDOW_BYTES // itemsize * itemsize
    last = (n - width) // itemsize
    starts = [k * last // (_SAMPLE_WINDOWS - 1) * itemsize for k in range(_SAMPLE_WINDOWS)]
    return np.concatenate([data[a : a + width] for a in starts])


def _shuffled_blobs(data: np.ndarray, dtype, record: int,
                    allowed: frozenset[int] | None) -> tuple[list[Transform], list[np.ndarray]]:
    """The candidate transforms for ``data`` and the proxy's input for each: the shuffled
    residuals of :func:`proxy_sample` (``allowed``: transform ids to keep to, None: all)."""
    dt = shuffle_dtype(dtype)
    data = proxy_sample(data, 1 if dt is None else dt.itemsize)
    n = _elements(data, dtype)[0].shape[0]
    transforms = [t for t in candidates(n, record, dt is not None and dt.kind in "iu" and dt.itemsize > 1)
                  if allowed is None or t in allowed]
    return transforms, [shuffle(apply_transform(data, dtype, t, record), dtype) for t in transforms]


def choose_transform(data: np.ndarray, dtype, record: int) -> Transform:
    """Encoder policy for shuffled elements: the candidate whose shuffled residuals LZMA2
    compresses smallest (ties: the lower id); ``none`` for chunks under 256 bytes. Chunks over
    256 KiB are judged on a sample (:func:`proxy_sample`)."""
    if data.shape[0] < _MIN_CHOICE_BYTES:
        return Transform.NONE
    transforms, blobs = _shuffled_blobs(data, dtype, record, None)
    return transforms[int(np.argmin(_proxy_sizes(blobs)))]


def _plain_record(record: int, itemsize: int, max_record: int) -> int:
    """Bytes per row of the plain layout for ``record`` elements of ``itemsize`` bytes per row."""
    plain = record * itemsize
    return plain if plain <= max_record else 0


def _seen_share(data: np.ndarray, itemsize: int) -> float:
    """The share of ``data`` the proxies judge (1 up to 256 KiB, see :func:`proxy_sample`)."""
    return proxy_sample(data, itemsize).shape[0] / data.shape[0]


def choose_coding(data: np.ndarray, dtype, record: int, max_record: int,
                  allowed: frozenset[int] | None = None) -> Coding:
    """Encoder policy for a whole ``lm_mix`` chunk, by LZMA2 proxy sizes: the shuffled residuals
    of each transform (ties: the lower id) or, for multi-byte elements, the plain bytes (taken
    only below :data:`_PLAIN_MARGIN` of the best shuffled size). A float32/float64 chunk with a
    decimal exponent (:func:`lmcodec.decimals.find_step`) offers the same two layouts of its
    decimal integers as well, each charged the step section's bytes. ``record`` counts elements
    per row; the plain layout's record is that times the itemsize, or 0 (unknown) when that
    exceeds ``max_record``. ``allowed``: the transform ids to choose from without a decimal step
    (None: all), e.g. the ones the body's mixer version may carry (``mixcoding.MIXER_TRANSFORMS``);
    with one the chunk is format version 5, whose bodies carry every transform."""
    dt = shuffle_dtype(dtype)
    if data.shape[0] < _MIN_CHOICE_BYTES:
        return Coding(dt, Transform.NONE, record)
    itemsize = 1 if dt is None else dt.itemsize
    try_plain = itemsize > 1
    sources: list[tuple[np.ndarray, np.dtype | None, DecimalStep | None]] = [(data, dt, None)]
    exponent = find_step(data, dt)
    if exponent is not None:
        integers, step = to_integers(data, dt, exponent)
        sources.append((integers, step.integers, step))
    codings: list[Coding] = []
    is_plain: list[bool] = []
    charges: list[float] = []  # bytes the proxy does not see: a decimal step's section
    blobs: list[np.ndarray] = []
    for elements, source_dt, step in sources:
        transforms, shuffled = _shuffled_blobs(elements, source_dt, record, allowed if step is None else None)
        codings += [Coding(source_dt, t, record, step) for t in transforms]
        blobs += shuffled
        if try_plain:
            codings.append(Coding(None, Transform.NONE, _plain_record(record, itemsize, max_record), step))
            blobs.append(proxy_sample(elements, itemsize))
        is_plain += [False] * len(transforms) + [True] * try_plain
        charges += [0.0 if step is None else _seen_share(data, itemsize) * len(pack_step(step))] * (
            len(transforms) + try_plain)
    sizes = [size + charge for size, charge in zip(_proxy_sizes(blobs), charges)]
    best = min((i for i, p in enumerate(is_plain) if not p), key=sizes.__getitem__)
    if try_plain:
        plain = min((i for i, p in enumerate(is_plain) if p), key=sizes.__getitem__)
        if sizes[plain] < _PLAIN_MARGIN * sizes[best]:
            return codings[plain]
    return codings[best]
