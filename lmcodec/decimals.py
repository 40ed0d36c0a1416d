"""The decimal step of mode ``lm_mix`` (format version 5, docs/format.md §4.4): float elements
that are short decimals are coded as the integers they become when scaled by a power of ten.

Tables and measurements are mostly written with a few decimal digits (a price 464.96, a rate
5.377498, an elevation 1234.0), yet the bit pattern of the float nearest 464.96 spreads those
digits over every mantissa bit. The step replaces each element ``x`` of a float32 or float64
chunk by the integer ``n`` with::

    x == fl(fl(n) / 10**e)      IEEE-754 division in the element's precision, rounded to nearest
                                even; |n| <= 2**SIGNIFICAND_BITS, so fl(n) == n exactly

for one exponent ``e`` (``0 <= e <= MAX_EXPONENT``, so ``10**e`` is exact too) per chunk. The
integers are stored as the signed integers of the same size (float32 -> int32, float64 -> int64,
same byte order), and the chunk header's dtype describes *them*: the integer dtype (element
transforms and byte planes then treat the chunk as an integer chunk, with integer start-token
kinds) or plain bytes (the integers in memory order). An element with no such ``n`` (NaN, an infinity, -0.0, more than
``e`` decimals, too large) is an *exception*: its bits are listed in the body, and its integer is
ignored by the decoder (the encoder writes the previous regular element's integer, which keeps
differences small).

Decoding is one correctly rounded IEEE division of exact operands per element, so it gives the
same bits on any IEEE-754 machine, whatever the vector width or thread count.

Step section (in the body, docs/format.md §4.4)::

    u8          dtype code of the decoded floats (format.DTYPE_CODES: 10 float32, 11 float64)
    u8          flags, as in the header: bit 0 = big-endian; bits 1..7 zero
    u8          exponent e, 0 <= e <= MAX_EXPONENT[itemsize]
    varint      x, the number of exceptions, <= the chunk's whole elements
    x varints   positions as gaps: the first position, then each position minus the previous
                minus 1 (positions strictly increase and are < the number of whole elements)
    x * k       the exceptions' element bytes (k = itemsize), in the chunk's byte order
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import CorruptChunkError
from .format import code_to_dtype, dtype_to_code
from .lmcoding import encode_varint, read_varint

__all__ = ["MAX_EXPONENT", "SIGNIFICAND_BITS", "DecimalStep", "integer_dtype", "find_step", "to_integers",
           "from_integers", "pack_step", "read_step", "read_step_dtype"]

MAX_EXPONENT = {4: 10, 8: 22}
"""Largest decimal exponent by itemsize: ``10**e`` is exact in float32 up to e = 10 (5**10 < 2**24)
and in float64 up to e = 22 (5**22 < 2**53)."""
SIGNIFICAND_BITS = {4: 24, 8: 53}
"""Bound on the integers by itemsize: ``|n| <= 2**bits``, where every integer converts exactly."""
MAX_EXCEPTION_SHARE = 0.25
"""Encoder policy: the step is tried only when at most this share of the elements are exceptions."""
_SAMPLE_BLOCKS, _SAMPLE_BLOCK = 4, 1024
"""Encoder policy: the exponent is chosen on at most this many evenly spaced blocks of this many
consecutive elements (blocks, not a stride, so that every column of a table is seen)."""


@dataclass(frozen=True)
class DecimalStep:
    """One chunk's decimal step: the decoded floats' ``dtype`` (float32 or float64, with its byte
    order), the exponent ``e`` and the exceptions: ``positions`` (int64, strictly increasing
    element indices) and ``values`` (their element bytes, itemsize each, concatenated)."""

    dtype: np.dtype
    exponent: int
    positions: np.ndarray
    values: bytes

    @property
    def integers(self) -> np.dtype:
        """The dtype of the coded integers (:func:`integer_dtype`)."""
        return integer_dtype(self.dtype)


def integer_dtype(dtype: np.dtype) -> np.dtype:
    """The signed integer dtype of the float dtype's size and byte order (``<f8`` -> ``<i8``)."""
    return np.dtype(f"{dtype.byteorder if dtype.byteorder in '<>' else '='}i{dtype.itemsize}")


def _eligible(dtype: np.dtype | None) -> bool:
    return dtype is not None and dtype.kind == "f" and dtype.itemsize in MAX_EXPONENT


def _scaled(x: np.ndarray, exponent: int) -> tuple[np.ndarray, np.ndarray]:
    """``(integers, regular)`` of the native float array ``x`` at ``exponent``: each element's
    candidate integer (rint of the exact-ish product; 0 where none) and whether it decodes back
    to exactly ``x``'s bits."""
    k = x.dtype.itemsize
    with np.errstate(over="ignore", invalid="ignore"):
        n = np.rint(x.astype(np.float64) * 10.0**exponent)
        valid = np.abs(n) <= float(1 << SIGNIFICAND_BITS[k])  # False for NaN and infinities
    n = np.where(valid, n, 0.0).astype(f"i{k}")
    back = n.astype(x.dtype) / x.dtype.type(10.0**exponent)
    regular = valid & (back.view(f"u{k}") == x.view(f"u{k}"))
    return n, regular


def _native_floats(data: np.ndarray, dtype: np.dtype) -> np.ndarray:
    whole = data.shape[0] // dtype.itemsize * dtype.itemsize
    return data[:whole].view(dtype).astype(dtype.newbyteorder("="))


def find_step(data: np.ndarray, dtype: np.dtype | None) -> int | None:
    """Encoder policy: the exponent for the uint8 chunk ``data`` of ``dtype``, or None when the
    step does not apply (not float32/float64) or would leave more than
    :data:`MAX_EXCEPTION_SHARE` of the elements as exceptions. The exponent with the fewest
    exceptions on a sample of the elements wins (ties: the smallest)."""
    if not _eligible(dtype):
        return None
    x = _native_floats(data, dtype)
    if x.shape[0] == 0:
        return None
    n, width = x.shape[0], _SAMPLE_BLOCK
    sample = x if n <= _SAMPLE_BLOCKS * width else np.concatenate(
        [x[k * (n - width) // (_SAMPLE_BLOCKS - 1) :][:width] for k in range(_SAMPLE_BLOCKS)])
    best, best_count = None, 0
    for e in range(MAX_EXPONENT[dtype.itemsize] + 1):
        count = int(_scaled(sample, e)[1].sum())
        if count > best_count:
            best, best_count = e, count
        if count == sample.shape[0]:
            break
    if best is None or best_count < (1 - MAX_EXCEPTION_SHARE) * sample.shape[0]:
        return None
    return best


def to_integers(data: np.ndarray, dtype: np.dtype, exponent: int) -> tuple[np.ndarray, DecimalStep]:
    """The chunk ``data`` (uint8, float ``dtype``) with its whole elements replaced by their
    integers at ``exponent`` (a fresh uint8 array; tail bytes kept), and the step with its
    exceptions."""
    k = dtype.itemsize
    x = _native_floats(data, dtype)
    n, regular = _scaled(x, exponent)
    last = np.where(regular, np.arange(x.shape[0]), -1)
    np.maximum.accumulate(last, out=last)
    n = np.where(last >= 0, n[np.maximum(last, 0)], 0).astype(n.dtype)  # exceptions: previous n
    out = np.array(data, dtype=np.uint8, copy=True)
    out[: x.shape[0] * k].view(integer_dtype(dtype))[:] = n
    positions = np.flatnonzero(~regular).astype(np.int64)
    values = data[: x.shape[0] * k].reshape(-1, k)[positions].tobytes()
    return out, DecimalStep(dtype, exponent, positions, values)


def from_integers(data: np.ndarray, step: DecimalStep) -> np.ndarray:
    """Invert the step in place: ``data`` (uint8) holds the integers (``step.integers``);
    afterwards it holds the floats. Raises :class:`CorruptChunkError` when a regular element's
    integer is outside ``+-2**SIGNIFICAND_BITS``."""
    k = step.dtype.itemsize
    whole = data.shape[0] // k * k
    n = data[:whole].view(step.integers).astype(np.dtype(f"i{k}"))
    regular = np.ones(n.shape[0], dtype=bool)
    regular[step.positions] = False
    bound = 1 << SIGNIFICAND_BITS[k]
    if np.any(((n < -bound) | (n > bound)) & regular):
        raise CorruptChunkError(f"decimal integer outside +-2**{SIGNIFICAND_BITS[k]}")
    ft = np.dtype(f"f{k}")
    data[:whole].view(step.dtype)[:] = n.astype(ft) / ft.type(10.0**step.exponent)
    data[:whole].reshape(-1, k)[step.positions] = np.frombuffer(step.values, np.uint8).reshape(-1, k)
    return data


def pack_step(step: DecimalStep) -> bytes:
    """The step section's bytes (module docstring)."""
    code, flags = dtype_to_code(step.dtype)
    out = bytearray([code, flags, step.exponent]) + encode_varint(len(step.positions))
    previous = -1
    for p in step.positions.tolist():
        out += encode_varint(p - previous - 1)
        previous = p
    return bytes(out) + step.values


def read_step_dtype(view: memoryview, pos: int) -> np.dtype:
    """The float dtype named by the first two bytes (code, flags) of a step section at ``pos``;
    raises :class:`CorruptChunkError` for bytes :func:`read_step` would reject."""
    if len(view) - pos < 2:
        raise CorruptChunkError("body too short for its decimal step")
    code, flags = view[pos], view[pos + 1]
    if flags & ~1:
        raise CorruptChunkError(f"reserved decimal step flags {flags:#x} set")
    dtype = code_to_dtype(code, flags)
    if not _eligible(dtype):
        raise CorruptChunkError(f"decimal step on dtype code {code}; it needs float32 or float64")
    return dtype


def read_step(view: memoryview, pos: int, raw_length: int) -> tuple[DecimalStep, int]:
    """Parse a step section at ``pos`` of the body ``view`` for a chunk of ``raw_length`` bytes;
    return the step and the position after it. Raises :class:`CorruptChunkError` for a section
    that is truncated or out of bounds (checked before anything sized by it is allocated)."""
    if len(view) - pos < 4:
        raise CorruptChunkError("body too short for its decimal step")
    dtype, exponent = read_step_dtype(view, pos), view[pos + 2]
    if exponent > MAX_EXPONENT[dtype.itemsize]:
        raise CorruptChunkError(f"decimal exponent {exponent} exceeds {MAX_EXPONENT[dtype.itemsize]} for {dtype}")
    k = dtype.itemsize
    n_elements = raw_length // k
    count, pos = read_varint(view, pos + 3, n_elements, "exception count")
    if len(view) - pos < count * (1 + k):
        raise CorruptChunkError(f"body too short for {count} decimal exceptions")
    positions = np.empty(count, dtype=np.int64)
    previous = -1
    for j in range(count):
        gap, pos = read_varint(view, pos, n_elements, "exception position")
        previous += gap + 1
        if previous >= n_elements:
            raise CorruptChunkError(f"exception position {previous} outside {n_elements} elements")
        positions[j] = previous
    if len(view) - pos < count * k:
        raise CorruptChunkError(f"body too short for {count} decimal exceptions")
    values = bytes(view[pos : pos + count * k])
    return DecimalStep(dtype, exponent, positions, values), pos + count * k
