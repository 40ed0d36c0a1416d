"""Element transforms of mode lm_mix: bijective on every dtype and byte order, as specified."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmcodec import LMCodec
from lmcodec.format import HEADER_SIZE, Mode, parse_header
from lmcodec.transforms import (
    Coding,
    Transform,
    apply_transform,
    choose_coding,
    choose_transform,
    invert_transform,
    proxy_sample,
)

DTYPES = [None, "u1", "<i2", ">u2", "<i4", ">f4", "<f8", ">i8", "<f2"]


@settings(max_examples=200, deadline=None)
@given(
    raw=st.binary(max_size=300),
    dtype=st.sampled_from(DTYPES),
    transform=st.sampled_from(list(Transform)),
    record=st.integers(1, 40),
)
def test_transforms_invert_exactly(raw, dtype, transform, record):
    data = np.frombuffer(raw, np.uint8)
    out = apply_transform(data, dtype, transform, record)
    assert out.shape == data.shape and out.dtype == np.uint8
    assert invert_transform(out.copy(), dtype, transform, record).tobytes() == raw
    k = 1 if dtype is None else np.dtype(dtype).itemsize
    tail = len(raw) % k
    if tail:
        assert out[-tail:].tobytes() == raw[-tail:]  # a partial element is left alone


def test_transform_values_as_specified():
    x = np.array([5, 3, 65535, 0, 7], dtype=">u2")
    d = apply_transform(x.view(np.uint8), x.dtype, Transform.DELTA, 0).view(">u2")
    assert d.tolist() == [5, (3 - 5) % 65536, (65535 - 3) % 65536, 1, 7]
    u = apply_transform(x.view(np.uint8), x.dtype, Transform.UP, 2).view(">u2")
    assert u.tolist() == [5, 3, (65535 - 5) % 65536, (0 - 3) % 65536, (7 - 65535) % 65536]
    f = np.array([1.5, -2.0], dtype="<f4")
    bits = f.view("<u4")
    d = apply_transform(f.view(np.uint8), f.dtype, Transform.DELTA, 0).view("<u4")
    assert d.tolist() == [int(bits[0]), (int(bits[1]) - int(bits[0])) % 2**32]
    z = apply_transform(x.view(np.uint8), x.dtype, Transform.DELTA_ZZ, 0).view(">u2")
    assert z.tolist() == [10, 3, 7, 2, 14]  # zigzag of the deltas 5, -2, -4 (65532), 1, 7
    for transform in (Transform.UP, Transform.UP_ZZ):
        with pytest.raises(ValueError):
            apply_transform(x.view(np.uint8), x.dtype, transform, 0)


def test_choice_prefers_the_transform_that_fits():
    rng = np.random.default_rng(0)
    ramp = (np.cumsum(rng.integers(-3, 4, 20_000)) + 30_000).astype("<i2")
    assert choose_transform(ramp.view(np.uint8), ramp.dtype, 0) == Transform.DELTA_ZZ  # steps of either sign
    first = rng.integers(0, 60_000, 100)
    rows = (first + np.cumsum(rng.integers(-2, 3, (200, 100)), axis=0)).astype("<u2").reshape(-1)
    assert choose_transform(rows.view(np.uint8), rows.dtype, 100) == Transform.UP_ZZ
    text = np.frombuffer(b"the quick brown fox jumps over the lazy dog. " * 100, np.uint8)
    assert choose_transform(text, None, 0) == Transform.NONE
    assert choose_transform(ramp.view(np.uint8)[:200], ramp.dtype, 0) == Transform.NONE  # small


@pytest.mark.parametrize("itemsize", [1, 2, 8])
def test_proxy_sample_keeps_small_chunks_and_samples_large_ones(itemsize):
    small = np.zeros(256 << 10, dtype=np.uint8)
    assert proxy_sample(small, itemsize) is small
    n = (1 << 20) + 5 * itemsize + 3  # a tail byte count that is no multiple of the itemsize
    data = np.random.default_rng(itemsize).integers(0, 256, n, dtype=np.uint8)
    sample = proxy_sample(data, itemsize)
    width = (64 << 10) // itemsize * itemsize
    windows = sample.reshape(4, width)
    starts = [data.tobytes().find(w.tobytes()) for w in windows]
    assert starts[0] == 0 and n - itemsize < starts[3] + width <= n  # spread from start to end
    assert all(a % itemsize == 0 for a in starts)  # runs of whole elements
    assert all(b - a > width for a, b in zip(starts, starts[1:]))  # evenly, without overlap


def test_the_proxy_compresses_at_most_a_sample_of_a_large_chunk(monkeypatch):
    from lmcodec import transforms

    judged: list[int] = []
    real = transforms._proxy_sizes
    monkeypatch.setattr(transforms, "_proxy_sizes", lambda blobs: judged.extend(b.nbytes for b in blobs) or real(blobs))
    rng = np.random.default_rng(3)
    ramp = (np.cumsum(rng.integers(-3, 4, 400_000)) + 30_000).astype("<i2")
    coding = choose_coding(ramp.view(np.uint8), ramp.dtype, 0, 4096)
    assert coding == Coding(np.dtype("<i2"), Transform.DELTA_ZZ, 0)
    assert judged and max(judged) == 256 << 10  # every candidate and the plain bytes: 4 windows of 64 KiB


def test_codec_stores_and_inverts_the_transform():
    rng = np.random.default_rng(1)
    first = rng.integers(0, 60_000, 64)
    image = (first + np.cumsum(rng.integers(-2, 3, (40, 64)), axis=0)).astype(">u2")
    assert choose_transform(image.view(np.uint8).reshape(-1), image.dtype, 64) == Transform.UP_ZZ
    enc = LMCodec().encode(image)
    assert parse_header(enc).mode == Mode.LM_MIX and enc[HEADER_SIZE + 1] == Transform.UP_ZZ
    assert LMCodec().decode(enc) == image.tobytes()
    ramp = (np.cumsum(rng.integers(-3, 4, 3000)) + 30_000).astype("<i2")
    enc = LMCodec().encode(ramp)
    assert enc[HEADER_SIZE + 1] == choose_transform(ramp.view(np.uint8), ramp.dtype, 0)
    assert LMCodec().decode(enc) == ramp.tobytes()


@pytest.mark.parametrize("mixer_version", [1, 2, 3])
def test_every_mixer_version_is_written_on_request(mixer_version):
    """``LMCodec(mixer_version=v)`` writes format version ``v + 1`` with mixer version ``v`` in
    the body, takes only the transforms that version has (no zigzag in version 1), and every
    version decodes with a default codec."""
    from lmcodec.mixcoding import FORMAT_OF_MIXER

    rng = np.random.default_rng(1)
    first = rng.integers(0, 60_000, 64)
    image = (first + np.cumsum(rng.integers(-2, 3, (40, 64)), axis=0)).astype(">u2")
    enc = LMCodec(mixer_version=mixer_version).encode(image)
    header = parse_header(enc)
    assert header.mode == Mode.LM_MIX and header.version == FORMAT_OF_MIXER[mixer_version]
    assert enc[HEADER_SIZE] == mixer_version
    assert enc[HEADER_SIZE + 1] == (Transform.UP if mixer_version == 1 else Transform.UP_ZZ)
    assert LMCodec().decode(enc) == image.tobytes()


def test_coding_keeps_shuffled_layout_for_integers_and_small_chunks():
    rng = np.random.default_rng(0)
    ramp = (np.cumsum(rng.integers(-3, 4, 20_000)) + 30_000).astype("<i2")
    assert choose_coding(ramp.view(np.uint8), ramp.dtype, 0, 65535) == Coding(np.dtype("<i2"), Transform.DELTA_ZZ, 0)
    prices = np.round(100 + np.cumsum(rng.normal(0, 1, 20)), 2)  # 160 bytes: below the choice threshold
    assert choose_coding(prices.view(np.uint8), prices.dtype, 4, 65535) == Coding(np.dtype("<f8"), Transform.NONE, 4)
    text = np.frombuffer(b"the quick brown fox jumps over the lazy dog. " * 100, np.uint8)
    assert choose_coding(text, None, 0, 65535) == Coding(None, Transform.NONE, 0)


def test_coding_takes_plain_bytes_for_floats_that_repeat_whole():
    """Prices with missing rows (NaN, too many for the decimal step): each byte plane alone looks
    random, whole elements repeat."""
    rng = np.random.default_rng(1)
    prices = np.round(100 + np.cumsum(rng.normal(0, 1, (500, 4)), axis=0), 2)
    prices[::7] = np.nan
    coding = choose_coding(prices.view(np.uint8).reshape(-1), prices.dtype, 4, 65535)
    assert coding == Coding(None, Transform.NONE, 32)  # a row of 4 elements is 32 plain bytes
    assert choose_coding(prices.view(np.uint8).reshape(-1), prices.dtype, 4, 31).record == 0  # over the cap
    enc = LMCodec().encode(prices)
    header = parse_header(enc)
    assert header.mode == Mode.LM_MIX and header.dtype is None
    assert LMCodec().decode(enc) == prices.tobytes()


def test_coding_takes_the_decimal_step_for_short_decimals():
    """The same prices without gaps are coded as int64 cents (shuffled, differences along
    columns or rows), as float32 too (int32); full-precision floats never are."""
    rng = np.random.default_rng(1)
    prices = np.round(100 + np.cumsum(rng.normal(0, 1, (500, 4)), axis=0), 2)
    for floats, ints in ((prices, "<i8"), (prices.astype(">f4"), ">i4")):
        coding = choose_coding(floats.view(np.uint8).reshape(-1), floats.dtype, 4, 65535)
        assert coding.dtype == np.dtype(ints) and coding.decimal is not None
        assert (coding.decimal.dtype, coding.decimal.exponent, coding.decimal.positions.size) == (floats.dtype, 2, 0)
    noisy = 100 + np.cumsum(rng.normal(0, 1, (500, 4)), axis=0)
    assert choose_coding(noisy.view(np.uint8).reshape(-1), noisy.dtype, 4, 65535).decimal is None
