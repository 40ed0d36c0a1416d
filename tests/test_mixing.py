"""lmcodec.mixing: table contract on any input, encoder == decoder, lane independence,
state carried across segments, worst-case cost bound, a pinned digest of the output, and the
compiled backend (lmcodec.mixing_kernels) equal to the numpy reference in tables and state."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmcodec.errors import CorruptChunkError
from lmcodec.frequency_model import N_SYMBOLS, TOTAL
from lmcodec.mixing import (
    BACKENDS,
    COMPONENTS,
    D_MAX,
    EXP_BITS,
    LOG_ONE,
    AdaptiveMixer,
    MixerConfig,
    exp_lut,
    log_lut,
    mix_sequence,
    table_bits,
    to_table,
)
from lmcodec.rans import MAX_FREQ, RansLaneDecoder, check_freqs, encode_intervals, encode_lanes


def _check_contract(tables: np.ndarray) -> None:
    assert tables.dtype == np.int32
    assert tables.shape[-1] == N_SYMBOLS
    assert tables.min() >= 1
    assert tables.max() <= MAX_FREQ == 65281
    assert np.all(tables.sum(axis=-1, dtype=np.int64) == TOTAL)
    check_freqs(tables)


def _lm_table(rng: np.random.Generator, shape: tuple[int, ...], peaked: bool = True) -> np.ndarray:
    """Valid LM tables: random, optionally with one entry at the maximum 65281."""
    raw = rng.integers(0, 1000, (*shape, N_SYMBOLS))
    if peaked:
        raw[..., 0] = 0
    f = 1 + (raw * (TOTAL - N_SYMBOLS)) // np.maximum(raw.sum(-1, keepdims=True), 1)
    f[..., 0] += TOTAL - f.sum(-1)
    return f.astype(np.int32)


def _text(n: int, seed: int = 0) -> np.ndarray:
    words = [b"the ", b"mixer ", b"adapts ", b"to ", b"data ", b"and ", b"repeats ", b"\n"]
    rng = np.random.default_rng(seed)
    out = b"".join(words[i] for i in rng.integers(0, len(words), n))
    return np.frombuffer(out[:n], dtype=np.uint8)


def test_luts_are_integer_and_monotone():
    lg, ex = log_lut(), exp_lut()
    assert lg.dtype == np.int32 and ex.dtype == np.int64
    assert lg[1] == 0 and all(lg[1 << k] == k * LOG_ONE for k in range(17))
    assert np.all(np.diff(lg[1:]) >= 0)
    x = np.arange(1, TOTAL + 1)
    err = LOG_ONE * np.log2(x) - lg[1:]  # float only to check the integer table
    assert err.min() >= -1e-9 and err.max() < 1
    assert ex[0] == 1 << EXP_BITS and ex[D_MAX] == 1 and np.all(np.diff(ex) <= 0)
    d = np.arange(LOG_ONE * 8)
    assert np.allclose(ex[d], 2.0 ** (EXP_BITS - d / LOG_ONE), rtol=2e-6, atol=1)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, (1 << 46) - 1), min_size=N_SYMBOLS, max_size=N_SYMBOLS),
    st.integers(0, 255),
)
def test_to_table_contract_any_input(values, hot):
    x = np.array([values], dtype=np.int64)
    x[0, hot] += 1  # sum > 0
    _check_contract(to_table(x))


def test_to_table_extremes():
    cases = np.zeros((4, N_SYMBOLS), dtype=np.int64)
    cases[0, 7] = 1  # all mass on one symbol -> 65281
    cases[1] = 1  # uniform -> 256 each
    cases[2, :] = (1 << 46) - 1
    cases[3, 255] = 1 << 40
    cases[3, :3] = 1
    t = to_table(cases)
    _check_contract(t)
    assert t[0, 7] == MAX_FREQ and np.all(t[1] == 256)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(1, 5), st.integers(1, 60), st.sampled_from(["valid", "garbage", "none"]))
def test_step_tables_obey_contract(seed, lanes, n, lm_kind):
    """Any LM input (valid, out-of-range garbage, absent) and any bytes give valid tables."""
    rng = np.random.default_rng(seed)
    if lm_kind == "valid":
        lm = _lm_table(rng, (lanes, n))
    elif lm_kind == "garbage":
        lm = rng.integers(-(2**31), 2**31 - 1, (lanes, n, N_SYMBOLS)).astype(np.int64)
    else:
        lm = None
    sym = rng.integers(0, 256, (lanes, n)) if seed % 2 else np.zeros((lanes, n), dtype=np.int64)
    lengths = rng.integers(0, n + 1, lanes)
    _check_contract(mix_sequence(lm, sym, lengths))


def test_contract_with_saturated_state():
    """Long constant runs (counts at their limits, long matches, weights at their clamp) and a
    sudden switch to adversarial input keep every table valid."""
    rng = np.random.default_rng(1)
    n = 3000
    sym = np.zeros((2, n), dtype=np.int64)
    sym[1, 2000:] = rng.integers(0, 256, n - 2000)
    lm = np.ones((2, n, N_SYMBOLS), dtype=np.int32)
    lm[:, :, 0] = MAX_FREQ  # confident and right on the run, wrong afterwards
    lm[1, 2500:, 0] = 1
    lm[1, 2500:, 1] = MAX_FREQ
    _check_contract(mix_sequence(lm, sym))


def _decode_with_mixer(lm: np.ndarray, states, words, counts, lengths, backend: str, fused: bool):
    B, n = lm.shape[:2]
    mixer = AdaptiveMixer(B, backend=backend)
    dec = RansLaneDecoder(states, words, counts)
    out = np.zeros((B, n), dtype=np.uint8)
    for p in range(n):
        act = lengths > p
        if fused:
            s = mixer.decode(lm[:, p], dec, act)
        else:
            s = dec.decode_step(mixer.step(lm[:, p]), act)
            mixer.update(s, act)
        out[:, p] = s
    dec.finish()
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fused", [True, False])
def test_encoder_tables_equal_decoder_tables_through_rans(backend, fused):
    """mix_sequence + rANS encode, then step/decode_step/update or the fused decode()."""
    rng = np.random.default_rng(2)
    B, n = 4, 700
    sym = np.stack([_text(n, 3), rng.integers(0, 256, n), np.zeros(n, np.int64), _text(n, 4)]).astype(np.uint8)
    lm = _lm_table(rng, (B, n))
    lengths = np.array([n, n - 17, 0, 300])
    tables = mix_sequence(lm, sym, lengths)
    states, words, counts = encode_lanes(sym, lengths, tables)
    decoded = _decode_with_mixer(lm, states, words, counts, lengths, backend, fused)
    for i in range(B):
        assert np.array_equal(decoded[i, : lengths[i]], sym[i, : lengths[i]])
    # a lane whose words are cut short is a corrupt chunk, not garbage or a crash
    counts_short = counts.copy()
    counts_short[0] -= 5
    with pytest.raises(CorruptChunkError):
        _decode_with_mixer(lm, states, words[5:], counts_short, lengths, backend, fused)


def test_mix_sequence_equals_stepwise_and_is_deterministic():
    rng = np.random.default_rng(3)
    B, n = 3, 400
    sym = np.stack([_text(n, 5), _text(n, 6), rng.integers(0, 256, n)])
    lm = _lm_table(rng, (B, n))
    lengths = np.array([n, 250, 399])
    a = mix_sequence(lm, sym, lengths)
    b = mix_sequence(lm, sym, lengths)
    assert np.array_equal(a, b)
    m = AdaptiveMixer(B)
    for p in range(n):
        t = m.step(lm[:, p])
        act = lengths > p
        assert np.array_equal(t[act], a[act, p])
        m.update(sym[:, p], act)


def test_lanes_are_independent():
    rng = np.random.default_rng(4)
    B, n = 4, 500
    sym = np.stack([_text(n, 7), rng.integers(0, 256, n), _text(n, 8), np.full(n, 9)])
    lm = _lm_table(rng, (B, n))
    lengths = np.array([n, 123, 480, n])
    together = mix_sequence(lm, sym, lengths)
    for i in range(B):
        k = lengths[i]
        alone = mix_sequence(lm[i : i + 1, :k], sym[i : i + 1, :k])
        assert np.array_equal(alone[0], together[i, :k])
    other = sym.copy()
    other[1:] = rng.integers(0, 256, (B - 1, n))
    assert np.array_equal(mix_sequence(lm, other, lengths)[0], together[0])


def test_state_carries_across_segments_and_reset():
    """Feeding a stream in LM segments (separate calls, LM restarting) equals one long call; the
    adaptive state is what carries over, and reset() starts chosen lanes afresh."""
    rng = np.random.default_rng(5)
    n, seg = 900, 256
    sym = np.stack([_text(n, 9), _text(n, 10)])
    lm = _lm_table(rng, (2, n))
    whole = mix_sequence(lm, sym)
    m = AdaptiveMixer(2)
    parts = [m.mix_sequence(lm[:, a : a + seg], sym[:, a : a + seg]) for a in range(0, n, seg)]
    assert np.array_equal(np.concatenate(parts, axis=1), whole)
    # the second segment really used what the first one learned
    fresh = mix_sequence(lm[:, seg : 2 * seg], sym[:, seg : 2 * seg])
    assert not np.array_equal(fresh, whole[:, seg : 2 * seg])
    # reset lane 1 only: lane 1 behaves like a fresh mixer, lane 0 goes on
    m = AdaptiveMixer(2)
    m.mix_sequence(lm[:, :seg], sym[:, :seg])
    m.reset(np.array([False, True]))
    after = m.mix_sequence(lm[:, seg : 2 * seg], sym[:, seg : 2 * seg])
    assert np.array_equal(after[0], whole[0, seg : 2 * seg])
    assert np.array_equal(after[1], fresh[1])


def _bits(tables: np.ndarray, sym: np.ndarray) -> np.ndarray:
    f = np.take_along_axis(tables, sym[..., None].astype(np.intp), axis=-1)[..., 0]
    return 16 - np.log2(f)


def test_worst_case_cost_with_adversarial_lm():
    """Random bytes and an LM that puts 65281 on a wrong byte every time: the mix costs at most
    8 n + SWITCH_CLAMP + 1 + 0.01 n bits in total and ~8 bits per byte after a short warm-up."""
    rng = np.random.default_rng(6)
    B, n = 2, 3000
    sym = rng.integers(0, 256, (B, n))
    lm = np.ones((B, n, N_SYMBOLS), dtype=np.int32)
    wrong = (sym + 1 + rng.integers(0, 255, (B, n))) % 256
    np.put_along_axis(lm, wrong[..., None], MAX_FREQ, axis=-1)
    cfg = MixerConfig()
    bits = _bits(mix_sequence(lm, sym, config=cfg), sym)
    lm_bits = _bits(lm, sym)
    assert lm_bits.mean() > 15.9  # the LM alone: 16 bits per byte
    assert np.all(bits.sum(axis=1) <= 8 * n + cfg.switch_clamp_bits + 1 + 0.01 * n)
    assert bits.max() <= 8 + cfg.switch_clamp_bits + 1.01
    assert bits[:, 64:].mean() <= 8.01
    assert np.all(bits[:, 64:].sum(axis=1) <= 8.01 * (n - 64))


def test_uniform_data_without_lm_costs_about_8_bits():
    rng = np.random.default_rng(7)
    sym = rng.integers(0, 256, (1, 2000))
    bits = _bits(mix_sequence(None, sym), sym)
    assert bits.sum() <= 8 * 2000 + 17 + 0.01 * 2000


def test_match_and_counts_learn_repeats():
    """A random block repeated: the second copy costs far less than 8 bits per byte."""
    rng = np.random.default_rng(8)
    block = rng.integers(0, 256, 600)
    sym = np.concatenate([block, block])[None]
    bits = _bits(mix_sequence(None, sym), sym)[0]
    assert bits[:600].mean() > 7.5
    assert bits[700:].mean() < 1.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_order_4_and_6_contexts_learn_what_order_2_cannot(backend):
    """Each next byte follows from the previous four (a random order-4 rule over 4 letters,
    replaced by a random letter 10 % of the time), so the last two bytes alone leave it
    uncertain: o4 and o6 learn it, o2 cannot."""
    rng = np.random.default_rng(9)
    rule = rng.integers(0, 4, 4**4)
    seq = list(rng.integers(0, 4, 4))
    for noise in rng.random(6000) < 0.1:
        seq.append(int(rng.integers(4)) if noise else int(rule[((seq[-4] * 4 + seq[-3]) * 4 + seq[-2]) * 4 + seq[-1]]))
    sym = np.array(seq, dtype=np.uint8)[None] + 97
    costs = {}
    for comps in (("lm", "o2"), ("lm", "o2", "o4"), ("lm", "o2", "o6")):
        cfg = MixerConfig(components=comps, o2_bits=16, o4_bits=12, o6_bits=12)
        costs[comps[-1]] = _bits(mix_sequence(None, sym, config=cfg, backend=backend), sym)[0, 3000:].mean()
    assert costs["o2"] > 1.6  # measured 1.86
    assert costs["o4"] < 0.8 and costs["o6"] < 0.95  # measured 0.72, 0.86


def test_tables_scale_with_the_bytes_a_group_codes():
    """With scale_tables each group's hashed tables get 2-4 rows per byte it codes (at least
    2**8, at most the configured size); without it every group has the configured size."""
    assert [table_bits(16, n) for n in (None, 0, 1, 256, 257, 2040, 16384, 10**6)] == [16, 8, 8, 9, 10, 12, 15, 16]
    cfg = MixerConfig(components=COMPONENTS, o2_bits=14, hash_bits=18, scale_tables=True)
    m = AdaptiveMixer(3, cfg, "numba", groups=np.array([0, 0, 1]), group_bytes=np.array([4096, 100]))
    assert m.gbits.tolist() == [[13, 13, 13, 13], [8, 8, 8, 8]]
    assert m.c4.shape == (2, 1 << 13, 256) and m.mtab.shape == (2, 1 << 13)
    plain = AdaptiveMixer(3, replace(cfg, scale_tables=False), "numba", groups=np.array([0, 0, 1]),
                          group_bytes=np.array([4096, 100]))
    assert plain.gbits.tolist() == [[14, 16, 16, 18]] * 2
    with pytest.raises(ValueError, match="group_bytes"):
        AdaptiveMixer(3, cfg, "numba", groups=np.array([0, 0, 1]), group_bytes=np.array([5]))


def test_record_length_explicit_and_detected():
    """Rows that repeat with a period: an explicit record length helps at once; detection finds
    a period that repeats regularly; lengths are validated."""
    rng = np.random.default_rng(9)
    width = 37
    row = rng.integers(0, 256, width)
    data = np.tile(row, 40)
    data = np.where(rng.random(data.size) < 0.3, rng.integers(0, 256, data.size), data)
    sym = data[None]
    cfg = MixerConfig(components=("lm", "rec"))
    m = AdaptiveMixer(1, cfg)
    m.set_record_length(width)
    explicit = _bits(m.mix_sequence(None, sym), sym).sum()
    detect_m = AdaptiveMixer(1, cfg)
    detected = _bits(detect_m.mix_sequence(None, sym), sym).sum()
    assert explicit < 0.75 * 8 * data.size
    assert detect_m.rlen[0] == width and detected < 0.8 * 8 * data.size
    with pytest.raises(ValueError):
        m.set_record_length(-1)


def test_api_misuse_raises():
    m = AdaptiveMixer(2)
    with pytest.raises(RuntimeError):
        m.update(np.zeros(2, np.int64))
    m.step(None)
    with pytest.raises(RuntimeError):
        m.step(None)
    with pytest.raises(ValueError):
        m.update(np.array([0, 256]))
    with pytest.raises(ValueError):
        AdaptiveMixer(2).step(np.ones((3, N_SYMBOLS), np.int32))
    with pytest.raises(ValueError):
        MixerConfig(components=("o1", "lm"))
    with pytest.raises(ValueError):
        MixerConfig(components=("lm", "o1", "o1"))


@pytest.mark.parametrize("components", [COMPONENTS, ("lm",), ("lm", "o1", "match")])
def test_component_subsets_work(components):
    rng = np.random.default_rng(10)
    sym = np.stack([_text(300, 11), rng.integers(0, 256, 300)])
    lm = _lm_table(rng, (2, 300))
    _check_contract(mix_sequence(lm, sym, config=MixerConfig(components=components)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_default_output_digest_is_pinned(backend):
    """The default mixer's exact output for a fixed input. A change here changes every stream
    coded with it: bump the format version (and this digest) deliberately, never silently."""
    rng = np.random.default_rng(12345)
    B, n = 3, 500
    sym = np.stack([_text(n, 1), rng.integers(0, 256, n), np.tile(np.arange(50), 10)])
    lm = _lm_table(rng, (B, n))
    m = AdaptiveMixer(B, backend=backend)
    m.set_record_length(np.array([0, 0, 50]))
    tables = m.mix_sequence(lm, sym, np.array([n, 480, n]))
    digest = hashlib.sha256(np.ascontiguousarray(tables, dtype="<i4").tobytes()).hexdigest()
    assert digest == PINNED_DIGEST


PINNED_DIGEST = "dff8b3b3ef7605eb78ed125693c4b14371ea202b7e3b0ebeb2f271afb7119aaf"


# -- the compiled backend against the numpy reference ---------------------------------------------

_STATE = ("w", "vsw", "t", "hist8", "c0", "c1", "c2", "c4", "c6", "hist", "rfixed", "crec", "rlast", "rcand", "rvote",
          "rlen", "mtab", "mtab2", "mptr", "mlen", "mhit", "mtot")


def _state(m: AdaptiveMixer) -> dict:
    return {k: getattr(m, k).copy() for k in _STATE if getattr(m, k, None) is not None}


def _mixed_input(rng: np.random.Generator, B: int, n: int, lm_kind: str):
    """Repeats (match, record and order-2 hits), noise and runs; LM tables valid, out of range
    (clipping) or absent."""
    period = int(rng.integers(2, 40))
    kinds = [_text(n, int(rng.integers(1000))), rng.integers(0, 256, n),
             np.tile(rng.integers(0, 256, period), n // period + 1)[:n], np.repeat(rng.integers(0, 4, n // 50 + 1), 50)[:n]]
    sym = np.stack([np.asarray(kinds[i % 4], dtype=np.uint8) for i in range(B)])
    if lm_kind == "valid":
        lm = _lm_table(rng, (B, n), peaked=bool(rng.integers(2)))
    elif lm_kind == "garbage":
        lm = rng.integers(-(2**20), 2**20, (B, n, N_SYMBOLS)).astype(np.int64)
    else:
        lm = None
    return sym, lm, period


_CONFIGS = [
    MixerConfig(),
    MixerConfig(components=("lm",)),
    MixerConfig(components=("lm", "rec"), rec_votes=2),
    MixerConfig(components=("lm", "o2", "match"), match_long=0, o2_bits=0, hash_bits=8, history_bits=10),
    MixerConfig(components=("lm", "match", "o1", "o0"), o0_limit=20, o1_limit=3, match_min=2, match_long=8,
                set_len_edges=(2, 4, 8), lr=50000, lr_boost=64, switch_clamp_bits=1, switch_init_bits=0),
    MixerConfig(o2_limit=7, o2_bits=16, hash_bits=18, history_bits=12, init_weights=(-2 * 65536,) * len(COMPONENTS)),
    MixerConfig(components=COMPONENTS, o2_limit=5, o4_bits=8, o6_bits=9, set_len_edges=(1, 8, 32)),
    MixerConfig(components=("lm", "o6", "match", "o4"), o4_bits=12, o6_bits=8, hash_bits=10),
    MixerConfig(components=COMPONENTS, o2_bits=14, hash_bits=18, scale_tables=True),
]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.integers(0, len(_CONFIGS) - 1), st.integers(1, 6), st.integers(1, 700),
       st.sampled_from(["valid", "garbage", "none"]), st.booleans())
def test_backends_agree_on_tables_and_state(seed, cfg_index, lanes, n, lm_kind, explicit_record):
    rng = np.random.default_rng(seed)
    sym, lm, period = _mixed_input(rng, lanes, n, lm_kind)
    lengths = rng.integers(0, n + 1, lanes)
    runs = []
    group_bytes = rng.integers(0, 3 * n, lanes)  # sizes the tables when the config scales them
    for backend in BACKENDS:
        m = AdaptiveMixer(lanes, _CONFIGS[cfg_index], backend, group_bytes=group_bytes)
        if explicit_record:
            m.set_record_length(np.full(lanes, period), np.arange(lanes) % 2 == 0)
        tables = m.mix_sequence(lm, sym, lengths)
        runs.append((tables, _state(m)))
    (t_ref, s_ref), (t_jit, s_jit) = runs
    assert np.array_equal(t_ref, t_jit)
    assert s_ref.keys() == s_jit.keys()
    for k in s_ref:
        assert np.array_equal(s_ref[k], s_jit[k]), k


@pytest.mark.parametrize("backend", BACKENDS)
def test_code_equals_step_and_update(backend):
    """The encoder's fused :meth:`AdaptiveMixer.code` (a subset of lanes, ragged counts, in pieces,
    threads or not) gives the intervals of the step/update tables and leaves the same state."""
    rng = np.random.default_rng(7)
    B, n = 5, 400
    sym, lm, _ = _mixed_input(rng, B, n, "valid")
    lanes = np.array([4, 0, 2])
    counts = np.array([n, 250, 0])
    ref = AdaptiveMixer(B, backend="numpy")
    want_cum = np.zeros((3, n), np.int64)
    want_freq = np.zeros((3, n), np.int64)
    rows = np.ones((B, N_SYMBOLS), np.int32)
    for p in range(n):
        rows[lanes] = lm[lanes, p]
        table = ref.step(rows)
        s = np.zeros(B, np.int64)
        s[lanes] = sym[lanes, p]
        live = np.zeros(B, bool)
        live[lanes[counts > p]] = True
        for r, j in enumerate(lanes):
            if live[j]:
                want_freq[r, p] = table[j, s[j]]
                want_cum[r, p] = table[j, : s[j]].sum()
        ref.update(s, live)
    for parallel in (None, lambda fn, items: list(map(fn, items))):
        m = AdaptiveMixer(B, backend=backend)
        half = 123
        c1, f1 = m.code(lm[lanes, :half], sym[lanes, :half], lanes, np.minimum(counts, half), parallel)
        c2, f2 = m.code(lm[lanes, half:], sym[lanes, half:], lanes, np.maximum(counts - half, 0), parallel)
        assert np.array_equal(np.hstack([c1, c2]), want_cum) and np.array_equal(np.hstack([f1, f2]), want_freq)
        got, want = _state(m), _state(ref)
        assert all(np.array_equal(got[k], want[k]) for k in want)
    with pytest.raises(ValueError, match="distinct"):
        AdaptiveMixer(B, backend=backend).code(lm[:2, :5], sym[:2, :5], np.array([1, 1]), np.array([5, 5]))


def test_backend_selection(monkeypatch):
    monkeypatch.setenv("LMCODEC_MIXER", "numpy")
    assert AdaptiveMixer(1).backend == "numpy"
    monkeypatch.setenv("LMCODEC_MIXER", "fortran")
    with pytest.raises(ValueError, match="LMCODEC_MIXER"):
        AdaptiveMixer(1)
    with pytest.raises(ValueError, match="backend"):
        AdaptiveMixer(1, backend="fortran")


# -- lanes sharing statistics (groups) -----------------------------------------------------------


def _shared_input(rng: np.random.Generator, n: int):
    """Five lanes, two groups; the lanes of a group carry shifted copies of one text (each can
    match into the others' earlier bytes) plus noise in one lane."""
    text = _text(n + 40, 11)
    sym = np.stack([text[40:], text[31:-9], rng.integers(0, 256, n), text[20:-20], text[:-40]]).astype(np.uint8)
    return sym, _lm_table(rng, (5, n)), np.array([0, 0, 0, 1, 1]), np.array([n, n - 50, 300, n, 0])


def _code_all(lm, sym, lengths, groups, lanes=None, pieces=(0,), parallel=None):
    """(cum, freq) [5, n] of every lane from :meth:`AdaptiveMixer.code`, the rounds cut at
    ``pieces`` and the lanes listed in the order ``lanes``."""
    B, n = sym.shape
    lanes = np.arange(B) if lanes is None else np.asarray(lanes)
    m = AdaptiveMixer(B, groups=groups)
    cum = np.zeros((B, n), np.int32)
    freq = np.zeros((B, n), np.int32)
    for lo, hi in zip(pieces, (*pieces[1:], n)):
        counts = np.clip(lengths[lanes] - lo, 0, hi - lo)
        c, f = m.code(lm[lanes, lo:hi], sym[lanes, lo:hi], lanes, counts, parallel)
        cum[lanes, lo:hi], freq[lanes, lo:hi] = c, f
    return cum, freq


def test_shared_groups_encoder_and_decoder_agree():
    """With groups, the encoder's fused code() gives the same intervals with the lanes listed in
    any order, the rounds in pieces, threads or not; the fused decoder (one lane fed as known
    bytes, as a raw stream is) recovers every lane; groups do not interact."""
    rng = np.random.default_rng(21)
    n = 500
    sym, lm, groups, lengths = _shared_input(rng, n)
    cum, freq = _code_all(lm, sym, lengths, groups)
    for parallel in (None, lambda fn, items: list(map(fn, items))):
        got = _code_all(lm, sym, lengths, groups, [3, 0, 4, 2, 1], (0, 211, 300), parallel)
        assert np.array_equal(got[0], cum) and np.array_equal(got[1], freq)
    for members in ([0, 1, 2], [3, 4]):
        alone = _code_all(lm[members], sym[members], lengths[members], groups[members] - groups[members][0])
        assert np.array_equal(alone[1], freq[members]) and np.array_equal(alone[0], cum[members])
    coded = np.array([0, 1, 3, 4])
    states, words, counts = encode_intervals(cum[coded], freq[coded], lengths[coded])
    all_states = np.full(5, 1 << 16, np.uint32)
    all_states[coded] = states
    all_counts = np.zeros(5, np.int64)
    all_counts[coded] = counts
    dec = RansLaneDecoder(all_states, words, all_counts)
    m = AdaptiveMixer(5, groups=groups)
    out = np.zeros_like(sym)
    for p in range(n):
        known = np.zeros(5, np.int16)
        known[2] = int(sym[2, p]) + 1
        out[:, p] = m.decode(lm[:, p], dec, lengths > p, known)
    dec.finish()
    for j in range(5):
        assert np.array_equal(out[j, : lengths[j]], sym[j, : lengths[j]])


def test_shared_groups_help_and_are_validated():
    rng = np.random.default_rng(22)
    n = 500
    sym, lm, groups, lengths = _shared_input(rng, n)
    lengths[:] = n

    def cost(g) -> float:
        freq = _code_all(lm, sym, lengths, g)[1]
        return float(np.sum(16 - np.log2(freq[[1, 3, 4]])))  # lanes that can match into others

    assert cost(groups) < 0.5 * cost(np.arange(5))
    with pytest.raises(ValueError, match="compiled"):
        AdaptiveMixer(5, backend="numpy", groups=groups)
    for bad in ([0, 0, 2, 2, 3], [1, 1, 1, 1, 1], [0, 1, 0, 1, 1], [0, 0]):
        with pytest.raises(ValueError, match="groups"):
            AdaptiveMixer(5, groups=np.array(bad))
    m = AdaptiveMixer(5, groups=groups)
    with pytest.raises(RuntimeError, match="code"):
        m.step(lm[:, 0])
    with pytest.raises(ValueError, match="every lane of a group"):
        m.reset(np.array([True, False, False, False, False]))
    m.reset(np.array([False, False, False, True, True]))
