"""Tests of the segment layer (lmcodec.lmcoding) with stand-in frequency models."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmcodec.errors import CorruptChunkError
from lmcodec.frequency_model import N_KINDS, TOTAL, VOCAB_SIZE, kind_id, start_token
from lmcodec.lmcoding import decode_planes, encode_planes
from lmcodec.rans import STATE_LOWER, check_freqs


def normalise(counts: np.ndarray) -> np.ndarray:
    """Positive int64 counts ``[..., 256]`` -> valid int32 tables, exactly (integer only)."""
    total = counts.sum(axis=-1, keepdims=True)
    f = 1 + counts * (TOTAL - 256) // total
    top = counts.argmax(axis=-1)[..., None]
    rest = (TOTAL - f.sum(axis=-1))[..., None]
    np.put_along_axis(f, top, np.take_along_axis(f, top, -1) + rest, -1)
    return f.astype(np.int32)


class StaticModel:
    """Same table at every position of every lane."""

    model_id = b"static\0\0"

    def __init__(self, table: np.ndarray, context_length: int = 64):
        self.table = check_freqs(table)
        self.context_length = context_length

    def full_freqs(self, tokens: np.ndarray) -> np.ndarray:
        assert tokens.dtype == np.int64 and tokens.shape[1] <= self.context_length
        return np.broadcast_to(self.table, (*tokens.shape, 256)).copy()

    def decoder(self, batch: int) -> StaticModel._Stepper:
        return StaticModel._Stepper(self.table, batch)

    class _Stepper:
        def __init__(self, table: np.ndarray, batch: int):
            self.table, self.batch = table, batch

        def step(self, tokens: np.ndarray) -> np.ndarray:
            assert tokens.dtype == np.int64 and tokens.shape == (self.batch,)
            return np.tile(self.table, (self.batch, 1))


class Order1Model:
    """Adaptive order-1 counts: the table at position ``i`` of a lane is
    ``prior[t_i] + INC * #{j < i : t_j == t_i, t_{j+1} == v}``, normalised.

    ``full_freqs`` computes that all at once with a causal "same context" matrix (like an
    attention mask); the stepper keeps running counts. They are independent implementations
    that must agree bit for bit.
    """

    model_id = b"order1\0\0"
    INC = 40

    def __init__(self, context_length: int = 64, seed: int = 0):
        rng = np.random.default_rng(seed)
        # Skewed priors, different for every context token (start tokens included).
        base = rng.integers(1, 4, size=(VOCAB_SIZE, 256))
        self.prior = base ** rng.integers(1, 6, size=(VOCAB_SIZE, 1))
        self.context_length = context_length

    def full_freqs(self, tokens: np.ndarray) -> np.ndarray:
        assert tokens.dtype == np.int64 and tokens.ndim == 2
        b, n = tokens.shape
        assert n <= self.context_length
        same = tokens[:, :, None] == tokens[:, None, :]  # [b, i, j]
        earlier = np.tri(n, k=-1, dtype=bool)  # j < i
        nxt = np.zeros((b, n, 256))  # one-hot of t_{j+1}
        rows, cols = np.nonzero(tokens[:, 1:] < 256)
        nxt[rows, cols, tokens[rows, cols + 1]] = 1
        counts = np.rint((same & earlier).astype(np.float64) @ nxt).astype(np.int64)
        return normalise(self.prior[tokens] + self.INC * counts)

    def decoder(self, batch: int) -> Order1Model._Stepper:
        return Order1Model._Stepper(self, batch)

    class _Stepper:
        def __init__(self, model: Order1Model, batch: int):
            self.model = model
            self.counts = np.zeros((batch, VOCAB_SIZE, 256), dtype=np.int64)
            self.prev: np.ndarray | None = None
            self.rows = np.arange(batch)

        def step(self, tokens: np.ndarray) -> np.ndarray:
            assert tokens.dtype == np.int64 and tokens.shape == self.rows.shape
            if self.prev is not None:
                ok = tokens < 256
                self.counts[self.rows[ok], self.prev[ok], tokens[ok]] += 1
            self.prev = tokens.copy()
            table = self.model.prior[tokens] + self.model.INC * self.counts[self.rows, tokens]
            return normalise(table)


class BadModel(Order1Model):
    """Returns an invalid table at one position."""

    def full_freqs(self, tokens: np.ndarray) -> np.ndarray:
        f = super().full_freqs(tokens)
        f[:, min(3, f.shape[1] - 1), 0] += 1
        return f

    class _BadStepper(Order1Model._Stepper):
        n = 0

        def step(self, tokens: np.ndarray) -> np.ndarray:
            f = super().step(tokens)
            self.n += 1
            if self.n == 4:
                f[:, 0] += 1
            return f

    def decoder(self, batch: int) -> Order1Model._Stepper:
        return BadModel._BadStepper(self, batch)


SEG = 16
MODEL = Order1Model(context_length=SEG)


def skewed_bytes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Mostly small values with runs, like an exponent or high-order byte plane."""
    base = np.minimum(rng.geometric(0.4, size=n) - 1, 255).astype(np.uint8)
    base[rng.random(n) < 0.3] = 0
    return base


def make_chunks(rng: np.random.Generator, plane_lengths: list[list[int]]) -> list[list]:
    chunks = []
    for lengths in plane_lengths:
        planes = []
        for i, n in enumerate(lengths):
            data = (
                skewed_bytes(rng, n) if i % 2 else rng.integers(0, 256, n, dtype=np.uint8)
            )
            planes.append((data, int(rng.integers(0, N_KINDS))))
        chunks.append(planes)
    return chunks


def layouts_of(chunks: list[list]) -> list[list[tuple[int, int]]]:
    return [[(len(data), kind) for data, kind in planes] for planes in chunks]


def check_roundtrip(model, chunks, segment_length, **kwargs) -> list[bytes]:
    bodies = encode_planes(model, chunks, segment_length, **kwargs)
    assert len(bodies) == len(chunks) and all(isinstance(b, bytes) for b in bodies)
    decoded = decode_planes(model, bodies, layouts_of(chunks), segment_length, **kwargs)
    assert len(decoded) == len(chunks)
    for planes, out in zip(chunks, decoded, strict=True):
        assert len(out) == len(planes)
        for (data, _), got in zip(planes, out, strict=True):
            assert got.dtype == np.uint8
            np.testing.assert_array_equal(got, data)
    return bodies


def test_order1_full_freqs_equals_stepping() -> None:
    rng = np.random.default_rng(0)
    model = Order1Model(context_length=40, seed=3)
    b, n = 7, 40
    small, anything = rng.integers(0, 4, (b, n)), rng.integers(0, 256, (b, n))
    tokens = np.where(rng.random((b, n)) < 0.5, small, anything)
    tokens[:, 0] = [start_token(k) for k in rng.integers(0, N_KINDS, b)]
    full = model.full_freqs(tokens)
    check_freqs(full)
    stepper = model.decoder(b)
    for p in range(n):
        np.testing.assert_array_equal(stepper.step(tokens[:, p]), full[:, p])
    # Causal and per-lane: a prefix, or a lane alone, gives the same tables.
    np.testing.assert_array_equal(model.full_freqs(tokens[:, :13]), full[:, :13])
    np.testing.assert_array_equal(model.full_freqs(tokens[2:3]), full[2:3])


@pytest.mark.parametrize("n", [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG + 5])
def test_roundtrip_plane_lengths(n: int) -> None:
    rng = np.random.default_rng(n)
    chunks = [
        [(skewed_bytes(rng, n), kind_id("f", 4, 3))],
        [(rng.integers(0, 256, n, dtype=np.uint8), 0)],
    ]
    bodies = check_roundtrip(MODEL, chunks, SEG)
    if n == 0:
        assert bodies == [b"", b""]


def test_pooled_chunks_and_max_batch_invariance() -> None:
    rng = np.random.default_rng(1)
    chunks = make_chunks(rng, [[40, 0, 17], [], [1], [SEG * 4, SEG, 3, 0], [0]])
    reference = check_roundtrip(MODEL, chunks, SEG)
    for max_batch in (1, 2, 3, 5, 1000):
        assert encode_planes(MODEL, chunks, SEG, max_batch=max_batch) == reference
        decoded = decode_planes(MODEL, reference, layouts_of(chunks), SEG, max_batch=max_batch)
        for planes, out in zip(chunks, decoded, strict=True):
            for (data, _), got in zip(planes, out, strict=True):
                np.testing.assert_array_equal(got, data)
    # Any bytes-like body decodes.
    as_views = [memoryview(bytearray(b)) for b in reference]
    decoded = decode_planes(MODEL, as_views, layouts_of(chunks), SEG)
    for planes, out in zip(chunks, decoded, strict=True):
        for (data, _), got in zip(planes, out, strict=True):
            np.testing.assert_array_equal(got, data)
    # Chunks coded alone give the same bodies as pooled.
    for chunk, body in zip(chunks, reference, strict=True):
        assert encode_planes(MODEL, [chunk], SEG, max_batch=4) == [body]
    assert reference[1] == b"" and reference[4] == b""


def test_segment_length_shorter_than_context() -> None:
    rng = np.random.default_rng(2)
    chunks = make_chunks(rng, [[50, 7], [13]])
    for seg in (1, 5, SEG):
        check_roundtrip(MODEL, chunks, seg, max_batch=4)


def test_static_model_and_extreme_tables() -> None:
    rng = np.random.default_rng(3)
    peaked = np.ones(256, np.int32)
    peaked[0] = TOTAL - 255
    for table in (peaked, np.full(256, 256, np.int32)):
        model = StaticModel(table, context_length=32)
        chunks = [
            [(np.zeros(100, np.uint8), 0), (rng.integers(0, 256, 70, dtype=np.uint8), 5)],
            [(np.full(33, 255, np.uint8), 1)],
        ]
        check_roundtrip(model, chunks, 32)
    # Uniform table: 8 bits per byte plus 4 bytes of state and at most a varint byte per lane.
    uniform = StaticModel(np.full(256, 256, np.int32), 32)
    (body,) = encode_planes(uniform, [[(np.arange(64, dtype=np.uint8), 0)]], 32)
    assert abs(len(body) - (64 + 2 * 5)) <= 4


def parse_body(body: bytes, lane_lengths: list[int]) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Independent reader of the documented body layout."""
    pos, counts = 0, []
    for _ in lane_lengths:
        value, shift = 0, 0
        while True:
            byte = body[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        counts.append(value)
    states = np.frombuffer(body, "<u4", len(lane_lengths), pos)
    pos += 4 * len(lane_lengths)
    words = np.frombuffer(body, "<u2", offset=pos)
    assert len(words) == sum(counts)
    return counts, states, words


def test_body_layout_and_code_length() -> None:
    """Documented layout, and the size is close to the model's ideal code length."""
    rng = np.random.default_rng(4)
    model = Order1Model(context_length=300, seed=1)
    planes = [(skewed_bytes(rng, 700), 2), (rng.integers(0, 256, 290, dtype=np.uint8), 0)]
    (body,) = encode_planes(model, [planes], 300)
    lane_lengths = [300, 300, 100, 290]
    counts, states, words = parse_body(body, lane_lengths)
    assert all(c <= n for c, n in zip(counts, lane_lengths, strict=True))
    assert counts[3] >= 128  # a multi-byte varint is exercised
    assert np.all(states >= STATE_LOWER)
    ideal = 0.0
    for (data, kind), start in [(planes[0], 0), (planes[0], 300), (planes[0], 600), (planes[1], 0)]:
        seg = data[start : start + 300]
        tokens = np.concatenate([[start_token(kind)], seg[:-1]]).astype(np.int64)[None]
        f = model.full_freqs(tokens)[0, np.arange(len(seg)), seg]
        ideal += -np.log2(f / TOTAL).sum() / 8
    words_and_states = 2 * len(words) + 4 * len(lane_lengths)
    assert abs(words_and_states - ideal) <= 6 * len(lane_lengths)
    assert 2 * sum(counts[:3]) < 0.75 * 700  # the skewed plane compresses


def test_argument_errors() -> None:
    chunk = [[(np.zeros(5, np.uint8), 0)]]
    with pytest.raises(ValueError):
        encode_planes(MODEL, chunk, SEG + 1)
    with pytest.raises(ValueError):
        encode_planes(MODEL, chunk, 0)
    with pytest.raises(ValueError):
        encode_planes(MODEL, chunk, SEG, max_batch=0)
    with pytest.raises(ValueError):
        encode_planes(MODEL, [[(np.zeros(5, np.int16), 0)]], SEG)
    with pytest.raises(ValueError):
        encode_planes(MODEL, [[(np.zeros((2, 2), np.uint8), 0)]], SEG)
    with pytest.raises(ValueError):
        encode_planes(MODEL, [[(np.zeros(5, np.uint8), N_KINDS)]], SEG)
    body = encode_planes(MODEL, chunk, SEG)
    with pytest.raises(ValueError):
        decode_planes(MODEL, body, [[(5, 0)], [(5, 0)]], SEG)
    with pytest.raises(CorruptChunkError):
        decode_planes(MODEL, body, [[(5, 0)]], SEG + 1)
    with pytest.raises(CorruptChunkError):
        decode_planes(MODEL, body, [[(5, N_KINDS)]], SEG)
    with pytest.raises(CorruptChunkError):
        decode_planes(MODEL, body, [[(-5, 0)]], SEG)
    assert encode_planes(MODEL, [], SEG) == [] and decode_planes(MODEL, [], [], SEG) == []


def test_bad_model_tables() -> None:
    rng = np.random.default_rng(5)
    chunk = [[(rng.integers(0, 256, 10, dtype=np.uint8), 0)]]
    with pytest.raises(ValueError):
        encode_planes(BadModel(SEG), chunk, SEG)
    body = encode_planes(MODEL, chunk, SEG)
    with pytest.raises(CorruptChunkError):
        decode_planes(BadModel(SEG), body, layouts_of(chunk), SEG)


def test_corrupt_bodies() -> None:
    rng = np.random.default_rng(6)
    chunks = make_chunks(rng, [[20, 9]])
    layouts = layouts_of(chunks)
    (body,) = check_roundtrip(MODEL, chunks, SEG)
    assert len(body) < 60

    def outcome(data: bytes) -> bool:
        """True when rejected; a decode that succeeds must have the right shapes."""
        try:
            (out,) = decode_planes(MODEL, [data], layouts, SEG)
        except CorruptChunkError:
            return True
        assert [len(p) for p in out] == [20, 9]
        return False

    for cut in range(len(body)):
        assert outcome(body[:cut])
    assert outcome(body + b"\0")
    assert outcome(body + body)
    flips = [
        outcome(body[:i] + bytes([body[i] ^ mask]) + body[i + 1 :])
        for i in range(len(body))
        for mask in (0x01, 0x10, 0x80, 0xFF)
    ]
    assert sum(flips) >= 0.9 * len(flips)
    # Layout mismatches: planes longer or shorter than coded.
    assert outcome(body) is False
    for wrong in ([(21, layouts[0][0][1]), layouts[0][1]], [(20, layouts[0][0][1])], []):
        with pytest.raises(CorruptChunkError):
            decode_planes(MODEL, [body], [wrong], SEG)


def test_varint_rules() -> None:
    rng = np.random.default_rng(7)
    model = Order1Model(context_length=400)
    chunk = [[(rng.integers(0, 256, 400, dtype=np.uint8), 0)]]
    (body,) = encode_planes(model, chunk, 400)
    assert body[0] & 0x80 and not body[1] & 0x80  # a two-byte count
    layouts = layouts_of(chunk)
    # Non-minimal: a one-byte count re-encoded with a redundant zero group.
    small = [[(np.zeros(3, np.uint8), 0)]]
    (b3,) = encode_planes(model, small, 400)
    padded = bytes([b3[0] | 0x80, 0x00]) + b3[1:]
    with pytest.raises(CorruptChunkError, match="non-minimal"):
        decode_planes(model, [padded], layouts_of(small), 400)
    # A count above the segment length.
    too_big = bytes([0x91, 0x03]) + body[2:]  # 401
    with pytest.raises(CorruptChunkError, match="exceeds"):
        decode_planes(model, [too_big], layouts, 400)
    # A huge claimed layout is rejected from the body size alone, without allocating it.
    with pytest.raises(CorruptChunkError, match="too short"):
        decode_planes(model, [body], [[(10**15, 0)]], 400)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    plane_lengths=st.lists(st.lists(st.integers(0, 40), max_size=3), min_size=1, max_size=3),
    segment_length=st.integers(1, SEG),
    max_batch=st.integers(1, 8),
)
def test_roundtrip_property(seed: int, plane_lengths, segment_length: int, max_batch: int) -> None:
    rng = np.random.default_rng(seed)
    chunks = make_chunks(rng, plane_lengths)
    bodies = check_roundtrip(MODEL, chunks, segment_length, max_batch=max_batch)
    assert bodies == encode_planes(MODEL, chunks, segment_length, max_batch=64)
