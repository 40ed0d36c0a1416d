"""The decimal step (format version 5): floats of short decimals coded as scaled integers,
bit-exact for every float, with exceptions, and validated like the rest of a body."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmcodec import LMCodec
from lmcodec.decimals import (
    MAX_EXPONENT,
    SIGNIFICAND_BITS,
    find_step,
    from_integers,
    pack_step,
    read_step,
    to_integers,
)
from lmcodec.errors import CorruptChunkError
from lmcodec.format import HEADER_SIZE, Header, Mode, pack_header, parse_header
from lmcodec.mixcoding import BODY_HEAD_BYTES, StreamParams, body_report, decimal_floats, decode_chunks, encode_chunks
from lmcodec.preprocess import plane_layout, split_planes

from conftest import FAKE

FLOATS = ["<f4", ">f4", "<f8", ">f8"]


def _bytes(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint8).reshape(-1)


def _round_trip(a: np.ndarray, exponent: int) -> np.ndarray:
    """The step's integers and exceptions of ``a`` (after a pack/read of the section), inverted."""
    data = _bytes(a)
    integers, step = to_integers(data, a.dtype, exponent)
    assert integers.shape == data.shape and step.integers.itemsize == a.dtype.itemsize
    section = pack_step(step)
    again, end = read_step(memoryview(section), 0, data.shape[0])
    assert end == len(section) and again.exponent == exponent and again.dtype == a.dtype
    assert np.array_equal(again.positions, step.positions) and again.values == step.values
    return from_integers(integers.copy(), again)


@settings(max_examples=300, deadline=None)
@given(bits=st.binary(min_size=0, max_size=400), dtype=st.sampled_from(FLOATS), exponent=st.integers(0, 22),
       tail=st.integers(0, 7))
def test_every_bit_pattern_round_trips(bits, dtype, exponent, tail):
    """Any floats (NaN payloads, infinities, -0.0, subnormals, huge values) at any exponent come
    back bit for bit: what the integers cannot hold goes to the exceptions; a tail is kept."""
    dt = np.dtype(dtype)
    exponent = min(exponent, MAX_EXPONENT[dt.itemsize])
    data = np.frombuffer(bits[: len(bits) // dt.itemsize * dt.itemsize] + bytes(range(tail % dt.itemsize)), np.uint8)
    integers, step = to_integers(data, dt, exponent)
    assert from_integers(integers.copy(), step).tobytes() == data.tobytes()


@pytest.mark.parametrize("dtype", FLOATS)
def test_short_decimals_become_integers_without_exceptions(dtype):
    rng = np.random.default_rng(5)
    cents = rng.integers(-10**6, 10**6, 1000)
    prices = (cents / 100).astype(dtype)  # the float nearest each 2-decimal number
    assert find_step(_bytes(prices), prices.dtype) == 2
    integers, step = to_integers(_bytes(prices), prices.dtype, 2)
    assert step.positions.size == 0 and step.values == b""
    assert np.array_equal(integers.view(step.integers), cents)
    assert _round_trip(prices, 2).tobytes() == _bytes(prices).tobytes()
    whole = np.round(prices).astype(dtype)
    assert find_step(_bytes(whole), whole.dtype) == 0


def test_special_values_are_exceptions_and_fill_with_the_previous_integer():
    x = np.array([1.5, np.nan, -0.0, 2.25, np.inf, 1 / 3, 7.0, 2.0**60], dtype="<f8")
    integers, step = to_integers(_bytes(x), x.dtype, 2)
    assert step.positions.tolist() == [1, 2, 4, 5, 7]
    assert integers.view("<i8").tolist() == [150, 150, 150, 225, 225, 225, 700, 700]
    assert _round_trip(x, 2).tobytes() == x.tobytes()


def test_the_exponent_is_the_one_with_fewest_exceptions():
    rng = np.random.default_rng(2)
    x = np.round(rng.normal(0, 100, 4000), 3)
    x[::10] = np.nan  # 10 % exceptions at every exponent
    assert find_step(_bytes(x), x.dtype) == 3
    table = rng.normal(0, 100, (20_480, 5))  # a stride of 25 elements would see one column only
    for column in range(5):  # the exponent must suit every column, seen in blocks of whole rows
        table[:, column] = np.round(table[:, column], column)
    assert find_step(_bytes(table), table.dtype) == 4
    noise = rng.normal(0, 1, 4000)
    assert find_step(_bytes(noise), noise.dtype) is None  # full precision: no exponent fits
    assert find_step(_bytes(np.arange(400, dtype="<i8")), np.dtype("<i8")) is None  # not floats
    assert find_step(_bytes(np.arange(400, dtype="<f2")), np.dtype("<f2")) is None  # float16: no step


@pytest.mark.parametrize("dtype", ["<f4", "<f8"])
def test_integers_outside_the_exact_range_are_corrupt(dtype):
    dt = np.dtype(dtype)
    x = np.array([1.0, 2.0, 3.0], dtype=dt)
    integers, step = to_integers(_bytes(x), dt, 0)
    ints = integers.view(step.integers)
    ints[1] = 1 << SIGNIFICAND_BITS[dt.itemsize]  # the largest allowed integer decodes
    from_integers(integers.copy(), step)
    ints[1] = -(1 << SIGNIFICAND_BITS[dt.itemsize]) - 1
    with pytest.raises(CorruptChunkError, match="decimal integer outside"):
        from_integers(integers.copy(), step)


def test_step_sections_out_of_bounds_are_corrupt():
    x = np.array([1.5, np.nan, 2.5, np.nan], dtype="<f8")
    _, step = to_integers(_bytes(x), x.dtype, 1)
    good = pack_step(step)
    assert good[:3] == bytes([11, 0, 1])  # float64 code, little-endian, exponent 1
    cases = {
        "too short": good[:2],
        "needs float32 or float64": bytes([8]) + good[1:],  # int64 code
        "flags": bytes([11, 2]) + good[2:],
        "exceeds 22": bytes([11, 0, 23]) + good[3:],
        "exception count": good[:3] + bytes([5]) + good[4:],  # 5 > 4 elements
        "outside 4 elements": good[:4] + bytes([3, 0]) + good[6:],  # positions 3, 4
        "exceptions": good[:-1],
    }
    for match, section in cases.items():
        with pytest.raises(CorruptChunkError, match=match):
            read_step(memoryview(section), 0, x.nbytes)
    with pytest.raises(CorruptChunkError, match="exceeds 10"):
        read_step(memoryview(bytes([10, 0, 11, 0])), 0, 16)  # float32 exponents stop at 10


def _decimal_chunk(mixer_version: int = 3) -> tuple[bytes, np.ndarray]:
    rng = np.random.default_rng(9)
    prices = np.round(100 + np.cumsum(rng.normal(0, 1, (300, 4)), axis=0), 2)
    prices[5, 2] = np.nan
    return LMCodec(mixer_version=mixer_version).encode(prices), prices


@pytest.mark.parametrize("mixer_version", [1, 2, 3])
def test_decimal_chunks_are_format_version_5_with_any_mixer_version(mixer_version):
    enc, prices = _decimal_chunk(mixer_version)
    header = parse_header(enc)
    assert header.mode == Mode.LM_MIX and header.version == 5 and header.dtype == np.dtype("<i8")
    assert enc[HEADER_SIZE] == mixer_version and enc[HEADER_SIZE + 1] & 0x08
    assert LMCodec().decode(enc) == prices.tobytes()
    assert LMCodec().decode_batch([enc, enc]) == [prices.tobytes()] * 2
    assert len(enc) < 0.65 * len(LMCodec(mixer_version=mixer_version).encode(prices + 1e-9))  # full precision


def test_the_floats_of_a_step_are_named_in_the_head_of_the_body():
    """``lmcodec info`` reads at most a body's first BODY_HEAD_BYTES bytes, not the whole body."""
    enc, prices = _decimal_chunk()
    header = parse_header(enc)
    body = enc[HEADER_SIZE:]
    report = body_report(body, plane_layout(header.raw_length, header.dtype), header.segment_length,
                         header.version, header.dtype)
    floats = report.params.decimal.dtype
    assert floats == prices.dtype
    named = [cut for cut in range(len(body) + 1) if _floats_or_none(body[:cut], header.segment_length) is not None]
    assert named[0] <= BODY_HEAD_BYTES and named == list(range(named[0], len(body) + 1))
    assert all(decimal_floats(body[:cut], header.segment_length, 5) == floats for cut in named[:3])
    flags = bytearray(body[:named[0]])
    flags[-1] = 0x80
    with pytest.raises(CorruptChunkError, match="reserved decimal step flags"):
        decimal_floats(bytes(flags), header.segment_length, 5)
    no_step = body[:1] + bytes([body[1] & ~0x08]) + body[2:named[0]]  # the step's flag cleared
    assert decimal_floats(no_step, header.segment_length, 5) is None
    # the longest head: a 4-byte m (2**24 segments of 1 byte), a 3-byte r (65535), float64
    longest = bytes([3, 0x08, 0x80, 0x80, 0x80, 0x08, 0xFF, 0xFF, 0x03, 11, 0])
    assert len(longest) == BODY_HEAD_BYTES and decimal_floats(longest, 1, 5) == np.dtype("<f8")
    with pytest.raises(CorruptChunkError):
        decimal_floats(longest[:-1], 1, 5)


def _floats_or_none(head: bytes, segment_length: int):
    try:
        return decimal_floats(head, segment_length, 5)
    except CorruptChunkError:
        return None


def test_a_decimal_body_must_fit_its_header():
    enc, _ = _decimal_chunk()
    header = parse_header(enc)
    body = enc[HEADER_SIZE:]

    def chunk(version: int = 5, dtype=header.dtype, new_body: bytes = body) -> bytes:
        head = Header(header.mode, header.raw_length, header.raw_crc32c, dtype, header.segment_length,
                      header.model_id, version)
        return pack_header(head) + new_body

    with pytest.raises(CorruptChunkError, match="unknown transform"):
        LMCodec().decode(chunk(version=4))  # the decimal flag did not exist before version 5
    with pytest.raises(CorruptChunkError, match="it needs <i8 or plain bytes"):
        LMCodec().decode(chunk(dtype=np.dtype(">i8")))
    with pytest.raises(CorruptChunkError, match="unknown transform"):
        LMCodec().decode(chunk(new_body=body[:1] + bytes([body[1] | 0x10]) + body[2:]))  # reserved bit
    corrupt = bytearray(body)
    corrupt[-1] ^= 0x55
    with pytest.raises(CorruptChunkError):
        LMCodec().decode(chunk(new_body=bytes(corrupt)))


def test_plain_layout_of_decimal_integers_round_trips():
    """A decimal step with header dtype 'plain bytes' (the integers in memory order)."""
    rng = np.random.default_rng(4)
    x = np.round(rng.normal(50, 10, 600), 1)
    data = _bytes(x)
    integers, step = to_integers(data, x.dtype, 1)
    planes = split_planes(integers, None)
    prm = StreamParams(1, 8, 0, step)
    (body,) = encode_chunks(FAKE, [planes], FAKE.context_length, [prm])
    ((got, params),) = decode_chunks(FAKE, [body], [plane_layout(len(data), None)], FAKE.context_length, [5], [None])
    assert got[0].tobytes() == integers.tobytes() and params.decimal.exponent == 1
    assert from_integers(got[0].copy(), params.decimal).tobytes() == data.tobytes()


def test_repeated_rows_take_the_plain_layout_of_the_integers():
    """Survey-like rows (6-decimal values, many zeros) that repeat whole: the integers are coded
    in memory order (header dtype: plain bytes), and the codec decodes them back to the floats."""
    rng = np.random.default_rng(3)
    rows = np.round(rng.normal(5, 2, (40, 5)) * rng.choice([1, 0], (40, 5)), 6)
    table = np.repeat(rows, 3, axis=0)
    enc = LMCodec().encode(table)
    header = parse_header(enc)
    assert header.version == 5 and header.dtype is None and enc[HEADER_SIZE + 1] == 0x08
    assert LMCodec().decode(enc) == table.tobytes()


@settings(max_examples=25, deadline=None)
@given(dtype=st.sampled_from(FLOATS), decimals=st.integers(0, 6), rows=st.integers(40, 200),
       specials=st.lists(st.sampled_from([np.nan, np.inf, -np.inf, -0.0, 1 / 3, 1e300, 5e-324]), max_size=12),
       seed=st.integers(0, 2**32 - 1))
def test_codec_round_trips_decimal_tables_with_special_values(dtype, decimals, rows, specials, seed):
    """Whatever layout the encoder picks (decimal or not, shuffled or plain), LMCodec gives the
    input back bit for bit, one chunk at a time and in a batch."""
    rng = np.random.default_rng(seed)
    table = np.round(rng.normal(0, 10.0 ** rng.integers(0, 4), (rows, 3)), decimals)
    flat = table.reshape(-1)
    for value, where in zip(specials, rng.integers(0, flat.size, len(specials))):
        flat[where] = value
    with np.errstate(over="ignore"):
        table = table.astype(dtype)
    codec = LMCodec()
    enc = codec.encode(table)
    assert codec.decode(enc) == table.tobytes()
    assert codec.decode_batch([enc, codec.encode(table[: rows // 2])]) == [table.tobytes(), table[: rows // 2].tobytes()]
