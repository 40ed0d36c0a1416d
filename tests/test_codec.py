"""LMCodec: round trips, input kinds, out=, configuration, batches, registration."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numcodecs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmcodec import LMCodec
from lmcodec.errors import ModelNotFoundError
from lmcodec.format import HEADER_SIZE, Mode, parse_header

from conftest import FAKE, FAKE_OTHER, install_fake_models, lm_friendly

SEG = FAKE.context_length
SIZES = [0, 1, SEG - 1, SEG, SEG + 1]


def _mode(enc: bytes) -> Mode:
    return parse_header(enc).mode


def _roundtrip(codec: LMCodec, buf, expected: bytes) -> bytes:
    enc = codec.encode(buf)
    assert isinstance(enc, bytes)
    assert len(enc) <= len(expected) + HEADER_SIZE
    dec = codec.decode(enc)
    assert isinstance(dec, bytes)
    assert dec == expected
    return enc


def _smooth(n: int, dtype, seed=0) -> np.ndarray:
    """Compressible numeric data: a noisy random walk."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    walk = np.cumsum(rng.normal(0, 3, n))
    if dt.kind == "f":
        return (walk / 100).astype(dt)
    info = np.iinfo(dt)
    return np.clip(walk, info.min, info.max).astype(dt)


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("n", SIZES)
def test_bytes_round_trip_boundary_sizes(n):
    codec = LMCodec()
    rng = np.random.default_rng(n)
    for data in (bytes(n), rng.integers(0, 256, n, dtype=np.uint8).tobytes(), b"ab" * (n // 2)):
        enc = _roundtrip(codec, data, data)
        if n == 0:
            assert _mode(enc) == Mode.RAW and len(enc) == HEADER_SIZE


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=3 * SEG + 5))
def test_hypothesis_bytes_round_trip(data):
    _roundtrip(LMCodec(), data, data)


@settings(max_examples=40, deadline=None)
@given(
    n=st.sampled_from(SIZES + [2 * SEG + 3]),
    dtype=st.sampled_from(["u1", "<i2", ">i2", "<i4", ">i4", "<f4", ">f4", "<f8", ">f8"]),
    seed=st.integers(0, 2**16),
)
def test_hypothesis_array_round_trip(n, dtype, seed):
    arr = _smooth(n, dtype, seed)
    _roundtrip(LMCodec(), arr, arr.tobytes())


@pytest.mark.parametrize("dtype", ["u1", "<i2", ">i2", "<i4", "<f4", ">f4", "<f8", ">f8"])
def test_large_arrays_round_trip(dtype):
    arr = _smooth(100_000 // np.dtype(dtype).itemsize, dtype)
    mix = dtype in ("<i2", ">f8")  # lm_mix on two dtypes (it is slow); smaller ones elsewhere
    enc = _roundtrip(LMCodec(mix=mix), arr, arr.tobytes())
    assert parse_header(enc).dtype == np.dtype(dtype)


def test_large_skewed_round_trip_uses_lm():
    data = lm_friendly(100_000)
    enc = _roundtrip(LMCodec(), data, data)
    assert _mode(enc).uses_model


def test_every_mode_is_chosen_when_smallest():
    codec = LMCodec()
    rng = np.random.default_rng(2)
    incompressible = rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    assert _mode(_roundtrip(codec, incompressible, incompressible)) == Mode.RAW
    # a random block repeated: zstd copies it for a few bytes, the mixer's match model has to
    # learn to trust its matches first
    repetitive = rng.integers(0, 256, 1500, dtype=np.uint8).tobytes() * 3
    assert _mode(_roundtrip(codec, repetitive, repetitive)) == Mode.ZSTD
    periodic = bytes(range(256)) * 50  # the stand-in model alone cannot find the period...
    assert _mode(_roundtrip(LMCodec(mix=False), periodic, periodic)) == Mode.ZSTD
    assert _mode(_roundtrip(codec, periodic, periodic)) == Mode.LM_MIX  # ...the mixer can
    skewed = lm_friendly(5000)
    assert _mode(_roundtrip(codec, skewed, skewed)) == Mode.LM_MIX


def test_zstd_fallback_codes_the_byte_planes():
    from lmcodec.format import zstd_compress
    from lmcodec.preprocess import shuffle

    arr = np.arange(20_000, dtype=">i8")
    enc = _roundtrip(LMCodec(mix=False), arr, arr.tobytes())  # the mixer would beat zstd here
    h = parse_header(enc)
    assert h.mode == Mode.ZSTD and h.dtype == np.dtype(">i8")
    assert enc[HEADER_SIZE:] == zstd_compress(shuffle(arr.view(np.uint8), arr.dtype), 3)
    assert len(enc) < len(zstd_compress(arr.tobytes(), 3)) // 10


@pytest.mark.parametrize("dtype", ["c8", ">c16", "M8[s]", "m8[ms]", "?", "S3", "U2"])
def test_other_dtypes_round_trip(dtype):
    arr = np.zeros(50, dtype=dtype)
    arr[::3] = np.ones(1, dtype=dtype)[0]
    _roundtrip(LMCodec(), arr, arr.tobytes())


@pytest.mark.parametrize("seg", [1, 7, SEG])
def test_segment_length_parameter(seg):
    arr = _smooth(300, "<i4")
    enc = _roundtrip(LMCodec(segment_length=seg), arr, arr.tobytes())
    h = parse_header(enc)
    if h.mode.uses_model:
        assert h.segment_length == seg


def test_segment_length_above_context_length_is_refused():
    with pytest.raises(ValueError, match="context length"):
        LMCodec(segment_length=SEG + 1).encode(b"abc")


def test_explicit_dtype_overrides_input():
    arr = _smooth(500, "<i4")
    enc = _roundtrip(LMCodec(dtype="<i4"), arr.tobytes(), arr.tobytes())
    assert parse_header(enc).dtype == np.dtype("<i4")
    enc = _roundtrip(LMCodec(dtype="|u1"), arr, arr.tobytes())
    assert parse_header(enc).dtype == np.dtype("u1")
    # a length that is not a multiple of the itemsize leaves a tail plane
    _roundtrip(LMCodec(dtype=">f8"), arr.tobytes()[:-3], arr.tobytes()[:-3])


# -- input kinds and layouts -------------------------------------------------------------------


def test_bytes_like_inputs():
    codec = LMCodec()
    data = b"hello, hello, hello world " * 20
    for buf in (data, bytearray(data), memoryview(data), np.frombuffer(data, np.uint8)):
        _roundtrip(codec, buf, data)
    enc = codec.encode(memoryview(data))
    assert parse_header(enc).dtype is None


def test_c_and_f_order_and_non_contiguous_views():
    codec = LMCodec()
    a = _smooth(2400, "<f4").reshape(40, 60)
    _roundtrip(codec, a, a.tobytes(order="C"))
    f = np.asfortranarray(a)
    _roundtrip(codec, f, f.tobytes(order="F"))  # memory order, as numcodecs codecs do
    for view in (a[::2, 1::3], a.T[5:20], f[3:17, ::4], a[:, 7]):
        assert not (view.flags.c_contiguous and view.flags.f_contiguous and view.ndim > 1)
        _roundtrip(codec, view, np.ascontiguousarray(view).tobytes())
    scalar = np.float64(3.25)
    _roundtrip(codec, np.array(scalar), np.array(scalar).tobytes())


def test_out_ndarray_and_bytearray():
    codec = LMCodec()
    a = _smooth(1000, ">i2").reshape(20, 50)
    enc = codec.encode(a)
    out = np.empty_like(a)
    res = codec.decode(enc, out=out)
    assert res is out
    np.testing.assert_array_equal(out, a)
    out_f = np.empty((20, 50), dtype=">i2", order="F")
    codec.decode(codec.encode(np.asfortranarray(a)), out=out_f)
    np.testing.assert_array_equal(out_f, a)
    ba = bytearray(a.nbytes)
    res = codec.decode(enc, out=ba)
    assert res is ba and bytes(ba) == a.tobytes()
    raw = np.empty(a.nbytes, dtype=np.uint8)
    codec.decode(enc, out=raw)
    assert raw.tobytes() == a.tobytes()


def test_out_wrong_size_or_readonly():
    codec = LMCodec()
    enc = codec.encode(b"x" * 100)
    for bad in (bytearray(99), bytearray(101), np.empty(26, dtype="<f4")):
        with pytest.raises(ValueError, match="out has .* bytes but the chunk decodes to 100"):
            codec.decode(enc, out=bad)
    ro = np.empty(100, dtype=np.uint8)
    ro.flags.writeable = False
    with pytest.raises(ValueError):
        codec.decode(enc, out=ro)


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_expand(data):
    enc = LMCodec().encode(data)
    assert len(enc) <= len(data) + HEADER_SIZE


def test_uniform_random_large_never_expands():
    data = np.random.default_rng(3).integers(0, 256, 100_000, dtype=np.uint8).tobytes()
    enc = LMCodec().encode(data)
    assert len(enc) == len(data) + HEADER_SIZE and _mode(enc) == Mode.RAW


# -- batches -----------------------------------------------------------------------------------


def test_encode_batch_equals_per_chunk_encode():
    codec = LMCodec()
    rng = np.random.default_rng(4)
    bufs = [
        b"",
        b"a",
        _smooth(700, "<f4"),
        _smooth(333, ">i2"),
        rng.integers(0, 256, 2000, dtype=np.uint8).tobytes(),
        rng.integers(0, 256, 700, dtype=np.uint8).tobytes() * 3,
        b"the cat sat on the mat " * 30,
        lm_friendly(1000),
        _smooth(SEG * 3 + 1, "u1"),
    ]
    batch = codec.encode_batch(bufs)
    single = [codec.encode(b) for b in bufs]
    assert batch == single
    modes = {_mode(e) for e in batch}
    assert modes == {Mode.RAW, Mode.ZSTD, Mode.LM_MIX}
    decoded = codec.decode_batch(batch)
    expected = [b if isinstance(b, bytes) else b.tobytes() for b in bufs]
    assert decoded == expected
    outs = [bytearray(len(e)) for e in expected]
    assert codec.decode_batch(batch, outs) == outs
    assert [bytes(o) for o in outs] == expected


def test_decode_batch_mixed_segment_lengths_and_models(monkeypatch):
    other = FAKE_OTHER.name
    a, b = lm_friendly(900, 1), lm_friendly(700, 2)
    encs = [
        LMCodec(segment_length=100).encode(a),
        LMCodec().encode(a),
        LMCodec(model=other).encode(b),
        LMCodec(model=other, segment_length=77).encode(b),
    ]
    assert {parse_header(e).mode for e in encs} == {Mode.LM_MIX}
    assert {(parse_header(e).model_id, parse_header(e).segment_length) for e in encs} == {
        (FAKE.model_id, 100),
        (FAKE.model_id, SEG),
        (FAKE_OTHER.model_id, FAKE_OTHER.context_length),
        (FAKE_OTHER.model_id, 77),
    }
    assert LMCodec().decode_batch(encs) == [a, a, b, b]


def test_decode_batch_names_failing_chunk():
    codec = LMCodec()
    encs = codec.encode_batch([lm_friendly(300, 1), lm_friendly(300, 2)])
    assert {_mode(e) for e in encs} == {Mode.LM_MIX}
    bad = bytearray(encs[1])
    bad[-1] ^= 0x55
    with pytest.raises(Exception, match="chunk 1"):
        codec.decode_batch([encs[0], bytes(bad)])


# -- models -----------------------------------------------------------------------------------


def test_unknown_model_at_decode(monkeypatch):
    enc = LMCodec().encode(lm_friendly(500))
    assert _mode(enc) == Mode.LM_MIX
    install_fake_models(monkeypatch, {FAKE_OTHER.name: FAKE_OTHER})
    with pytest.raises(ModelNotFoundError) as info:
        LMCodec(model=FAKE_OTHER.name).decode(enc)
    assert FAKE.model_id.hex() in str(info.value) and FAKE_OTHER.name in str(info.value)


def test_unknown_model_name_at_encode():
    with pytest.raises(ModelNotFoundError):
        LMCodec(model="no-such-model").encode(b"abc")


def test_decode_uses_the_model_in_the_chunk_not_the_config():
    data = lm_friendly(500)
    enc = LMCodec(model=FAKE_OTHER.name).encode(data)
    assert parse_header(enc).model_id == FAKE_OTHER.model_id
    assert LMCodec().decode(enc) == data


# -- configuration -----------------------------------------------------------------------------


def test_config_round_trip_and_registry():
    codec = LMCodec(dtype="f4", segment_length=32, fallback_level=5)
    config = codec.get_config()
    assert config == {
        "id": "lmcodec",
        "model": FAKE.name,
        "dtype": "<f4",
        "segment_length": 32,
        "device": "auto",
        "fallback_level": 5,
        "mix": True,
        "stream_length": 16384,
        "mixer_version": 3,
    }
    assert json.loads(json.dumps(config)) == config
    assert numcodecs.get_codec(config) == codec
    assert LMCodec.from_config({k: v for k, v in config.items() if k != "id"}) == codec
    assert LMCodec() == LMCodec(model=FAKE.name, dtype="auto")
    assert LMCodec() != LMCodec(dtype="i2")
    assert hash(LMCodec()) == hash(LMCodec(model=FAKE.name))
    assert LMCodec().get_config()["model"] == FAKE.name  # default resolved in the config
    # an array keeps the mixer version it was created with; a config from before the option
    # existed gets the newest
    assert LMCodec(mixer_version=None) == LMCodec(mixer_version=3) != LMCodec(mixer_version=1)
    assert LMCodec.from_config({k: v for k, v in config.items() if k != "mixer_version"}) == codec
    assert repr(codec) == (
        f"LMCodec(model={FAKE.name!r}, dtype='<f4', segment_length=32, device='auto', "
        "fallback_level=5, mix=True, stream_length=16384, mixer_version=3)"
    )


def test_fast_preset_names_its_model_and_mixer_version():
    from lmcodec.codec import FAST_PRESET

    assert FAST_PRESET == {"model": "lm-fast-v1", "mixer_version": 1}
    codec = LMCodec.fast(dtype="<i2")
    assert codec == LMCodec(model="lm-fast-v1", mixer_version=1, dtype="<i2")
    assert LMCodec.from_config(codec.get_config()) == codec  # an array created with it keeps it
    assert LMCodec.fast(mixer_version=2).mixer_version == 2


@pytest.mark.parametrize("bad", [0, 4, True, "3", 2.0])
def test_unknown_mixer_version_is_refused(bad):
    with pytest.raises(TypeError if not isinstance(bad, int) or isinstance(bad, bool) else ValueError,
                       match="mixer_version"):
        LMCodec(mixer_version=bad)


def test_invalid_parameters():
    with pytest.raises(ValueError):
        LMCodec(segment_length=0)
    with pytest.raises(TypeError):
        LMCodec(segment_length=1.5)
    with pytest.raises(TypeError):
        LMCodec(model=3)
    with pytest.raises(TypeError):
        LMCodec(dtype="not-a-dtype")
    with pytest.raises(ValueError):
        LMCodec(dtype="O")
    with pytest.raises(TypeError):
        LMCodec(mix=1)
    with pytest.raises(ValueError):
        LMCodec(stream_length=0)


def test_pickle():
    codec = LMCodec(dtype=">i4", segment_length=16)
    codec.encode(b"warm up the model cache")
    clone = pickle.loads(pickle.dumps(codec))
    assert clone == codec and clone.get_config() == codec.get_config()
    assert set(vars(clone)) == {"model", "dtype", "segment_length", "device", "fallback_level", "mix",
                                "stream_length", "mixer_version"}
    data = _smooth(100, ">i4")
    assert clone.decode(codec.encode(data)) == data.tobytes()


def _fresh_python(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    cwd = Path(__file__).resolve().parents[2]  # outside the checkout: only the installed package
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd
    )


def test_fresh_process_entry_point():
    """numcodecs finds the codec through the entry point (needs ``pip install -e .``)."""
    code = (
        "import sys, numcodecs; c = numcodecs.get_codec({'id': 'lmcodec', 'model': 'm'}); "
        "print(c); print(type(c).__module__, 'onnxruntime' in sys.modules, 'torch' in sys.modules)"
    )
    res = _fresh_python(code)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == (
        "LMCodec(model='m', dtype=None, segment_length=None, device='auto', fallback_level=3, "
        "mix=True, stream_length=16384, mixer_version=3)"
    )
    assert lines[1] == "lmcodec.codec False False"  # registration keeps imports light


def test_fresh_process_default_config():
    from lmcodec.errors import LMCodecError

    try:
        import lmcodec.models as models

        resolve = getattr(models, "default_model_name", None)
        resolve() if resolve is not None else models.DEFAULT_MODEL
    except (ImportError, AttributeError, LMCodecError) as e:
        pytest.skip(f"no default model installed yet: {e}")
    res = _fresh_python("import numcodecs; print(numcodecs.get_codec({'id': 'lmcodec'}))")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("LMCodec(model=")
