"""zarr-python 3 integration: LMCodec as a format 2 compressor, LMZarrCodec in format 3."""

from __future__ import annotations

import json
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

zarr = pytest.importorskip("zarr")

from lmcodec import LMCodec  # noqa: E402
from lmcodec.format import parse_header  # noqa: E402
from lmcodec.zarr3 import CODEC_NAME, LMZarrCodec  # noqa: E402
from storage_helpers import (  # noqa: E402
    CHUNKS,
    DTYPES,
    SHAPE,
    TINY,
    chunk_modes,
    coded_dtype,
    run_code,
    run_docs_page,
    sample,
)

_METADATA = {".zarray", ".zattrs", ".zgroup", "zarr.json"}

READ_BACK = """
import json, sys
import numpy as np, zarr
pairs = json.loads(sys.argv[1])
for store, expected in pairs:
    got, want = zarr.open_array(store, mode="r")[:], np.load(expected)
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), store
print("identical", len(pairs))
"""
"""Reads zarr arrays in a fresh interpreter without importing lmcodec: zarr finds the codec by
its entry point (numcodecs' for format 2, zarr's for format 3)."""


def _chunks(store: Path) -> list[bytes]:
    files = sorted(p for p in store.rglob("*") if p.is_file() and p.name not in _METADATA)
    return [p.read_bytes() for p in files]


def _read_back(tmp_path: Path, pairs: list[tuple[Path, Path]]) -> None:
    out = run_code(READ_BACK, tmp_path, args=[json.dumps([[str(s), str(e)] for s, e in pairs])])
    assert out.split() == ["identical", str(len(pairs))]


@pytest.mark.real_models
def test_format2_round_trip_in_a_fresh_process(tmp_path):
    """Both creation APIs (alternating over the dtypes); the chunk headers carry the array
    dtype, with no typesize given."""
    pairs, modes = [], Counter()
    for n, dtype in enumerate(DTYPES):
        data = sample(dtype)
        np.save(expected := tmp_path / f"{dtype}.npy", data)
        store = tmp_path / f"{dtype}.zarr"
        if n % 2:
            array = zarr.create_array(
                store, shape=SHAPE, chunks=CHUNKS, dtype=dtype, zarr_format=2,
                compressors=LMCodec(model=TINY),
            )
        else:
            array = zarr.open(
                store, mode="w", shape=SHAPE, chunks=CHUNKS, dtype=dtype, zarr_format=2,
                compressor=LMCodec(model=TINY),
            )
        array[:] = data
        assert json.loads((store / ".zarray").read_text())["compressor"]["id"] == "lmcodec"
        chunks = _chunks(store)
        assert len(chunks) == 6
        assert {coded_dtype(c) for c in chunks} == {np.dtype(dtype)}
        modes += chunk_modes(chunks)
        pairs.append((store, expected))
    assert modes["LM_MIX"] > 0, modes
    _read_back(tmp_path, pairs)


@pytest.mark.real_models
def test_format3_round_trip_in_a_fresh_process(tmp_path):
    """The dtype is recorded in zarr.json; sharded arrays work too (codec inside the shard)."""
    pairs, modes = [], Counter()
    with zarr.config.set({"codec_pipeline.batch_size": 8, "async.concurrency": 1}):
        for dtype in DTYPES:
            data = sample(dtype)
            np.save(expected := tmp_path / f"{dtype}.npy", data)
            store = tmp_path / f"{dtype}.zarr"
            array = zarr.create_array(
                store, shape=SHAPE, chunks=CHUNKS, dtype=dtype, compressors=LMZarrCodec(model=TINY)
            )
            array[:] = data
            codecs = json.loads((store / "zarr.json").read_text())["codecs"]
            assert codecs[-1] == {
                "name": CODEC_NAME,
                "configuration": {
                    "model": TINY,
                    "device": "auto",
                    "fallback_level": 3,
                    "mix": True,
                    "stream_length": 16384,
                    "mixer_version": 3,
                    "dtype": np.dtype(dtype).newbyteorder("<").str,
                },
            }
            chunks = _chunks(store)
            assert len(chunks) == 6
            modes += chunk_modes(chunks)
            pairs.append((store, expected))
        sharded = zarr.create_array(
            tmp_path / "sharded.zarr", shape=SHAPE, chunks=CHUNKS, shards=(32, 32), dtype="int16",
            compressors=LMZarrCodec(model=TINY),
        )
        sharded[:] = sample("int16")
        pairs.append((tmp_path / "sharded.zarr", tmp_path / "int16.npy"))
    assert modes["LM_MIX"] > 0, modes
    _read_back(tmp_path, pairs)


def test_format3_codes_each_batch_in_one_call(monkeypatch):
    """zarr's batch reaches encode_batch/decode_batch whole; chunks zarr skips are left out."""
    calls = []
    encode_batch, decode_batch = LMCodec.encode_batch, LMCodec.decode_batch

    def spy(name, method):
        def wrapped(self, bufs, *args, **kwargs):
            calls.append((name, len(bufs)))
            return method(self, bufs, *args, **kwargs)

        return wrapped

    monkeypatch.setattr(LMCodec, "encode_batch", spy("encode", encode_batch))
    monkeypatch.setattr(LMCodec, "decode_batch", spy("decode", decode_batch))
    data = sample("int16")
    data[:16, :16] = 0  # equal to the fill value: zarr stores no chunk (None in the batch)
    with zarr.config.set({"codec_pipeline.batch_size": 8}):
        array = zarr.create_array({}, shape=SHAPE, chunks=CHUNKS, dtype="int16",
                                  compressors=LMZarrCodec())
        array[:] = data
        assert calls == [("encode", 5)]
        assert np.array_equal(array[:], data)
    assert calls == [("encode", 5), ("decode", 5)]


@pytest.mark.parametrize(
    "dtype, recorded",
    [("int16", "<i2"), ("uint8", "|u1"), ("float64", "<f8"), ("complex64", "<c8"), ("bool", None)],
)
def test_format3_dtype_comes_from_the_array(dtype, recorded):
    array = zarr.create_array({}, shape=(4,), dtype=dtype, compressors=LMZarrCodec())
    assert array.compressors[0].dtype == recorded
    given = zarr.create_array({}, shape=(4,), dtype=dtype, compressors=LMZarrCodec(dtype=">u2"))
    assert given.compressors[0].dtype == ">u2"  # an explicit dtype is kept


def test_format3_codec_configuration():
    codec = LMZarrCodec(model="m")
    assert codec.to_dict() == {
        "name": CODEC_NAME,
        "configuration": {
            "model": "m", "device": "auto", "fallback_level": 3, "mix": True, "stream_length": 16384,
            "mixer_version": 3,
        },
    }
    full = LMZarrCodec(model="m", dtype="<i4", segment_length=64, device="cpu", fallback_level=-1,
                       mix=False, stream_length=4096, mixer_version=1)
    assert full.to_dict()["configuration"] == {
        "model": "m", "device": "cpu", "fallback_level": -1, "mix": False, "stream_length": 4096,
        "mixer_version": 1,
        "dtype": "<i4", "segment_length": 64,
    }
    for c in (codec, full):
        assert LMZarrCodec.from_dict(c.to_dict()) == c
        assert pickle.loads(pickle.dumps(c)) == c
    assert LMZarrCodec.from_dict({"name": CODEC_NAME}).model == LMCodec().model  # default model
    assert zarr.registry.get_codec_class(CODEC_NAME) is LMZarrCodec
    with pytest.raises(ValueError):
        LMZarrCodec(segment_length=0)
    with pytest.raises(ValueError):
        LMZarrCodec.from_dict({"name": "zstd", "configuration": {}})


def test_docs_example_runs(tmp_path):
    run_docs_page("zarr.md", tmp_path)
