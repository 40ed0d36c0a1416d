"""The lmcodec chunk format: a fixed 36-byte header followed by a body (docs/format.md).

Header (all integers little-endian)::

    offset size  field
    0      4     magic b"LMCz"
    4      1     format version: the lowest version that defines what the body holds
                 (WRITE_VERSION; lm_mix bodies with mixer version 2 need version 3,
                 with mixer version 3 version 4, with a decimal step version 5)
    5      1     mode: 0 raw, 1 zstd, 2 lm (version 1); 3 lm_mix (version 2)
    6      1     dtype code (DTYPE_CODES: 0 bytes, 1 u1, 2 i1, 3 u2, 4 i2, 5 u4, 6 i4,
                 7 u8, 8 i8, 9 f2, 10 f4, 11 f8)
    7      1     flags: bit 0 = big-endian element byte order; bits 1..7 reserved, zero
    8      4     segment length (modes lm, lm_mix: >= 1; other modes: 0)
    12     8     raw length in bytes
    20     4     CRC32C (Castagnoli) of the raw bytes
    24     8     model id (modes lm, lm_mix; zeros otherwise)
    32     4     CRC32C of header bytes 0..31

:func:`parse_header` validates everything it can before any allocation that depends on the
declared sizes: a chunk that passes it declares a raw length the body can plausibly hold.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

import crc32c as _crc32c
import numpy as np

from .errors import CorruptChunkError, UnsupportedFormatError

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "MAX_RAW_LENGTH",
    "LM_MAX_RATIO",
    "ZSTD_MAX_RATIO",
    "Mode",
    "MODE_VERSION",
    "WRITE_VERSION",
    "Header",
    "DTYPE_CODES",
    "dtype_to_code",
    "code_to_dtype",
    "crc32c",
    "pack_header",
    "parse_header",
    "zstd_compress",
    "zstd_decompress",
]

MAGIC = b"LMCz"
FORMAT_VERSION = 5
"""Newest chunk format version this module reads and writes."""
_STRUCT = struct.Struct("<4sBBBBIQI8s")
HEADER_SIZE = _STRUCT.size + 4  # + header CRC32C
assert HEADER_SIZE == 36

MAX_RAW_LENGTH = 1 << 34
"""Largest raw chunk (16 GiB) a header may declare; larger chunks are refused on both sides."""

LM_MAX_RATIO = 1500
"""Bound on raw bytes per LM body byte (+ ``LM_SLACK``).

The most probable symbol has frequency at most ``2**16 - 255``, so every coded byte costs at least
``log2(65536 / 65281) ~ 0.00563`` bits: at most ~1422 raw bytes per body byte.
"""
LM_SLACK = 16

ZSTD_MAX_RATIO = 1 << 15
"""Bound on raw bytes per zstd body byte: a zstd block holds at most 128 KiB and costs at least
4 bytes (an RLE block)."""

_NO_MODEL = bytes(8)


class Mode(enum.IntEnum):
    RAW = 0
    ZSTD = 1
    LM = 2
    LM_MIX = 3

    @property
    def uses_model(self) -> bool:
        """The body is coded with a model (segment length and model id are set)."""
        return self in (Mode.LM, Mode.LM_MIX)


MODE_VERSION = {Mode.RAW: 1, Mode.ZSTD: 1, Mode.LM: 1, Mode.LM_MIX: 2}
"""Format version that introduced each mode."""
WRITE_VERSION = {Mode.RAW: 1, Mode.ZSTD: 1, Mode.LM: 1, Mode.LM_MIX: 4}
"""Format version each mode is written with by default: the lowest that defines the body the
encoder writes (versions 3 and 4 brought mixer versions 2 and 3 to lm_mix bodies; an lm_mix body
with a decimal step is written as version 5, ``mixcoding.DECIMAL_FORMAT``), so chunks that need
nothing newer stay readable by older decoders."""


# Frozen table: index = code stored in the header. Never reorder, only append (with a version bump).
DTYPE_CODES: tuple[str | None, ...] = (
    None,  # 0: plain bytes / no numeric layout
    "u1",
    "i1",
    "u2",
    "i2",
    "u4",
    "i4",
    "u8",
    "i8",
    "f2",
    "f4",
    "f8",
)
_CODE_OF = {name: code for code, name in enumerate(DTYPE_CODES) if name is not None}
FLAG_BIG_ENDIAN = 0x01
_KNOWN_FLAGS = FLAG_BIG_ENDIAN


def crc32c(data) -> int:
    """CRC32C (Castagnoli) of a bytes-like object, as an unsigned 32-bit int."""
    return _crc32c.crc32c(data) & 0xFFFFFFFF


def dtype_to_code(dtype: np.dtype | str | None) -> tuple[int, int]:
    """``(dtype code, flags)`` of a dtype from the frozen table; anything else is code 0.

    Pass the *shuffle* dtype (:func:`lmcodec.preprocess.shuffle_dtype`), not the array dtype.
    """
    if dtype is None:
        return 0, 0
    dt = np.dtype(dtype)
    code = _CODE_OF.get(f"{dt.kind}{dt.itemsize}") if dt.fields is None else None
    if code is None:
        return 0, 0
    big = dt.itemsize > 1 and dt.str[0] == ">"
    return code, FLAG_BIG_ENDIAN if big else 0


def code_to_dtype(code: int, flags: int = 0) -> np.dtype | None:
    """Inverse of :func:`dtype_to_code`; ``CorruptChunkError`` for an unknown code."""
    if not 0 <= code < len(DTYPE_CODES):
        raise CorruptChunkError(f"unknown dtype code {code} in chunk header")
    name = DTYPE_CODES[code]
    if name is None:
        return None
    return np.dtype(((">" if flags & FLAG_BIG_ENDIAN else "<") if name[1] != "1" else "|") + name)


@dataclass(frozen=True)
class Header:
    """A parsed (or to be packed) chunk header."""

    mode: Mode
    raw_length: int
    raw_crc32c: int
    dtype: np.dtype | None = None
    """Shuffle dtype, ``None`` for plain bytes."""
    segment_length: int = 0
    model_id: bytes = _NO_MODEL
    version: int | None = None
    """Format version; ``None`` means the version the mode is written with (:data:`WRITE_VERSION`)."""

    def __post_init__(self):
        object.__setattr__(self, "mode", Mode(self.mode))
        if self.version is None:
            object.__setattr__(self, "version", WRITE_VERSION[self.mode])
        if self.dtype is not None:
            object.__setattr__(self, "dtype", np.dtype(self.dtype))


def pack_header(header: Header) -> bytes:
    """The 36 header bytes of ``header`` (``ValueError`` if it violates the format)."""
    if not MODE_VERSION[header.mode] <= header.version <= FORMAT_VERSION:
        raise ValueError(
            f"mode {header.mode.name} exists in format versions {MODE_VERSION[header.mode]}..{FORMAT_VERSION}"
        )
    code, flags = dtype_to_code(header.dtype)
    if code == 0 and header.dtype is not None:
        raise ValueError(f"dtype {header.dtype} has no code in the header's dtype table")
    if not 0 <= header.raw_length <= MAX_RAW_LENGTH:
        raise ValueError(f"raw length {header.raw_length} outside 0..{MAX_RAW_LENGTH}")
    if header.mode.uses_model:
        if not 1 <= header.segment_length < 1 << 32:
            raise ValueError("LM chunks need a segment length in 1..2**32-1")
        if len(header.model_id) != 8:
            raise ValueError("model id must be 8 bytes")
        model_id = bytes(header.model_id)
    else:
        if header.segment_length != 0 or header.model_id != _NO_MODEL:
            raise ValueError("only LM chunks carry a segment length and model id")
        model_id = _NO_MODEL
    head = _STRUCT.pack(
        MAGIC,
        header.version,
        int(header.mode),
        code,
        flags,
        header.segment_length,
        header.raw_length,
        header.raw_crc32c & 0xFFFFFFFF,
        model_id,
    )
    return head + struct.pack("<I", crc32c(head))


def parse_header(buf, body_length: int | None = None) -> Header:
    """Parse and validate the header at the start of the chunk ``buf`` (any bytes-like).

    ``body_length`` is the number of body bytes after the header; by default everything in
    ``buf`` after the header. Raises :class:`CorruptChunkError` (not an lmcodec chunk,
    truncated, header checksum, invalid field, declared raw length impossible for the body) or
    :class:`UnsupportedFormatError` (newer format version, unknown mode).
    """
    mv = memoryview(buf).cast("B")
    if len(mv) < len(MAGIC) or bytes(mv[: len(MAGIC)]) != MAGIC:
        raise CorruptChunkError("not an lmcodec chunk (bad magic)")
    if len(mv) < HEADER_SIZE:
        raise CorruptChunkError(f"truncated chunk: {len(mv)} bytes, header alone is {HEADER_SIZE}")
    version = mv[4]
    if version > FORMAT_VERSION:
        raise UnsupportedFormatError(
            f"chunk has format version {version}; this lmcodec reads versions 1..{FORMAT_VERSION}"
        )
    if version == 0:
        raise CorruptChunkError("invalid format version 0 in chunk header")
    head = mv[: HEADER_SIZE - 4]
    (stored_crc,) = struct.unpack_from("<I", mv, HEADER_SIZE - 4)
    if crc32c(head) != stored_crc:
        raise CorruptChunkError("chunk header checksum mismatch")
    _, _, mode, code, flags, seg, raw_len, raw_crc, model_id = _STRUCT.unpack(head)
    if body_length is None:
        body_length = len(mv) - HEADER_SIZE
    try:
        mode = Mode(mode)
    except ValueError:
        raise UnsupportedFormatError(f"unknown chunk mode {mode}") from None
    if MODE_VERSION[mode] > version:
        raise CorruptChunkError(f"mode {mode} does not exist in format version {version}")
    if flags & ~_KNOWN_FLAGS:
        raise CorruptChunkError(f"reserved header flags set: {flags:#04x}")
    dtype = code_to_dtype(code, flags)
    if (flags & FLAG_BIG_ENDIAN) and (dtype is None or dtype.itemsize == 1):
        raise CorruptChunkError("big-endian flag set for a single-byte dtype")
    if raw_len > MAX_RAW_LENGTH:
        raise CorruptChunkError(f"declared raw length {raw_len} exceeds the {MAX_RAW_LENGTH} cap")
    if mode == Mode.RAW:
        if raw_len != body_length:
            raise CorruptChunkError(
                f"raw chunk declares {raw_len} bytes but its body has {body_length}"
            )
    elif raw_len == 0:
        raise CorruptChunkError(f"empty {mode.name.lower()} chunk (empty chunks are stored raw)")
    elif mode == Mode.ZSTD:
        if raw_len > body_length * ZSTD_MAX_RATIO:
            raise CorruptChunkError(
                f"declared raw length {raw_len} impossible for a {body_length}-byte zstd body"
            )
    elif raw_len > body_length * LM_MAX_RATIO + LM_SLACK:
        raise CorruptChunkError(
            f"declared raw length {raw_len} impossible for a {body_length}-byte LM body"
        )
    if mode.uses_model:
        if seg == 0:
            raise CorruptChunkError("LM chunk with segment length 0")
    elif seg != 0 or model_id != _NO_MODEL:
        raise CorruptChunkError("segment length / model id set in a non-LM chunk")
    return Header(
        mode=mode,
        raw_length=raw_len,
        raw_crc32c=raw_crc,
        dtype=dtype,
        segment_length=seg,
        model_id=model_id,
        version=version,
    )


# --------------------------------------------------------------------------------------------
# zstd bodies


def zstd_compress(data, level: int) -> bytes:
    """One zstd frame of ``data`` (the frame records its content size)."""
    from numcodecs import zstd

    return zstd.compress(data, level)


_ZSTD_MAGIC = 0xFD2FB528
_FCS_SIZES = (0, 2, 4, 8)


def _zstd_frame_content_size(body: memoryview) -> int:
    """Validate that ``body`` is exactly one zstd frame with a content size; return it.

    Walks the block headers only (cheap); the content itself is checked by zstd.
    """
    n = len(body)
    if n < 6 or struct.unpack_from("<I", body, 0)[0] != _ZSTD_MAGIC:
        raise CorruptChunkError("zstd body is not a zstd frame")
    fhd = body[4]
    fcs_flag, single, reserved, checksum, dict_flag = (
        fhd >> 6,
        (fhd >> 5) & 1,
        (fhd >> 3) & 1,
        (fhd >> 2) & 1,
        fhd & 3,
    )
    if reserved or dict_flag:
        raise CorruptChunkError("zstd frame uses reserved bits or a dictionary")
    fcs_size = _FCS_SIZES[fcs_flag] or (1 if single else 0)
    if fcs_size == 0:
        raise CorruptChunkError("zstd frame does not record its content size")
    pos = 5 + (0 if single else 1)
    if pos + fcs_size > n:
        raise CorruptChunkError("truncated zstd frame header")
    fcs = int.from_bytes(body[pos : pos + fcs_size], "little") + (256 if fcs_size == 2 else 0)
    pos += fcs_size
    while True:
        if pos + 3 > n:
            raise CorruptChunkError("truncated zstd frame")
        bh = int.from_bytes(body[pos : pos + 3], "little")
        last, btype, bsize = bh & 1, (bh >> 1) & 3, bh >> 3
        if btype == 3:
            raise CorruptChunkError("reserved zstd block type")
        pos += 3 + (1 if btype == 1 else bsize)
        if last:
            break
    pos += 4 if checksum else 0
    if pos != n:
        raise CorruptChunkError(f"zstd body is {n} bytes but its frame is {pos}")
    return fcs


def zstd_decompress(body, raw_length: int) -> bytes:
    """Decompress a zstd body that must hold exactly ``raw_length`` bytes.

    Never allocates more than ``raw_length`` bytes of output: the frame's recorded content size is
    checked first.
    """
    from numcodecs import zstd

    mv = memoryview(body).cast("B")
    fcs = _zstd_frame_content_size(mv)
    if fcs != raw_length:
        raise CorruptChunkError(
            f"zstd frame holds {fcs} bytes but the chunk header declares {raw_length}"
        )
    try:
        out = zstd.decompress(mv)
    except (RuntimeError, ValueError) as e:
        raise CorruptChunkError(f"corrupt zstd body: {e}") from None
    if len(out) != raw_length:
        raise CorruptChunkError(f"zstd body decoded to {len(out)} bytes, expected {raw_length}")
    return out
