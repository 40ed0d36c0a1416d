"""The chunk header and body validation: round trips, corruption, truncation, fuzzing."""

from __future__ import annotations

import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmcodec import mixcoding, preprocess
from lmcodec.codec import LMCodec
from lmcodec.errors import CorruptChunkError, ModelNotFoundError, UnsupportedFormatError
from lmcodec.format import (
    DTYPE_CODES,
    FORMAT_VERSION,
    HEADER_SIZE,
    LM_MAX_RATIO,
    MAGIC,
    MAX_RAW_LENGTH,
    Header,
    Mode,
    code_to_dtype,
    crc32c,
    dtype_to_code,
    pack_header,
    parse_header,
    zstd_compress,
    zstd_decompress,
)

from conftest import FAKE

DOCUMENTED = (CorruptChunkError, UnsupportedFormatError, ModelNotFoundError)
DTYPES = [None] + [
    np.dtype(("<" if name[1] != "1" else "|") + name) for name in DTYPE_CODES[1:]
] + [np.dtype(">" + name) for name in DTYPE_CODES[1:] if name[1] != "1"]


def _rehash(head: bytearray) -> bytearray:
    """Recompute the header CRC after editing header fields (a 'valid' forged header)."""
    head[HEADER_SIZE - 4 : HEADER_SIZE] = struct.pack("<I", crc32c(bytes(head[: HEADER_SIZE - 4])))
    return head


def _forge(chunk: bytes, offset: int, fmt: str, value) -> bytes:
    b = bytearray(chunk)
    struct.pack_into(fmt, b, offset, value)
    return bytes(_rehash(b))


# -- header ---------------------------------------------------------------------------------


def test_header_size_and_layout():
    h = Header(Mode.LM, 1000, 0xDEADBEEF, np.dtype(">f4"), 64, b"ABCDEFGH")
    b = pack_header(h)
    assert len(b) == HEADER_SIZE == 36
    assert b[:4] == MAGIC and b[4] == 1 and b[5] == 2  # lm chunks are format version 1
    assert b[6] == DTYPE_CODES.index("f4") and b[7] == 1
    assert struct.unpack_from("<IQI", b, 8) == (64, 1000, 0xDEADBEEF)
    assert b[24:32] == b"ABCDEFGH"
    assert struct.unpack_from("<I", b, 32)[0] == crc32c(b[:32])


@given(
    mode=st.sampled_from(list(Mode)),
    raw_length=st.integers(1, 10**6),
    crc=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from(DTYPES),
    seg=st.integers(1, 2**32 - 1),
    model_id=st.binary(min_size=8, max_size=8),
)
def test_header_round_trip(mode, raw_length, crc, dtype, seg, model_id):
    if mode.uses_model:
        h = Header(mode, raw_length, crc, dtype, seg, model_id)
    else:
        h = Header(mode, raw_length, crc, dtype)
    body_length = raw_length  # always plausible
    parsed = parse_header(pack_header(h), body_length=body_length)
    assert parsed == h
    assert parsed.dtype == (None if dtype is None else dtype)
    if dtype is not None and dtype.itemsize > 1:
        assert parsed.dtype.str == dtype.str  # byte order survives


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtype_codes_round_trip(dtype):
    code, flags = dtype_to_code(dtype)
    back = code_to_dtype(code, flags)
    assert back == dtype and (back is None or back.str == dtype.str)


def test_unsupported_dtypes_map_to_bytes():
    for dt in ["?", "S4", "c8", "M8[s]", [("a", "<i4")]]:
        assert dtype_to_code(dt) == (0, 0)


def test_pack_header_rejects_invalid():
    with pytest.raises(ValueError):
        pack_header(Header(Mode.LM, 10, 0, None, 0, bytes(8)))
    with pytest.raises(ValueError):
        pack_header(Header(Mode.RAW, 10, 0, None, 5))
    with pytest.raises(ValueError):
        pack_header(Header(Mode.RAW, MAX_RAW_LENGTH + 1, 0))
    with pytest.raises(ValueError):
        pack_header(Header(Mode.RAW, 10, 0, np.dtype("c8")))


def _raw_chunk(data: bytes) -> bytes:
    return pack_header(Header(Mode.RAW, len(data), crc32c(data))) + data


def test_parse_header_errors():
    good = _raw_chunk(b"hello world")
    assert parse_header(good).raw_length == 11
    with pytest.raises(CorruptChunkError, match="magic"):
        parse_header(b"")
    with pytest.raises(CorruptChunkError, match="magic"):
        parse_header(b"XXXX" + good[4:])
    with pytest.raises(CorruptChunkError, match="truncated"):
        parse_header(good[:20])
    with pytest.raises(CorruptChunkError, match="checksum"):
        parse_header(good[:10] + b"\x01" + good[11:])
    # forged headers (valid CRC) with invalid fields
    with pytest.raises(UnsupportedFormatError, match=f"version {FORMAT_VERSION + 1}"):
        parse_header(_forge(good, 4, "<B", FORMAT_VERSION + 1))
    assert parse_header(_forge(good, 4, "<B", 2)).version == 2  # older modes exist in v2
    with pytest.raises(CorruptChunkError):
        parse_header(_forge(good, 4, "<B", 0))
    with pytest.raises(UnsupportedFormatError, match="mode"):
        parse_header(_forge(good, 5, "<B", 7))
    with pytest.raises(CorruptChunkError, match="does not exist in format version 1"):
        parse_header(_forge(good, 5, "<B", int(Mode.LM_MIX)))
    with pytest.raises(CorruptChunkError, match="dtype code"):
        parse_header(_forge(good, 6, "<B", 200))
    with pytest.raises(CorruptChunkError, match="flags"):
        parse_header(_forge(good, 7, "<B", 2))
    with pytest.raises(CorruptChunkError, match="big-endian"):
        parse_header(_forge(good, 7, "<B", 1))
    with pytest.raises(CorruptChunkError, match="segment length"):
        parse_header(_forge(good, 8, "<I", 64))
    with pytest.raises(CorruptChunkError):
        parse_header(_forge(good, 24, "<8s", b"ABCDEFGH"))
    with pytest.raises(CorruptChunkError, match="declares 12"):
        parse_header(_forge(good, 12, "<Q", 12))
    # an LM chunk with segment length 0
    lm = pack_header(Header(Mode.LM, 11, 0, None, 1, b"ABCDEFGH")) + bytes(11)
    with pytest.raises(CorruptChunkError, match="segment length 0"):
        parse_header(_forge(lm, 8, "<I", 0))


@pytest.mark.parametrize(
    "mode,raw_length",
    [
        (Mode.RAW, 2**40),
        (Mode.ZSTD, 2**34),
        (Mode.LM, 2**34),
        (Mode.LM, 100 * LM_MAX_RATIO + 1000),
        (Mode.LM_MIX, 2**34),
        (Mode.LM_MIX, 100 * LM_MAX_RATIO + 1000),
        (Mode.ZSTD, 2**63),
    ],
)
def test_huge_declared_length_refused_without_allocating(mode, raw_length):
    body = bytes(100)
    if mode.uses_model:
        h = Header(mode, 1, 0, None, 1, FAKE.model_id)
    else:
        h = Header(mode, 1, 0)
    head = bytearray(pack_header(h))
    struct.pack_into("<Q", head, 12, raw_length)
    chunk = bytes(_rehash(head)) + body
    tracemalloc.start()
    try:
        with pytest.raises(CorruptChunkError):
            LMCodec().decode(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_empty_non_raw_chunks_refused():
    for mode in (Mode.ZSTD, Mode.LM, Mode.LM_MIX):
        head = bytearray(pack_header(Header(Mode.RAW, 0, 0)))
        head[4:6] = bytes([2, mode])
        if mode.uses_model:
            head[8:12] = struct.pack("<I", 16)
            head[24:32] = FAKE.model_id
        with pytest.raises(CorruptChunkError, match="empty"):
            parse_header(bytes(_rehash(head)) + bytes(8))


# -- zstd bodies ------------------------------------------------------------------------------


def test_zstd_body_checks():
    data = bytes(range(256)) * 40
    frame = zstd_compress(data, 3)
    assert zstd_decompress(frame, len(data)) == data
    with pytest.raises(CorruptChunkError, match="declares"):
        zstd_decompress(frame, len(data) + 1)
    with pytest.raises(CorruptChunkError):
        zstd_decompress(frame + frame, len(data))  # a second frame would decode past raw_len
    with pytest.raises(CorruptChunkError):
        zstd_decompress(frame + b"\0", len(data))
    with pytest.raises(CorruptChunkError):
        zstd_decompress(b"\x28\xb5\x2f\xfd", len(data))
    for cut in range(len(frame)):
        with pytest.raises(CorruptChunkError):
            zstd_decompress(frame[:cut], len(data))


def test_zstd_frame_with_lying_content_size_is_refused_before_decoding():
    small = zstd_compress(b"a" * 1000, 3)
    head = pack_header(Header(Mode.ZSTD, 5000, crc32c(b"a" * 5000)))
    with pytest.raises(CorruptChunkError, match="zstd frame holds 1000"):
        LMCodec().decode(head + small)


# -- corruption and truncation of real chunks in every mode -----------------------------------


def _chunks_in_every_mode() -> dict[str, tuple[bytes, bytes]]:
    """``{name: (chunk, raw)}`` with one small valid chunk per mode (and LM with planes)."""
    from lmcodec.lmcoding import encode_planes

    rng = np.random.default_rng(7)
    out = {}
    raw = rng.integers(0, 256, 150, dtype=np.uint8).tobytes()
    out["raw"] = (_raw_chunk(raw), raw)
    zraw = b"abcdefgh" * 40
    out["zstd"] = (
        pack_header(Header(Mode.ZSTD, len(zraw), crc32c(zraw))) + zstd_compress(zraw, 3),
        zraw,
    )
    zarr_ = np.arange(1000, 1100, dtype=">i4")
    zshuf = preprocess.shuffle(zarr_.view(np.uint8), zarr_.dtype)
    out["zstd-i4"] = (
        pack_header(Header(Mode.ZSTD, zarr_.nbytes, crc32c(zarr_), zarr_.dtype))
        + zstd_compress(zshuf, 3),
        zarr_.tobytes(),
    )
    text = b"the quick brown fox jumps over the lazy dog; " * 3
    for name, data, dtype, seg in [
        ("lm-bytes", np.frombuffer(text, np.uint8), None, 40),
        ("lm-i2", np.arange(0, 70, dtype=">i2").view(np.uint8), np.dtype(">i2"), 16),
        ("lm-f4-tail", np.linspace(0, 1, 21, dtype="<f4").view(np.uint8)[:-1], np.dtype("<f4"), 64),
    ]:
        planes = preprocess.split_planes(data, dtype)
        (body,) = encode_planes(FAKE, [planes], seg)
        head = Header(Mode.LM, data.size, crc32c(data), dtype, seg, FAKE.model_id)
        out[name] = (pack_header(head) + bytes(body), data.tobytes())
    for name, data, dtype, seg, per_stream, record in [
        ("mix-bytes", np.frombuffer(text, np.uint8), None, 24, 2, 0),
        ("mix-i2", np.arange(0, 70, dtype=">i2").view(np.uint8), np.dtype(">i2"), 16, 3, 10),
    ]:
        planes = preprocess.split_planes(data, dtype)
        (body,) = mixcoding.encode_chunks(FAKE, [planes], seg, [mixcoding.StreamParams(per_stream, record)])
        head = Header(Mode.LM_MIX, data.size, crc32c(data), dtype, seg, FAKE.model_id)
        out[name] = (pack_header(head) + bytes(body), data.tobytes())
    return out


CHUNKS = None
MODES = ["raw", "zstd", "zstd-i4", "lm-bytes", "lm-i2", "lm-f4-tail", "mix-bytes", "mix-i2"]


def _every_mode():
    global CHUNKS
    if CHUNKS is None:
        CHUNKS = _chunks_in_every_mode()
    return CHUNKS


@pytest.mark.parametrize("name", MODES)
def test_valid_chunks_decode(name):
    chunk, raw = _every_mode()[name]
    assert LMCodec().decode(chunk) == raw


def _decodes_correctly_or_raises_documented(codec, chunk, raw):
    try:
        got = codec.decode(chunk)
    except DOCUMENTED:
        return False
    assert got == raw, "corrupted chunk decoded to wrong data without an error"
    return True


@pytest.mark.parametrize("name", MODES)
def test_every_single_byte_corruption(name):
    chunk, raw = _every_mode()[name]
    codec = LMCodec()
    for pos in range(len(chunk)):
        for flip in (0x01, 0x80, 0xFF):
            bad = bytearray(chunk)
            bad[pos] ^= flip
            _decodes_correctly_or_raises_documented(codec, bytes(bad), raw)


@pytest.mark.parametrize("name", MODES)
def test_every_truncation_and_extension(name):
    chunk, raw = _every_mode()[name]
    codec = LMCodec()
    for cut in range(len(chunk)):
        with pytest.raises(DOCUMENTED):
            codec.decode(chunk[:cut])
    for extra in (b"\0", b"\xff\xff", bytes(7)):
        with pytest.raises(DOCUMENTED):
            codec.decode(chunk + extra)


@pytest.mark.parametrize("name", ["lm-bytes", "lm-i2", "mix-bytes"])
def test_lm_chunk_of_unknown_model(name, monkeypatch):
    from conftest import FAKE_OTHER, install_fake_models

    chunk, _ = _every_mode()[name]
    install_fake_models(monkeypatch, {FAKE_OTHER.name: FAKE_OTHER})
    with pytest.raises(ModelNotFoundError, match=FAKE.model_id.hex()):
        LMCodec().decode(chunk)


def test_lm_segment_longer_than_context_is_corrupt():
    chunk, _ = _every_mode()["lm-bytes"]
    with pytest.raises(CorruptChunkError, match="context length"):
        LMCodec().decode(_forge(chunk, 8, "<I", FAKE.context_length + 1))


# -- fuzzing ----------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_documented_errors(data):
    with pytest.raises(DOCUMENTED):
        LMCodec().decode(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_magic_plus_random_bytes_raise_documented_errors(data):
    with pytest.raises(DOCUMENTED):
        LMCodec().decode(MAGIC + data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mode=st.sampled_from(list(Mode)),
    dtype=st.sampled_from(DTYPES),
    seg=st.integers(1, FAKE.context_length),
    raw_length=st.integers(1, 3000),
    body=st.binary(max_size=300),
)
def test_valid_header_random_body_raises_documented_errors(mode, dtype, seg, raw_length, body):
    """A forged but self-consistent header over garbage: never garbage out, never a crash."""
    if mode == Mode.RAW:
        raw_length = len(body)
    if mode.uses_model:
        head = Header(mode, raw_length, 0, dtype, seg, FAKE.model_id)
    else:
        head = Header(mode, raw_length, 0, dtype)
    try:
        LMCodec().decode(pack_header(head) + body)
    except DOCUMENTED:
        pass
