"""Mode lm_mix (lmcodec.mixcoding): round trips, grouping invariance, raw streams, the codec's
record length and version handling. Body corruption and truncation are in test_format.py."""

from __future__ import annotations

import numpy as np
import pytest

from lmcodec import LMCodec, mixcoding
from lmcodec.errors import CorruptChunkError
from lmcodec.format import HEADER_SIZE, Mode, parse_header
from lmcodec.frequency_model import N_SYMBOLS, TOTAL
from lmcodec.mixcoding import StreamParams, decode_chunks, encode_chunks
from lmcodec.preprocess import plane_layout, split_planes

from conftest import FAKE, lm_friendly


def _planes(data: np.ndarray, dtype):
    return split_planes(data.view(np.uint8).reshape(-1), dtype)


def _signal(n: int, dtype: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (np.cumsum(rng.normal(0, 20, n)) % 2000).astype(dtype)


CASES = [
    (np.frombuffer(lm_friendly(3000), np.uint8), None, 64, StreamParams(4, 0)),
    (np.frombuffer(b"abcabcabd" * 200, np.uint8), None, 100, StreamParams(3, 9)),
    (_signal(1001, "<i2"), np.dtype("<i2"), 50, StreamParams(5, 0)),
    (_signal(333, ">f8"), np.dtype(">f8"), 7, StreamParams(1, 3)),
    (_signal(777, "<i4").view(np.uint8)[:-3], np.dtype("<i4"), 256, StreamParams(2, 0)),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_round_trip_and_grouping_invariance(case):
    data, dtype, seg, prm = CASES[case]
    planes = _planes(data, dtype)
    layout = [(len(p), k) for p, k in planes]
    (body,) = encode_chunks(FAKE, [planes], seg, [prm])
    for group in (1, 3):
        assert encode_chunks(FAKE, [planes], seg, [prm], group=group) == [body]
        ((decoded, params),) = decode_chunks(FAKE, [body], [layout], seg, group=group)
        assert [d.tobytes() for d in decoded] == [p.tobytes() for p, _ in planes]
        assert params == prm


def test_pooled_chunks_equal_single_chunks():
    chunks = [CASES[0], CASES[2], CASES[4]]
    seg = 40
    planes = [_planes(d, dt) for d, dt, _, _ in chunks]
    params = [StreamParams(2, 0), StreamParams(3, 5), StreamParams(1, 0)]
    pooled = encode_chunks(FAKE, planes, seg, params, group=4)
    single = [encode_chunks(FAKE, [p], seg, [q])[0] for p, q in zip(planes, params)]
    assert pooled == single
    layouts = [[(len(p), k) for p, k in pl] for pl in planes]
    out = decode_chunks(FAKE, pooled, layouts, seg, group=5)
    for (got, _), pl in zip(out, planes):
        assert [g.tobytes() for g in got] == [p.tobytes() for p, _ in pl]


def test_noise_streams_are_stored_raw():
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, 3000, dtype=np.uint8)
    skewed = np.frombuffer(lm_friendly(1000), np.uint8)
    data = np.concatenate([skewed, noise])
    (body,) = encode_chunks(FAKE, [[(data, 0)]], 100, [StreamParams(5, 0)])  # 8 streams of 500
    bitmap = body[4]
    assert bitmap == 0b11111100  # the two skewed streams are coded, the six noise streams raw
    assert len(body) < 4 + 1 + 3000 + 1000
    ((decoded, _),) = decode_chunks(FAKE, [body], [[(len(data), 0)]], 100)
    assert decoded[0].tobytes() == data.tobytes()


class _Adversary:
    """A model that puts almost all its mass on a wrong byte every time."""

    context_length = 64
    model_id = b"ADVERSRY"

    @staticmethod
    def _table(n: int) -> np.ndarray:
        t = np.ones((n, N_SYMBOLS), np.int32)
        t[:, 0] = TOTAL - (N_SYMBOLS - 1)  # data never holds byte 0 below
        return t

    def full_freqs(self, tokens):
        b, n = np.asarray(tokens).shape
        return np.broadcast_to(self._table(1)[None], (b, n, N_SYMBOLS)).copy()

    def decoder(self, batch):
        outer = self

        class Step:
            def step(self, tokens):
                return outer._table(len(tokens))

        return Step()


def test_confidently_wrong_model_costs_at_most_raw_per_stream():
    rng = np.random.default_rng(3)
    data = rng.integers(1, 256, 4096, dtype=np.uint8)
    model = _Adversary()
    (body,) = encode_chunks(model, [[(data, 0)]], 64, [StreamParams(16, 0)])  # 4 streams
    assert len(body) <= len(data) + 5  # version, transform, two varints, bitmap: all raw
    predictable = np.tile(np.arange(1, 17, dtype=np.uint8), 256)
    (body,) = encode_chunks(model, [[(predictable, 0)]], 64, [StreamParams(16, 0)])
    assert len(body) < len(predictable) // 4  # the mixer learns the data despite the model
    ((decoded, _),) = decode_chunks(model, [body], [[(len(predictable), 0)]], 64)
    assert decoded[0].tobytes() == predictable.tobytes()


def test_body_validation():
    data = np.frombuffer(lm_friendly(600), np.uint8)
    layout = [(600, 0)]
    (body,) = encode_chunks(FAKE, [[(data, 0)]], 100, [StreamParams(2, 0)])
    for version in (b"\x01", b"\x02", b"\x04"):
        with pytest.raises(CorruptChunkError, match="mixer version"):
            decode_chunks(FAKE, [version + body[1:]], [layout], 100)
    with pytest.raises(CorruptChunkError, match="unknown transform"):
        decode_chunks(FAKE, [body[:1] + b"\x05" + body[2:]], [layout], 100)
    with pytest.raises(CorruptChunkError, match=r"unknown transform 3 \(this body may carry \[0, 1, 2\]\)"):
        decode_chunks(FAKE, [b"\x01\x03" + body[2:]], [layout], 100, [2])  # zigzag came with version 3
    (v1,) = encode_chunks(FAKE, [[(data, 0)]], 100, [StreamParams(2, 0)], mixer_version=1)
    ((got, prm),) = decode_chunks(FAKE, [b"\x01\x03" + v1[2:]], [layout], 100, [5])  # any transform in v5
    assert got[0].tobytes() == data.tobytes() and prm.transform == 3  # (the caller inverts it)
    with pytest.raises(CorruptChunkError, match="record length"):
        decode_chunks(FAKE, [body[:1] + b"\x02" + body[2:]], [layout], 100)  # up, r = 0
    with pytest.raises(CorruptChunkError, match="segments per stream"):
        decode_chunks(FAKE, [body[:2] + b"\x00" + body[3:]], [layout], 100)
    with pytest.raises(CorruptChunkError, match="padding bits"):
        decode_chunks(FAKE, [body[:4] + bytes([body[4] | 0x80]) + body[5:]], [layout], 100)
    with pytest.raises(CorruptChunkError):
        decode_chunks(FAKE, [body + b"\x00"], [layout], 100)
    with pytest.raises(ValueError):
        encode_chunks(FAKE, [[(data, 0)]], 100, [StreamParams(0, 0)])
    with pytest.raises(ValueError):
        encode_chunks(FAKE, [[(data, 0)]], 100, [StreamParams(1, -1)])


# -- through the codec --------------------------------------------------------------------------


def test_codec_record_length_from_shape_and_override():
    image = np.frombuffer(lm_friendly(1200, 5), np.uint8).astype(np.uint16).reshape(40, 30)
    codec = LMCodec(stream_length=512)

    def record(enc: bytes) -> int:
        body = memoryview(enc)[HEADER_SIZE:]
        assert parse_header(enc).mode == Mode.LM_MIX
        _, pos = mixcoding.read_varint(body, 2, 1 << 24)
        return mixcoding.read_varint(body, pos, 1 << 24)[0]

    assert record(codec.encode(image)) == 30
    assert record(codec.encode(np.asfortranarray(image))) == 40
    assert record(codec.encode(image[:, ::2])) == 15  # non-contiguous: coded in C order
    assert record(codec.encode(image.reshape(-1))) == 0
    assert record(codec.encode(image.tobytes())) == 0
    assert record(codec.encode_batch([image.tobytes()], record_lengths=[30])[0]) == 30
    assert codec.encode_batch([image.reshape(-1)], record_lengths=[30]) == [codec.encode(image)]
    assert codec.decode(codec.encode(image)) == image.tobytes()
    fortran = np.asfortranarray(image)
    assert codec.decode(codec.encode(fortran)) == fortran.tobytes(order="A")  # memory order


def test_mix_false_writes_format_version_1_and_batches_decode_both():
    data = lm_friendly(2000)
    v1 = LMCodec(mix=False).encode(data)
    v2 = LMCodec().encode(data)
    assert (parse_header(v1).mode, parse_header(v1).version) == (Mode.LM, 1)
    assert (parse_header(v2).mode, parse_header(v2).version) == (Mode.LM_MIX, 4)
    assert LMCodec().decode_batch([v1, v2, v1]) == [data, data, data]


def test_stream_length_rounds_to_whole_segments():
    data = lm_friendly(5000)
    enc = LMCodec(segment_length=100, stream_length=450).encode(data)
    body = memoryview(enc)[HEADER_SIZE:]
    assert mixcoding.read_varint(body, 2, 1 << 24)[0] == 4  # 450 // 100 segments per stream
    enc = LMCodec(segment_length=250, stream_length=50).encode(data)
    assert parse_header(enc).mode == Mode.LM_MIX
    assert mixcoding.read_varint(memoryview(enc)[HEADER_SIZE:], 2, 1 << 24)[0] == 1
    assert LMCodec().decode(enc) == data


def test_mixer_parameters_are_frozen():
    """docs/format.md §4.4 lists these; a change needs a new MIXER_VERSION."""
    from dataclasses import replace

    from lmcodec.mixing import DEFAULT_CONFIG

    assert mixcoding.MIXER_VERSION == 3
    assert mixcoding.MIXERS_OF_FORMAT == {2: {1}, 3: {2}, 4: {3}, 5: {1, 2, 3}}
    v2 = replace(DEFAULT_CONFIG, o2_bits=14, hash_bits=18)
    assert mixcoding.MIXER_RULES == {
        1: (DEFAULT_CONFIG, False),
        2: (v2, True),
        3: (replace(v2, components=("lm", "o0", "o1", "o2", "rec", "match", "o4", "o6"), o4_bits=16, o6_bits=16,
                    set_len_edges=(1, 8), scale_tables=True), True),
    }
    assert DEFAULT_CONFIG.to_dict() == {
        "components": ("lm", "o0", "o1", "o2", "rec", "match"),
        "o0_limit": 1023, "o1_limit": 255, "o2_limit": 255, "o2_bits": 10, "o4_bits": 16, "o6_bits": 16,
        "match_min": 3, "hash_bits": 16, "history_bits": 16,
        "lr": 1024, "lr_boost": 4, "lr_boost_steps": 1024,
        "init_weights": (65536, 16384, 16384, 16384, 16384, 32768, 16384, 16384),
        "rec_votes": 4, "match_long": 6, "set_len_edges": (1, 16),
        "switch_clamp_bits": 16, "switch_init_bits": 4, "scale_tables": False,
    }


def test_older_mixer_versions_decode_only_under_their_format_version():
    """Bodies of mixer versions 1 and 2 (format versions 2 and 3) stay readable (and writable)
    next to the current version; each body must carry the mixer version of its chunk's format
    version, except in format version 5, whose bodies may carry any."""
    data, dtype, seg, prm = CASES[2]
    planes = _planes(data, dtype)
    layout = [(len(p), k) for p, k in planes]
    assert mixcoding.FORMAT_OF_MIXER == {1: 2, 2: 3, 3: 4}
    bodies = {}
    for mixer, fmt in mixcoding.FORMAT_OF_MIXER.items():
        (bodies[fmt],) = encode_chunks(FAKE, [planes], seg, [prm], mixer_version=mixer)
        assert bodies[fmt][0] == mixer
    assert encode_chunks(FAKE, [planes], seg, [prm]) == [bodies[4]]
    with pytest.raises(ValueError, match="mixer version"):
        encode_chunks(FAKE, [planes], seg, [prm], mixer_version=4)
    assert len(set(bodies.values())) == len(bodies)
    fmts = list(bodies) * 2
    out = decode_chunks(FAKE, [bodies[f] for f in fmts], [layout] * len(fmts), seg, fmts, group=3)
    for got, _ in out:
        assert [g.tobytes() for g in got] == [p.tobytes() for p, _ in planes]
    for fmt, body in bodies.items():
        for other in bodies:
            if other != fmt:
                with pytest.raises(CorruptChunkError, match="mixer version"):
                    decode_chunks(FAKE, [body], [layout], seg, [other])
    with pytest.raises(CorruptChunkError, match="format version 1"):
        decode_chunks(FAKE, [bodies[4]], [layout], seg, [1])
    out = decode_chunks(FAKE, list(bodies.values()), [layout] * len(bodies), seg, [5] * len(bodies))
    assert all([g.tobytes() for g in got] == [p.tobytes() for p, _ in planes] for got, _ in out)


def test_shared_streams_learn_from_each_other_and_keep_raw_streams_in_step():
    """Mixer version 2: a stream matches into its plane's other streams (random bytes repeated,
    a few positions later, in other streams of the plane cost far less than in separate planes;
    a stream can only match bytes coded in earlier rounds), and a stream stored raw between
    coded ones still feeds their statistics on both sides."""
    rng = np.random.default_rng(5)
    phrase = rng.integers(0, 256, 400, dtype=np.uint8)
    noise = rng.integers(0, 256, 400, dtype=np.uint8)
    streams = [phrase, np.roll(phrase, 5), noise, np.roll(phrase, 9), np.roll(phrase, 13)]
    data = np.concatenate(streams)  # 5 streams of 400 bytes (4 segments of 100)
    (shared,) = encode_chunks(FAKE, [[(data, 0)]], 100, [StreamParams(4, 0)])
    (alone,) = encode_chunks(FAKE, [[(s, 0) for s in streams]], 100, [StreamParams(4, 0)])
    assert len(shared) < 0.6 * len(alone)
    assert shared[4] == 0b00100  # the noise stream is stored raw
    for group in (1, 2, 16):
        ((decoded, _),) = decode_chunks(FAKE, [shared], [[(len(data), 0)]], 100, group=group)
        assert decoded[0].tobytes() == data.tobytes()


def test_plane_costs_add_up_to_the_body():
    data = _signal(2000, "<i2")
    planes = _planes(data, np.dtype("<i2"))
    layout = [(len(p), k) for p, k in planes]
    (body,) = encode_chunks(FAKE, [planes], 100, [StreamParams(3, 0)])
    costs = mixcoding.body_report(body, layout, 100).plane_costs
    n_streams = 2 * -(-2000 // 300)
    assert sum(costs) == len(body) - 4 - -(-n_streams // 8)  # version, transform, varints, bitmap
    assert costs[1] < costs[0]  # the high bytes of a smooth signal are cheaper


def test_record_length_rule():
    from lmcodec.codec import record_length

    assert record_length((40, 30), 2, 2) == 30
    assert record_length((1, 1, 22, 360), 4, 4) == 360  # leading length-1 axes dropped
    assert record_length((64, 512, 3), 1, 1) == 1536  # a row of pixels with their channels
    assert record_length((10, 300, 400), 4, 4) == 400  # a 120000-element grid is too long
    assert record_length((50, 8), 16, 8) == 16  # complex128 as float64 planes
    assert record_length((1000,), 4, 4) == 0 and record_length((2, 1), 1, 1) == 0
    big = np.zeros((2, 70_000), np.uint8)
    codec = LMCodec()
    assert codec.decode(codec.encode(big)) == big.tobytes()  # too long a row: detected instead


def test_record_length_beyond_the_mixer_history_is_corrupt():
    data = np.frombuffer(lm_friendly(600), np.uint8)
    (body,) = encode_chunks(FAKE, [[(data, 0)]], 100, [StreamParams(2, 0)])
    forged = body[:3] + mixcoding.encode_varint(70_000) + body[4:]
    with pytest.raises(CorruptChunkError, match="record length"):
        decode_chunks(FAKE, [forged], [[(600, 0)]], 100)
