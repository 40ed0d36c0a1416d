"""xarray (both Zarr formats, encoding kept on re-write) and dask on a multi-process cluster."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

xr = pytest.importorskip("xarray")
pytest.importorskip("dask.distributed")

from lmcodec import LMCodec  # noqa: E402
from lmcodec.zarr3 import LMZarrCodec  # noqa: E402
from storage_helpers import (  # noqa: E402
    CHUNKS,
    DTYPES,
    TINY,
    chunk_modes,
    run_code,
    run_docs_page,
    run_python,
    sample,
)

READ_AND_REWRITE = """
import sys
import numpy as np, xarray as xr
fmt = int(sys.argv[1])
ds = xr.open_zarr(f"v{fmt}.zarr", consolidated=False).load()
ds.to_zarr(f"v{fmt}-again.zarr", zarr_format=fmt, consolidated=False)  # encoding as read
again = xr.open_zarr(f"v{fmt}-again.zarr", consolidated=False).load()
for name in sorted(ds.data_vars):
    want = np.load(name + ".npy")
    for got in (ds[name], again[name]):
        assert got.dtype == want.dtype and got.values.tobytes() == want.tobytes(), name
    codecs = again[name].encoding["compressors"]
    assert codecs == ds[name].encoding["compressors"], name
    print(name, type(codecs[0]).__name__, getattr(codecs[0], "dtype", None))
"""

PID_CODECS = '''
"""Codecs that note, per process, that they encoded and which model object they used."""
import os
from pathlib import Path

from lmcodec import LMCodec, models
from lmcodec.zarr3 import LMZarrCodec


def record(model_name):
    model = models.load_model(model_name)  # per-process cache: the instance the codec used
    with open(Path(os.environ["LMCODEC_PID_DIR"]) / str(os.getpid()), "a") as f:
        f.write(f"{id(model)}\\n")


class PidLMCodec(LMCodec):
    def encode_batch(self, bufs):
        out = super().encode_batch(bufs)
        record(self.model)
        return out


class PidZarrCodec(LMZarrCodec):
    async def encode(self, chunks_and_specs):
        out = await super().encode(chunks_and_specs)
        record(self.model)
        return out
'''

DASK_WRITE = """
import json, os, sys
import dask.array as da
import numpy as np
import xarray as xr
from dask.distributed import Client, LocalCluster

from pidcodec import PidLMCodec, PidZarrCodec
from storage_helpers import CHUNKS, DTYPES, TINY, sample

if __name__ == "__main__":
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None, host="127.0.0.1")
    with cluster, Client(cluster) as client:
        runtime = lambda: "onnxruntime" in sys.modules
        before = client.run(runtime)
        for dtype in DTYPES:
            np.save(f"{dtype}.npy", sample(dtype))
            darr = da.from_array(sample(dtype), chunks=CHUNKS)
            da.to_zarr(darr, f"dask-{dtype}.zarr", zarr_format=2,
                       compressors=PidLMCodec(model=TINY))
        ds = xr.Dataset({d: (("y", "x"), sample(d)) for d in DTYPES})
        ds.chunk(dict(zip(("y", "x"), CHUNKS))).to_zarr(
            "xarray-dask.zarr", zarr_format=3, consolidated=False,
            encoding={d: {"compressors": PidZarrCodec(model=TINY)} for d in DTYPES})
        after = client.run(runtime)
    print(json.dumps({"client": os.getpid(), "client_runtime": runtime(),
                      "workers_before": sorted(before.values()),
                      "workers_after": sorted(after.values())}))
"""

DASK_READ = """
import numpy as np, xarray as xr, zarr
from storage_helpers import DTYPES
ds = xr.open_zarr("xarray-dask.zarr", consolidated=False)
for dtype in DTYPES:
    want = np.load(dtype + ".npy")
    for got in (zarr.open_array(f"dask-{dtype}.zarr", mode="r")[:], ds[dtype].values):
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), dtype
print("identical")
"""


def _dataset() -> xr.Dataset:
    return xr.Dataset({dtype: (("y", "x"), sample(dtype)) for dtype in DTYPES})


def _chunk_modes(store: Path) -> Counter:
    files = [p for p in store.rglob("*") if p.is_file() and not p.name.startswith((".z", "zarr."))]
    return chunk_modes(p.read_bytes() for p in files)


@pytest.mark.real_models
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_xarray_round_trip_and_rewrite_in_a_fresh_process(tmp_path, zarr_format):
    """Write with an lmcodec encoding, then in a fresh process read back and write again with
    the encoding xarray read back: same values, same codec (format 3: with the dtype)."""
    codec = LMCodec(model=TINY) if zarr_format == 2 else LMZarrCodec(model=TINY)
    ds = _dataset()
    for name in ds.data_vars:
        np.save(tmp_path / f"{name}.npy", ds[name].values)
    encoding = {name: {"compressors": codec, "chunks": CHUNKS} for name in ds.data_vars}
    ds.to_zarr(tmp_path / f"v{zarr_format}.zarr", zarr_format=zarr_format, consolidated=False,
               encoding=encoding)
    assert _chunk_modes(tmp_path / f"v{zarr_format}.zarr")["LM_MIX"] > 0
    lines = run_code(READ_AND_REWRITE, tmp_path, args=[str(zarr_format)]).splitlines()
    if zarr_format == 2:
        assert lines == [f"{name} LMCodec None" for name in sorted(DTYPES)]
    else:
        assert lines == [
            f"{name} LMZarrCodec {np.dtype(name).newbyteorder('<').str}" for name in sorted(DTYPES)
        ]


def test_dask_cluster_encodes_in_worker_processes(tmp_path, monkeypatch):
    """dask.array.to_zarr (format 2) and xarray with dask chunks (format 3) on 2 worker
    processes: the codecs pickle, each worker loads the model once, the client never does, and
    a fresh process reads back identical data."""
    (tmp_path / "pidcodec.py").write_text(PID_CODECS)
    (tmp_path / "write.py").write_text(DASK_WRITE)
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    pythonpath = [tmp_path, Path(__file__).parent]
    monkeypatch.setenv("LMCODEC_PID_DIR", str(pid_dir))
    report = json.loads(run_python(["write.py"], tmp_path, pythonpath).splitlines()[-1])
    assert report["workers_before"] == [False, False]  # the model runtime loads lazily...
    assert report["workers_after"] == [True, True]  # ... in every worker that coded chunks
    assert report["client_runtime"] is False
    models_used = {p.name: set(p.read_text().split()) for p in pid_dir.iterdir()}
    assert len(models_used) == 2 and str(report["client"]) not in models_used
    assert all(len(ids) == 1 for ids in models_used.values())  # one model object per process
    modes = sum((_chunk_modes(p) for p in tmp_path.glob("*.zarr")), Counter())
    assert modes["LM_MIX"] > 0, modes
    assert run_code(DASK_READ, tmp_path, pythonpath=pythonpath).split() == ["identical"]


def test_docs_example_runs(tmp_path):
    run_docs_page("xarray-dask.md", tmp_path)
