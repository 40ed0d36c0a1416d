"""Byte-shuffle a chunk into byte planes (and back) before entropy coding.

A chunk of ``n`` bytes that holds elements of a numeric dtype with ``itemsize = k > 1`` is cut
into ``m = n // k`` whole elements and an ``n - m*k`` byte tail. The whole elements become ``k``
*planes*: plane ``p`` holds byte ``p`` of every element counted from the **least significant**
byte, so for a big-endian dtype plane 0 is the last byte of each element in memory. The tail, if
any, is one more plane of kind 0 (plain bytes). Planes are concatenated in that order: planes
``0..k-1``, then the tail.

``dtype`` ``None``, itemsize 1 and every non-numeric layout give one plane (the whole chunk) of
kind 0. Empty planes are never produced: a chunk shorter than one element is only a tail, and an
empty chunk has no planes at all.

The layout (lengths and kinds of the planes) follows from ``(raw_length, dtype)`` alone, see
:func:`plane_layout`, so a decoder needs nothing from the body to know it.
"""

from __future__ import annotations

import numpy as np

from .frequency_model import kind_id

Plane = tuple[np.ndarray, int]
"""One byte plane: ``(uint8 1-D array, start-token kind)``."""

__all__ = [
    "Plane",
    "shuffle_dtype",
    "plane_layout",
    "split_planes",
    "join_planes",
    "shuffle",
    "unshuffle",
]

_NUMERIC = frozenset(
    [("u", 1), ("i", 1), ("u", 2), ("i", 2), ("u", 4), ("i", 4), ("u", 8), ("i", 8)]
    + [("f", 2), ("f", 4), ("f", 8)]
)


def shuffle_dtype(dtype: np.dtype | str | None) -> np.dtype | None:
    """The numeric dtype whose planes are coded for data of ``dtype``, or ``None`` for bytes.

    Integers of 1, 2, 4 and 8 bytes and floats of 2, 4 and 8 bytes keep their dtype (and byte
    order; 1-byte integers are one plane of kind 0 all the same). Complex numbers are shuffled as
    their float components, datetimes and timedeltas as int64. Everything else (bool, strings,
    structured, object, ...) is plain bytes (``None``).
    """
    if dtype is None:
        return None
    dt = np.dtype(dtype)
    if dt.fields is not None or dt.subdtype is not None:
        return None
    kind, size = dt.kind, dt.itemsize
    if kind == "c" and size in (8, 16):
        return np.dtype(f"{dt.str[0]}f{size // 2}")
    if kind in "mM" and size == 8:
        return np.dtype(f"{dt.str[0]}i8")
    if (kind, size) in _NUMERIC:
        return dt
    return None


def plane_itemsize(dtype: np.dtype | str | None) -> int:
    """Bytes per element of the shuffle dtype of ``dtype`` (1 for plain bytes): one element is
    one byte of each plane, so a row of ``n`` such elements is ``n`` bytes of a plane."""
    sdt = shuffle_dtype(dtype)
    return 1 if sdt is None else sdt.itemsize


def _is_big_endian(dt: np.dtype) -> bool:
    return dt.byteorder == ">" or (dt.byteorder == "=" and np.little_endian is False)


def plane_layout(raw_length: int, dtype: np.dtype | str | None) -> list[tuple[int, int]]:
    """``[(plane_length, kind), ...]`` of a chunk of ``raw_length`` bytes of ``dtype``."""
    if raw_length < 0:
        raise ValueError("raw_length must be non-negative")
    dt = shuffle_dtype(dtype)
    if dt is None or dt.itemsize == 1:
        return [(raw_length, 0)] if raw_length else []
    k = dt.itemsize
    m, tail = divmod(raw_length, k)
    layout = [(m, kind_id(dt.kind, k, p)) for p in range(k)] if m else []
    if tail:
        layout.append((tail, 0))
    return layout


def split_planes(data: np.ndarray, dtype: np.dtype | str | None) -> list[Plane]:
    """Cut the raw bytes ``data`` (uint8, 1-D) into byte planes (see the module docstring).

    The planes are fresh contiguous arrays; ``data`` is not modified.
    """
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 1:
        raise TypeError("data must be a 1-D uint8 array")
    dt = shuffle_dtype(dtype)
    n = data.shape[0]
    if dt is None or dt.itemsize == 1:
        return [(np.ascontiguousarray(data), 0)] if n else []
    k = dt.itemsize
    m, tail = divmod(n, k)
    planes: list[Plane] = []
    if m:
        elems = data[: m * k].reshape(m, k)
        big = _is_big_endian(dt)
        for p in range(k):
            col = k - 1 - p if big else p
            planes.append((np.ascontiguousarray(elems[:, col]), kind_id(dt.kind, k, p)))
    if tail:
        planes.append((np.ascontiguousarray(data[m * k :]), 0))
    return planes


def join_planes(
    planes: list[np.ndarray] | list[Plane], raw_length: int, dtype: np.dtype | str | None
) -> np.ndarray:
    """Inverse of :func:`split_planes`: the raw bytes as a fresh uint8 1-D array.

    ``planes`` may be bare arrays or ``(array, kind)`` pairs; their lengths must match
    :func:`plane_layout` of ``(raw_length, dtype)`` (``ValueError`` otherwise).
    """
    arrays = [p[0] if isinstance(p, tuple) else p for p in planes]
    layout = plane_layout(raw_length, dtype)
    if len(arrays) != len(layout) or any(
        np.asarray(a).shape != (length,) for a, (length, _) in zip(arrays, layout)
    ):
        raise ValueError(
            f"plane lengths {[np.asarray(a).shape for a in arrays]} do not match the layout "
            f"{[length for length, _ in layout]} of {raw_length} bytes of dtype {dtype}"
        )
    out = np.empty(raw_length, dtype=np.uint8)
    dt = shuffle_dtype(dtype)
    if dt is None or dt.itemsize == 1:
        if raw_length:
            out[:] = arrays[0]
        return out
    k = dt.itemsize
    m, tail = divmod(raw_length, k)
    if m:
        elems = out[: m * k].reshape(m, k)
        big = _is_big_endian(dt)
        for p in range(k):
            elems[:, k - 1 - p if big else p] = arrays[p]
    if tail:
        out[m * k :] = arrays[-1]
    return out


def shuffle(data: np.ndarray, dtype: np.dtype | str | None) -> np.ndarray:
    """The planes of ``data`` concatenated in plane order (the zstd fallback codes this)."""
    planes = split_planes(data, dtype)
    if len(planes) == 1:
        return planes[0][0]
    if not planes:
        return np.zeros(0, dtype=np.uint8)
    return np.concatenate([p for p, _ in planes])


def unshuffle(buf: np.ndarray, raw_length: int, dtype: np.dtype | str | None) -> np.ndarray:
    """Inverse of :func:`shuffle`: ``buf`` (``raw_length`` bytes of concatenated planes)."""
    buf = np.frombuffer(buf, dtype=np.uint8) if not isinstance(buf, np.ndarray) else buf
    if buf.shape != (raw_length,):
        raise ValueError(f"expected {raw_length} shuffled bytes, got {buf.shape}")
    planes, pos = [], 0
    for length, _ in plane_layout(raw_length, dtype):
        planes.append(buf[pos : pos + length])
        pos += length
    return join_planes(planes, raw_length, dtype)
