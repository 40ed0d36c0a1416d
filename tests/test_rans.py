"""Tests of the lane-parallel rANS coder (lmcodec.rans) with tables known up front."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmcodec.errors import CorruptChunkError
from lmcodec.frequency_model import TOTAL
from lmcodec.rans import (
    MAX_FREQ,
    STATE_LOWER,
    RansLaneDecoder,
    check_freqs,
    decode_lanes,
    encode_lanes,
)


def random_tables(rng: np.random.Generator, shape: tuple[int, ...], alpha: float) -> np.ndarray:
    """Valid int32 tables ``shape + (256,)`` from a Dirichlet(alpha) draw (small alpha = skewed)."""
    p = rng.dirichlet(np.full(256, alpha), size=shape)
    f = np.floor(p * (TOTAL - 256)).astype(np.int64) + 1
    idx = f.argmax(axis=-1)[..., None]
    np.put_along_axis(f, idx, np.take_along_axis(f, idx, -1) + (TOTAL - f.sum(-1))[..., None], -1)
    return f.astype(np.int32)


def sample(rng: np.random.Generator, freqs: np.ndarray) -> np.ndarray:
    """One symbol per table, drawn with probability f / TOTAL."""
    u = rng.integers(0, TOTAL, size=freqs.shape[:-1])
    return np.count_nonzero(np.cumsum(freqs, axis=-1) <= u[..., None], axis=-1).astype(np.uint8)


def roundtrip(symbols: np.ndarray, lengths: np.ndarray, freqs: np.ndarray) -> tuple:
    states, words, counts = encode_lanes(symbols, lengths, freqs)
    assert states.dtype == np.uint32 and words.dtype == np.uint16
    assert np.all(states >= STATE_LOWER)
    assert np.all(counts <= lengths) and counts.sum() == len(words)
    decoded = decode_lanes(states, words, counts, freqs, lengths)
    mask = np.arange(symbols.shape[1]) < lengths[:, None]
    np.testing.assert_array_equal(decoded[mask], symbols[mask])
    assert not decoded[~mask].any()
    return states, words, counts


def ideal_bytes(symbols: np.ndarray, freqs: np.ndarray, length: int) -> float:
    f = np.take_along_axis(freqs[:length], symbols[:length, None].astype(np.intp), -1)[:, 0]
    return float(-np.log2(f / TOTAL).sum() / 8)


@pytest.mark.parametrize("alpha", [100.0, 1.0, 0.05, 0.002])
def test_roundtrip_varying_tables(alpha: float) -> None:
    rng = np.random.default_rng(int(alpha * 1000))
    n_lanes, n = 12, 200
    freqs = random_tables(rng, (n_lanes, n), alpha)
    symbols = sample(rng, freqs)
    lengths = np.array([0, 1, 2, 199, 200, 200, 57, 100, 3, 200, 150, 0])
    roundtrip(symbols, lengths, freqs)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    lengths=st.lists(st.integers(0, 40), min_size=1, max_size=6),
    alpha=st.sampled_from([0.001, 0.1, 10.0]),
    adversarial=st.booleans(),
)
def test_roundtrip_property(seed: int, lengths: list[int], alpha: float, adversarial: bool) -> None:
    rng = np.random.default_rng(seed)
    n = max(lengths)
    freqs = random_tables(rng, (len(lengths), n), alpha)
    # Adversarial: uniform random bytes, so rare symbols (f = 1) show up too.
    symbols = (
        rng.integers(0, 256, size=(len(lengths), n), dtype=np.uint8)
        if adversarial
        else sample(rng, freqs)
    )
    roundtrip(symbols, np.array(lengths), freqs)


def test_extreme_tables() -> None:
    rng = np.random.default_rng(1)
    n = 300
    peaked = np.ones(256, dtype=np.int32)
    peaked[7] = MAX_FREQ
    uniform = np.full(256, 256, dtype=np.int32)
    cases = [
        (peaked, np.full(n, 7, np.uint8)),  # the likely symbol only
        (peaked, rng.integers(0, 256, n).astype(np.uint8)),  # mostly f = 1 symbols
        (peaked, np.zeros(n, np.uint8)),  # only an f = 1 symbol: 16 bits each
        (uniform, rng.integers(0, 256, n).astype(np.uint8)),
    ]
    for table, data in cases:
        freqs = np.broadcast_to(table, (1, n, 256))
        states, words, counts = roundtrip(data[None], np.array([n]), freqs)
        ideal = ideal_bytes(data, freqs[0], n)
        assert abs(2 * len(words) + 4 - ideal) <= 6, (ideal, len(words))
    # All-peaked data costs almost nothing: 300 * log2(65536/65281) bits < 2 bytes.
    freqs = np.broadcast_to(peaked, (1, n, 256))
    _, words, _ = encode_lanes(np.full((1, n), 7, np.uint8), np.array([n]), freqs)
    assert len(words) <= 1


@pytest.mark.parametrize("alpha", [30.0, 0.5, 0.02, 0.001])
def test_code_length_near_ideal(alpha: float) -> None:
    rng = np.random.default_rng(7)
    n_lanes, n = 16, 500
    freqs = random_tables(rng, (n_lanes, n), alpha)
    symbols = sample(rng, freqs)
    lengths = np.full(n_lanes, n)
    lengths[::3] = rng.integers(1, n, size=len(lengths[::3]))
    _, _, counts = roundtrip(symbols, lengths, freqs)
    for i in range(n_lanes):
        actual = 2 * counts[i] + 4  # words plus the 32-bit final state
        ideal = ideal_bytes(symbols[i], freqs[i], lengths[i])
        assert -4 <= actual - ideal <= 6, (i, actual, ideal)


def test_empty_and_zero_length_lanes() -> None:
    freqs = np.full((3, 0, 256), 256, np.int32)
    states, words, counts = encode_lanes(np.zeros((3, 0), np.uint8), np.zeros(3, int), freqs)
    assert list(states) == [STATE_LOWER] * 3 and len(words) == 0 and list(counts) == [0, 0, 0]
    assert decode_lanes(states, words, counts, freqs, np.zeros(3, int)).shape == (3, 0)
    states, words, counts = encode_lanes(
        np.zeros((0, 5), np.uint8), np.zeros(0, int), np.zeros((0, 5, 256), np.int32)
    )
    assert states.shape == (0,) and words.shape == (0,) and counts.shape == (0,)


def test_lane_words_are_independent() -> None:
    """Each lane's words depend only on that lane: coding it alone gives the same words."""
    rng = np.random.default_rng(3)
    freqs = random_tables(rng, (5, 64), 0.3)
    symbols = sample(rng, freqs)
    lengths = np.array([64, 10, 0, 33, 64])
    states, words, counts = encode_lanes(symbols, lengths, freqs)
    ends = np.cumsum(counts)
    for i in range(5):
        s1, w1, c1 = encode_lanes(symbols[i : i + 1], lengths[i : i + 1], freqs[i : i + 1])
        assert s1[0] == states[i] and c1[0] == counts[i]
        np.testing.assert_array_equal(w1, words[ends[i] - counts[i] : ends[i]])


def test_stepwise_decoder_active_forms() -> None:
    """Count and mask forms of ``active`` agree; rows of inactive lanes are never looked at."""
    rng = np.random.default_rng(4)
    lengths = np.array([30, 20, 20, 5, 0])  # sorted, so ``active`` can be a count
    freqs = random_tables(rng, (5, 30), 0.2)
    symbols = sample(rng, freqs)
    states, words, counts = encode_lanes(symbols, lengths, freqs)
    by_count = RansLaneDecoder(states, words, counts)
    by_mask = RansLaneDecoder(states, words, counts)
    for p in range(30):
        active = lengths > p
        garbage = freqs[:, p].copy()
        garbage[~active] = 0  # invalid tables in inactive rows
        a = by_count.decode_step(garbage, int(active.sum()))
        b = by_mask.decode_step(garbage, active)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a[active], symbols[active, p])
        assert not a[~active].any()
    by_count.finish()
    by_mask.finish()


def test_check_freqs() -> None:
    good = np.full((2, 3, 256), 256, dtype=np.int64)
    out = check_freqs(good)
    assert out.dtype == np.int32 and out.shape == good.shape
    one = np.ones(256, np.int32)
    one[0] = MAX_FREQ
    check_freqs(one)
    bad = []
    t = np.full(256, 256, np.int32)
    t[0] += 1
    bad.append(t)  # sums to TOTAL + 1
    t = np.full(256, 256, np.int32)
    t[0], t[1] = 0, 512
    bad.append(t)  # a zero entry
    t = np.full(256, 256, np.int32)
    t[0], t[1] = -1, 513
    bad.append(t)  # a negative entry
    t = np.ones(256, np.int64)
    t[0] = 2**32 + MAX_FREQ
    bad.append(t)  # wraps to a valid-looking table in 32 bits
    t = np.ones(256, np.int32)
    t[0], t[1] = -(2**31) + 2**16, 2**31 - 1 - 254  # overflowing sum
    bad.append(t)
    bad.append(np.full(256, 256.0))  # not integers
    bad.append(np.full(255, 257, np.int32))  # wrong width
    for t in bad:
        with pytest.raises(ValueError):
            check_freqs(t)
        with pytest.raises(CorruptChunkError):
            check_freqs(t, error=CorruptChunkError)


def test_invalid_tables_rejected_by_both_sides() -> None:
    rng = np.random.default_rng(5)
    freqs = random_tables(rng, (2, 8), 1.0)
    symbols = sample(rng, freqs)
    lengths = np.array([8, 8])
    states, words, counts = encode_lanes(symbols, lengths, freqs)
    bad = freqs.copy()
    bad[1, 5, 3] += 1
    with pytest.raises(ValueError):
        encode_lanes(symbols, lengths, bad)
    with pytest.raises(CorruptChunkError):
        decode_lanes(states, words, counts, bad, lengths)
    # Bad tables past a lane's end are never used, so never checked.
    bad = freqs.copy()
    bad[1, 6:] = 0
    short = np.array([8, 6])
    s, w, c = encode_lanes(symbols, short, bad)
    decode_lanes(s, w, c, bad, short)


def test_encode_argument_checks() -> None:
    freqs = np.full((2, 4, 256), 256, np.int32)
    symbols = np.zeros((2, 4), np.uint8)
    with pytest.raises(ValueError):
        encode_lanes(symbols, np.array([5, 1]), freqs)  # longer than n
    with pytest.raises(ValueError):
        encode_lanes(symbols, np.array([-1, 1]), freqs)
    with pytest.raises(ValueError):
        encode_lanes(symbols.astype(np.int64), np.array([4, 4]), freqs)
    with pytest.raises(ValueError):
        encode_lanes(symbols, np.array([4, 4]), freqs[:, :3])


def corrupt_variants(states: np.ndarray, words: np.ndarray, counts: np.ndarray):
    yield states, words[:-1], counts  # counts no longer match
    yield states, np.append(words, 5).astype(np.uint16), counts
    c = counts.copy()
    c[0] -= 1
    yield states, words[:-1], c  # a lane runs out of words
    c = counts.copy()
    c[0] += 1
    yield states, np.append(words, 0).astype(np.uint16), c  # a lane has a word too many
    c = counts.copy()
    c[0] -= 1
    c[1] += 1
    yield states, words, c  # a word moves between lanes
    s = states.copy()
    s[0] = STATE_LOWER - 1  # impossible state
    yield s, words, counts
    yield states.astype(np.uint64) + 2**32, words, counts  # too large
    for i in range(len(states)):
        for bit in (0, 5, 16, 31):
            s = states.copy()
            s[i] ^= np.uint32(1 << bit)
            yield s, words, counts
    for i in range(0, len(words), max(1, len(words) // 50)):
        for bit in (0, 9, 15):
            w = words.copy()
            w[i] ^= np.uint16(1 << bit)
            yield states, w, counts


def test_corrupt_streams_raise_or_decode() -> None:
    rng = np.random.default_rng(6)
    freqs = random_tables(rng, (3, 60), 0.3)
    symbols = sample(rng, freqs)
    lengths = np.array([60, 41, 60])
    states, words, counts = encode_lanes(symbols, lengths, freqs)
    outcomes = []
    for s, w, c in corrupt_variants(states, words, counts):
        try:
            decoded = decode_lanes(s, w, c, freqs, lengths)
            assert decoded.shape == symbols.shape  # garbage is allowed, other errors are not
            outcomes.append(False)
        except CorruptChunkError:
            outcomes.append(True)
    assert all(outcomes[:7])  # every structural corruption
    # The final-state check catches nearly all bit flips (a random 32-bit state rarely ends
    # exactly at L with every word consumed).
    assert sum(outcomes) >= 0.9 * len(outcomes)
    # Bit flips in the state are caught by the final-state check in most cases.
    s = states.copy()
    s[0] ^= np.uint32(1 << 20)
    with pytest.raises(CorruptChunkError):
        decode_lanes(s, words, counts, freqs, lengths)


def test_decoder_rejects_bad_arrays() -> None:
    with pytest.raises(CorruptChunkError):
        RansLaneDecoder(np.array([STATE_LOWER]), np.zeros(2, np.uint16), np.array([-1]))
    with pytest.raises(CorruptChunkError):
        RansLaneDecoder(np.array([STATE_LOWER]), np.zeros(2, np.uint16), np.array([3]))
    with pytest.raises(CorruptChunkError):
        RansLaneDecoder(np.array([STATE_LOWER, STATE_LOWER]), np.zeros(0, np.uint16), np.array([0]))
    with pytest.raises(CorruptChunkError):
        RansLaneDecoder(np.array([STATE_LOWER]), np.array([70000]), np.array([1]))
    with pytest.raises(CorruptChunkError):
        RansLaneDecoder(np.array([float(STATE_LOWER)]), np.zeros(0, np.uint16), np.array([0]))
    # A lane that decodes nothing must still sit at the initial state with no words.
    dec = RansLaneDecoder(np.array([STATE_LOWER + 1]), np.zeros(0, np.uint16), np.array([0]))
    with pytest.raises(CorruptChunkError):
        dec.finish()


@pytest.mark.parametrize("extreme", [False, True])
def test_encode_intervals_equals_encode_lanes(extreme: bool):
    """The compiled interval encoder writes the same bitstream as the numpy table encoder,
    also with the extreme entries 1 and MAX_FREQ (``extreme``: one symbol takes all but 255)."""
    from lmcodec.rans import encode_intervals

    rng = np.random.default_rng(11)
    n_lanes, n = 5, 300
    raw = rng.integers(1, 500, (n_lanes, n, 256))
    if extreme:
        raw = np.zeros_like(raw)
    freqs = 1 + raw * (TOTAL - 256) // np.maximum(raw.sum(axis=-1, keepdims=True), 1)
    freqs[..., 0] += TOTAL - freqs.sum(axis=-1)
    symbols = rng.integers(0, 256, (n_lanes, n), dtype=np.uint8)
    lengths = np.array([0, 1, 150, 299, 300])
    rows = np.arange(n_lanes)[:, None], np.arange(n)[None, :]
    f = freqs[rows[0], rows[1], symbols]
    c = np.cumsum(freqs, axis=-1)[rows[0], rows[1], symbols] - f
    expected = encode_lanes(symbols, lengths, freqs)
    got = encode_intervals(c, f, lengths)
    assert all(np.array_equal(a, b) for a, b in zip(expected, got))
    with pytest.raises(ValueError):
        encode_intervals(c, np.zeros_like(f), lengths)
