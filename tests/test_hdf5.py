"""HDF5 filter (lmcodec.hdf5): round trips through h5py; failures raise, never store raw data."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

import lmcodec.hdf5 as lh  # noqa: E402
from lmcodec.errors import ModelNotFoundError  # noqa: E402
from lmcodec.format import dtype_to_code, parse_header  # noqa: E402
from lmcodec.mixcoding import FORMAT_OF_MIXER, MIXER_VERSION  # noqa: E402
from storage_helpers import (  # noqa: E402
    CHUNKS,
    DTYPES,
    TINY,
    chunk_modes,
    coded_dtype,
    run_code,
    run_docs_page,
    sample,
)

READ_BACK = """
import json, sys
import h5py, numpy as np
import lmcodec.hdf5  # registers the filter in this process
path, names = sys.argv[1], json.loads(sys.argv[2])
with h5py.File(path, "r") as f:
    for name in names:
        got, want = f[name][:], np.load(name + ".npy")
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), name
print("identical", len(names))
"""

FAILURES = """
import logging, sys
import h5py, numpy as np
import lmcodec.codec, lmcodec.hdf5
from lmcodec.errors import LMCodecError
from storage_helpers import sample

logging.basicConfig(stream=sys.stdout, format="logged: %(message)s")
data = sample("int16")

def broken(*args, **kwargs):
    raise LMCodecError("the model broke")

# encoding fails inside the filter callback: the write raises and no chunk is stored
with h5py.File("write.h5", "w", rdcc_nbytes=0) as f:  # no chunk cache: chunks filter at once
    ds = f.create_dataset("x", shape=data.shape, dtype=data.dtype, chunks=(16, 16),
                          **lmcodec.hdf5.filter_args(model="lm-tiny-v1"))
    load_model, lmcodec.codec._load_model = lmcodec.codec._load_model, broken
    try:
        ds[:] = data
    except OSError as e:
        print("write raised:", e)
    lmcodec.codec._load_model = load_model
with h5py.File("write.h5", "r") as f:
    print("chunks stored:", f["x"].id.get_num_chunks())

# decoding fails (the chunks' model is not available): the read raises
with h5py.File("read.h5", "w") as f:
    f.create_dataset("x", data=data, chunks=(16, 16),
                     **lmcodec.hdf5.filter_args(model="lm-tiny-v1"))
lmcodec.codec._load_model_by_id = broken
with h5py.File("read.h5", "r") as f:
    try:
        f["x"][:]
    except OSError as e:
        print("read raised:", e)
"""


def _filter_of(ds) -> tuple[int, tuple[int, ...], bytes]:
    """``(flags, cd_values, name)`` of the lmcodec filter in a dataset's creation properties."""
    return ds.id.get_create_plist().get_filter_by_id(lh.FILTER_ID)


@pytest.mark.real_models
def test_round_trip_in_a_fresh_process(tmp_path):
    """Both ways of asking for the filter; every chunk is filtered (mask 0) with the dtype."""
    modes = Counter()
    with h5py.File(tmp_path / "data.h5", "w") as f:
        for n, dtype in enumerate(DTYPES):
            data = sample(dtype)
            np.save(tmp_path / f"{dtype}.npy", data)
            style = lh.filter_args(model=TINY) if n % 2 else {"compression": lh.LMFilter(TINY)}
            ds = f.create_dataset(dtype, data=data, chunks=CHUNKS, **style)
            flags, values, name = _filter_of(ds)
            assert (flags, name, len(values)) == (h5py.h5z.FLAG_MANDATORY, b"lmcodec", 9)
            assert values[5:] == (MIXER_VERSION, data.itemsize, *dtype_to_code(data.dtype))
            chunks = []
            for region in ds.iter_chunks():
                mask, chunk = ds.id.read_direct_chunk(tuple(s.start for s in region))
                assert mask == 0  # the filter ran (an optional filter that failed sets bit 0)
                assert coded_dtype(chunk) == np.dtype(dtype)
                chunks.append(chunk)
            assert len(chunks) == 6
            modes += chunk_modes(chunks)
    assert modes["LM_MIX"] > 0, modes
    out = run_code(READ_BACK, tmp_path, args=["data.h5", json.dumps(list(DTYPES))])
    assert out.split() == ["identical", "4"]


def test_mandatory_even_when_h5py_adds_it_as_optional(tmp_path):
    """``compression=<int>`` makes h5py call set_filter(FLAG_OPTIONAL); set_local overrides it,
    resolves the default model and the newest mixer version and records the element type."""
    with h5py.File(tmp_path / "f.h5", "w") as f:
        ds = f.create_dataset("x", shape=(10,), dtype=">f8", chunks=(5,), compression=lh.FILTER_ID)
        flags, values, _ = _filter_of(ds)
    assert flags == h5py.h5z.FLAG_MANDATORY
    assert values[0] == lh.CD_VERSION and values[1:3] != (0, 0)
    assert values[3:] == (0, 3, MIXER_VERSION, 8, *dtype_to_code(">f8"))


def test_uninstalled_model_is_refused_when_the_dataset_is_created(tmp_path, caplog):
    with pytest.raises(ModelNotFoundError):
        lh.LMFilter(model="not-installed")
    with h5py.File(tmp_path / "f.h5", "w") as f, caplog.at_level(logging.ERROR, "lmcodec.hdf5"):
        for opts in [(lh.CD_VERSION, 0xDEAD, 0xBEEF), (lh.CD_VERSION + 1,), (lh.CD_VERSION, 0, 0, 0, 3, 9)]:
            with pytest.raises(ValueError):
                f.create_dataset("x", shape=(10,), dtype="i2", chunks=(5,),
                                 compression=lh.FILTER_ID, compression_opts=opts)
        assert "x" not in f
    assert "ModelNotFoundError" in caplog.text and "layout version 3" in caplog.text
    assert "mixer_version must be one of" in caplog.text


@pytest.mark.real_models
@pytest.mark.parametrize("how", ["fast", "opts"])
def test_an_older_mixer_version_is_written_on_request(tmp_path, how):
    """``LMFilter.fast()`` (mixer version 1) or compression_opts naming mixer version 2: every
    lm_mix chunk has the matching format version, and reads back."""
    data = sample("int16")
    style = ({"compression": lh.LMFilter.fast()} if how == "fast" else
             {"compression": lh.FILTER_ID, "compression_opts": (lh.CD_VERSION, 0, 0, 0, 3, 2)})
    mixer = 1 if how == "fast" else 2
    with h5py.File(tmp_path / "f.h5", "w") as f:
        ds = f.create_dataset("x", data=data, chunks=CHUNKS, **style)
        _, values, _ = _filter_of(ds)
        assert values[5] == mixer
        chunks = [ds.id.read_direct_chunk(tuple(s.start for s in r))[1] for r in ds.iter_chunks()]
        assert np.array_equal(ds[:], data)
    headers = [parse_header(c) for c in chunks]
    assert {h.version for h in headers if h.mode.name == "LM_MIX"} == {FORMAT_OF_MIXER[mixer]}
    if how == "fast":
        assert {h.model_id.hex() for h in headers} == {lh._model_id("lm-fast-v1").hex()}


@pytest.mark.real_models
def test_layout_version_1_file_is_read_and_extended(tmp_path):
    """tests/golden/hdf5_layout1.h5 was written with filter parameter layout version 1 (eight
    cd_values, before the mixer version was one): it reads back, and rows appended now are coded
    with the newest mixer version under the same parameters. Version-1 compression_opts still
    create a dataset (stored as layout version 2)."""
    y, x = np.mgrid[0:40, 0:30]
    data = np.round(1000 * np.sin(x / 6) * np.cos(y / 9)).astype("int16")
    path = tmp_path / "old.h5"
    path.write_bytes((Path(__file__).parent / "golden" / "hdf5_layout1.h5").read_bytes())
    with h5py.File(path, "a") as f:
        ds = f["x"]
        _, values, _ = _filter_of(ds)
        assert values[0] == 1 and len(values) == 8
        assert np.array_equal(ds[:], data)
        ds.resize((60, 30))
        ds[40:] = data[:20] + 1
        new = ds.id.read_direct_chunk((40, 0))[1]
        assert parse_header(new).version == FORMAT_OF_MIXER[MIXER_VERSION]
        assert parse_header(new).model_id.hex() == lh._model_id("lm-fast-v1").hex()
        ds2 = f.create_dataset("y", data=data, chunks=CHUNKS, compression=lh.FILTER_ID,
                               compression_opts=values[:5])
        assert _filter_of(ds2)[1][:6] == (lh.CD_VERSION, *values[1:5], MIXER_VERSION)
    with h5py.File(path, "r") as f:
        assert np.array_equal(f["x"][:40], data) and np.array_equal(f["x"][40:], data[:20] + 1)
        assert np.array_equal(f["y"][:], data)


def test_failing_filter_raises_and_stores_nothing(tmp_path):
    out = run_code(FAILURES, tmp_path, pythonpath=[Path(__file__).parent])
    assert "write raised: Can't" in out and "logged: lmcodec HDF5 filter failed" in out
    assert "LMCodecError: the model broke" in out
    assert "chunks stored: 0" in out
    assert "read raised: Can't" in out


def test_docs_example_runs(tmp_path):
    run_docs_page("hdf5.md", tmp_path)
