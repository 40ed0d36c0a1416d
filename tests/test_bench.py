"""The benchmark harness, its data preparation and report, and ``lmcodec demo``.

Everything runs on small synthetic arrays with the stand-in model (conftest) except the tests
marked ``real_models``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from lmcodec import bench, bench_data
from lmcodec.bench import BenchConfig, VerificationError, run_codec, run_datasets
from lmcodec.bench_codecs import Baseline, LMBenchCodec, baseline_codecs, lm_mix_planes, record_length
from lmcodec.bench_data import Dataset
from lmcodec.bench_report import PLANE_LIMIT, default_codec, plane_rows, write_report
from lmcodec.cli import main
from lmcodec.corpus import Sample
from lmcodec.format import parse_header

from conftest import FAKE, lm_friendly

ROOT = Path(__file__).resolve().parent.parent


def _sample(name: str, kind: str, array: np.ndarray, package: str) -> Sample:
    return Sample(name, kind, array, {"package": package, "manager": "pypi", "version": "1",
                                      "file": f"/data/{name}", "selection": {"rows": [0, len(array)]}})


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _image(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[:h, :w]
    return np.stack([(x + y) % 256, (2 * x) % 256, (3 * y) % 256], axis=-1).astype(np.uint8)


def _fake_lm(mix: bool = True, mixer_version: int | None = None) -> LMBenchCodec:
    return LMBenchCodec(FAKE.name, model_bytes=1000, n_parameters=123, model_id=FAKE.model_id.hex(),
                        mix=mix, default=mixer_version is None, mixer_version=mixer_version)


def _small_datasets() -> list[Dataset]:
    text = np.frombuffer(lm_friendly(3000), dtype=np.uint8)
    audio = (1000 * np.sin(np.arange(1500) / 7)).astype(np.int16)
    floats = np.cumsum(_rng().normal(size=700)).astype(np.float32)
    table = np.cumsum(_rng().integers(-3, 4, size=(64, 12)), axis=0).astype(np.int16)  # 2-D: rows of 24 bytes
    out = []
    for kind, a in (("text", text), ("audio", audio), ("float32", floats), ("image", _image(40, 50)),
                    ("sensor", table)):
        chunks = bench_data.chunk_array(a, kind, 1024)
        out.append(Dataset(kind, kind, "1 KiB", tuple(chunks), ({"name": kind, "package": "test", "version": "1",
                                                                  "dtype": a.dtype.str, "shape": list(a.shape)},)))
    return out


# -- data -------------------------------------------------------------------------------------


def test_chunk_array_covers_every_byte_in_whole_elements():
    flat = np.arange(1000, dtype=np.float64)
    chunks = bench_data.chunk_array(flat, "float64", 2048)
    assert [c.nbytes for c in chunks] == [2048, 2048, 2048, 1856]
    assert b"".join(c.tobytes() for c in chunks) == flat.tobytes()
    table = flat.reshape(100, 10)  # 2-D: runs of whole rows, shape kept (rows of 80 bytes)
    chunks = bench_data.chunk_array(table, "float64", 2048)
    assert [c.shape for c in chunks] == [(25, 10)] * 4
    assert b"".join(c.tobytes() for c in chunks) == table.tobytes()
    wide = flat.reshape(2, 500)  # a row does not fit: 1-D runs of elements
    chunks = bench_data.chunk_array(wide, "float64", 2048)
    assert [c.shape for c in chunks] == [(256,), (256,), (256,), (232,)]
    stereo = np.arange(2000, dtype=np.int16).reshape(1000, 2)
    chunks = bench_data.chunk_array(stereo, "audio", 1000)
    assert all(c.shape[1] == 2 for c in chunks) and chunks[0].shape == (250, 2)
    assert b"".join(c.tobytes() for c in chunks) == stereo.tobytes()


def test_image_tiles_are_the_papers_patches_at_2048_bytes():
    gray = (np.arange(100 * 150) % 251).astype(np.uint8).reshape(100, 150)
    tiles = bench_data.chunk_array(gray, "image", 2048)
    assert tiles[0].shape == (32, 64)
    assert sum(t.size for t in tiles) == gray.size
    rgb_tiles = bench_data.chunk_array(_image(64, 64), "image", 65536)
    assert rgb_tiles[0].shape == (64, 64, 3) and len(rgb_tiles) == 1


def test_select_samples_picks_packages_round_robin_within_budget():
    samples = [
        _sample("text/a", "text", np.zeros(5000, np.uint8), "p1"),
        _sample("text/b", "text", np.zeros(9000, np.uint8), "p1"),
        _sample("text/c", "text", np.zeros(300, np.uint8), "p2"),
        _sample("image/x", "image", _image(100, 100), "p3"),
    ]
    sel = bench_data.select_samples(samples, 4096, max_samples=2)
    names = [s.name for s, _ in sel["text"]]
    assert names == ["text/b", "text/c"]  # largest of p1, then p2
    assert [a.nbytes for _, a in sel["text"]] == [3796, 300]  # the small one passes its share on
    (s, crop), = sel["image"]
    assert crop.nbytes <= 4096 and crop.shape[2] == 3 and abs(crop.shape[0] - crop.shape[1]) <= 1


def test_paper_mappings():
    x = np.array([-32768, -257, -1, 0, 255, 256, 32767], dtype=np.int16)
    # audioop.bias(audioop.lin2lin(x, 2, 1), 1, 128): the high byte (signed) + 128
    assert bench_data.audio_to_8bit(x).tolist() == [0, 126, 127, 128, 128, 129, 255]
    rgb = np.array([[[1, 2, 4], [255, 255, 254]]], dtype=np.uint8)
    assert bench_data.grayscale(rgb).tolist() == [[2, 254]]
    images = [_sample("image/x", "image", _image(70, 130), "p")]
    audio = [_sample("audio/y", "audio", (np.arange(5000) * 13).astype(np.int16), "p")]
    patches, audio8 = bench_data.paper_datasets(images, audio, 4 * 2048)
    assert len(patches.chunks) == 4 and all(c.shape == (32, 64) for c in patches.chunks)
    assert len(audio8.chunks) == 2 and all(c.nbytes == 2048 and c.dtype == np.uint8 for c in audio8.chunks)


def test_record_length_is_one_row_of_a_plane():
    assert record_length(np.zeros(100, np.int16)) == 0
    assert record_length(np.zeros((1, 100), np.int16)) == 0  # one row: nothing to line up
    assert record_length(np.zeros((5, 100), np.int16)) == 100  # elements per row = plane bytes per row
    assert record_length(np.zeros((5, 7, 3), np.uint8)) == 21  # image tile: a row of RGB pixels
    assert record_length(np.zeros((5, 4), np.float64)) == 4
    assert record_length(np.zeros((3, 1 << 16), np.uint8)) == 0  # beyond the mixer's history


# -- harness ----------------------------------------------------------------------------------


def _identity(name: str, decode) -> Baseline:
    return Baseline(name, name, lambda k, d, s: True, lambda c: c.tobytes(), decode)


def test_harness_refuses_a_codec_that_decodes_wrong():
    ds = _small_datasets()[0]

    def off_by_one(enc: bytes, like: np.ndarray) -> bytes:
        return bytes([enc[0] ^ 1]) + enc[1:]

    with pytest.raises(VerificationError, match="chunk 0 .* does not decode to its original bytes"):
        run_codec(_identity("broken", off_by_one), ds)
    truncating = Baseline("short", "short", lambda k, d, s: True, lambda c: c.tobytes(),
                          lambda e, t: e[:-1])
    with pytest.raises(VerificationError):
        run_codec(truncating, ds)


def test_harness_refuses_a_wrong_chunk_count_and_propagates_decode_errors():
    ds = _small_datasets()[0]

    class Dropper(Baseline):
        def decode(self, encoded, like):
            return super().decode(encoded, like)[:-1]

    with pytest.raises(VerificationError, match="decoded chunks"):
        run_codec(Dropper("drop", "drop", lambda k, d, s: True, lambda c: c.tobytes(), lambda e, t: e), ds)

    def fails(enc, like):
        raise RuntimeError("cannot decode")

    with pytest.raises(RuntimeError, match="cannot decode"):
        run_codec(_identity("fails", fails), ds)


def test_run_codec_measures_rate_speed_and_memory():
    ds = _small_datasets()[0]
    r = run_codec(_identity("identity", lambda e, t: e), ds)
    assert r.compressed_bytes == r.raw_bytes == ds.raw_bytes and r.rate == 1.0
    assert r.adjusted_rate is None
    assert r.encode.seconds >= 0 and r.decode.cpu_seconds >= 0
    _, m = bench.measure(lambda: np.ones(48 << 20, dtype=np.uint8).sum())
    if m.peak_bytes is not None:  # Linux: the 48 MiB temporary shows in the peak RSS
        assert m.peak_bytes > 40 << 20


def test_run_all_codecs_with_the_stand_in_model_and_report(tmp_path):
    pytest.importorskip("matplotlib")
    datasets = _small_datasets()
    codecs = [*baseline_codecs(), _fake_lm(), _fake_lm(mix=False), _fake_lm(mixer_version=1)]
    assert codecs[-2].name == f"lmcodec/{FAKE.name}/lm-only" and "lm_mix" in codecs[-3].description
    assert codecs[-1].name == f"lmcodec/{FAKE.name}/mixer-v1" and "mixer version 1" in codecs[-1].description
    doc = run_datasets(datasets, codecs, BenchConfig("test", (1024,), 4096), progress=False, command="test")
    results = doc["results"]
    lm = [r for r in results if r["codec"] == f"lmcodec/{FAKE.name}"]
    only = [r for r in results if r["codec"] == f"lmcodec/{FAKE.name}/lm-only"]
    older = [r for r in results if r["codec"] == f"lmcodec/{FAKE.name}/mixer-v1"]
    assert len(lm) == len(only) == len(older) == len(datasets)
    # another mixer version ran: other sizes (each result is decoded and verified by run_datasets)
    assert any(r["modes"]["lm_mix"] for r in older)
    assert sum(r["compressed_bytes"] for r in older) != sum(r["compressed_bytes"] for r in lm)
    for r in lm + only:
        assert sum(r["modes"].values()) == r["n_chunks"]
        assert r["adjusted_rate"] == pytest.approx((r["compressed_bytes"] + 1000) / r["raw_bytes"])
    assert lm[0]["modes"]["lm_mix"] > 0 and only[0]["modes"]["lm"] > 0  # lm_friendly text: the model wins
    assert all(r["modes"]["lm"] == 0 for r in lm) and all(r["modes"]["lm_mix"] == 0 for r in only)
    assert all(r["planes"] is None for r in only)
    for r in lm:  # per-plane accounting adds up to the compressed size
        pl = r["planes"]
        coded = sum(p["coded_bytes"] for p in pl["planes"])
        assert coded + pl["overhead_bytes"] + pl["other"]["compressed_bytes"] == r["compressed_bytes"]
        assert pl["lm_mix_chunks"] + pl["other"]["chunks"] == r["n_chunks"] == sum(pl["transforms"].values()) + pl["other"]["chunks"]
        assert r["modes"]["lm_mix"] == pl["lm_mix_chunks"]
        if pl["lm_mix_chunks"]:
            assert sum(p["bytes"] for p in pl["planes"]) + pl["other"]["raw_bytes"] == r["raw_bytes"]
            assert pl["max_chunk_plane_bits_per_byte"] <= PLANE_LIMIT
    multi = [r for r in plane_rows(doc) if r["itemsize"] > 1 and r["lm_mix_chunks"]]
    assert multi and all(len(r["planes"]) == r["itemsize"] for r in multi)
    assert default_codec(doc) == f"lmcodec/{FAKE.name}"
    assert [(m["mix"], m["mixer_version"]) for m in doc["models"]] == [(True, None), (False, None), (True, 1)]
    skipped = {(s["codec"], s["dataset"]) for s in doc["skipped"]}
    assert ("png", "text") in skipped and ("flac", "image") in skipped and ("fpzip", "audio") in skipped
    ran = {(r["codec"], r["dataset"]) for r in results}
    for name, dataset in [("png", "image"), ("flac", "audio"), ("pcodec", "float32"), ("fpzip", "float32")]:
        unavailable = any(s["codec"] == name and s["dataset"] == "*" for s in doc["skipped"])
        assert unavailable or (name, dataset) in ran

    paths = write_report(doc, tmp_path)
    assert {p.name for p in paths} == {"benchmarks.json", "benchmarks.md", "benchmarks-rates.png",
                                       "benchmarks-speed.png"}
    assert json.loads((tmp_path / "benchmarks.json").read_text())["meta"]["command"] == "test"
    md = (tmp_path / "benchmarks.md").read_text()
    assert "## Compression rate, chunks of 1 KiB" in md and f"`lmcodec/{FAKE.name}` adjusted" in md
    assert "| `zstd-19` |" in md and "chunks lm_mix/lm/zstd/raw" in md and "(benchmarks-rates.png)" in md
    assert "## Bits per byte per byte plane" in md and "Maximum over the planes above" in md
    assert "vs best classical" in md and "| **all** |" in md and f"`lmcodec/{FAKE.name}/lm-only`" in md
    assert "lm_mix, mixer version 1 (`LMCodec(mixer_version=1)`)" in md


def test_lm_mix_planes_of_a_chunk_stored_raw_and_of_an_lm_mix_chunk():
    from lmcodec.codec import LMCodec

    noise = _rng().integers(0, 256, 4096).astype(np.uint8).view(np.int16)
    smooth = np.repeat(np.arange(64, dtype=np.int16), 32)  # two planes, both predictable
    enc = LMCodec(segment_length=FAKE.context_length).encode_batch([noise, smooth])
    pl = lm_mix_planes(enc)
    assert pl["other"]["chunks"] == 1 and pl["other"]["raw_bytes"] == noise.nbytes
    assert pl["lm_mix_chunks"] == 1 and [p["bytes"] for p in pl["planes"]] == [smooth.size] * 2
    assert 0 < pl["max_chunk_plane_bits_per_byte"] <= 8


def test_lm_mix_planes_count_plain_chunks_apart():
    from lmcodec.codec import LMCodec

    prices = np.round(100 + np.cumsum(_rng().normal(0, 1, (500, 4)), axis=0), 2)
    prices[::7] = np.nan  # missing rows: too many decimal exceptions, so coded unshuffled as floats
    enc = LMCodec(segment_length=FAKE.context_length).encode_batch([prices])
    assert parse_header(enc[0]).dtype is None
    pl = lm_mix_planes(enc, itemsize=8)
    assert pl["lm_mix_chunks"] == 0 and pl["planes"] == [] and pl["decimal"] == 0
    assert pl["plain"] == {"chunks": 1, "raw_bytes": prices.nbytes, "compressed_bytes": len(enc[0])}
    assert lm_mix_planes(enc)["lm_mix_chunks"] == 1  # 1-byte data: its one plane is a byte plane


def test_lm_mix_planes_count_decimal_chunks():
    """Prices with two decimals are coded as int64 cents: eight integer planes, one decimal chunk."""
    from lmcodec.codec import LMCodec

    prices = np.round(100 + np.cumsum(_rng().normal(0, 1, (500, 4)), axis=0), 2)
    enc = LMCodec(segment_length=FAKE.context_length).encode_batch([prices])
    assert parse_header(enc[0]).dtype == np.dtype("<i8")
    pl = lm_mix_planes(enc, itemsize=8)
    assert pl["lm_mix_chunks"] == 1 and pl["decimal"] == 1 and sum(pl["transforms"].values()) == 1
    assert [p["kind"] for p in pl["planes"]] == list(range(7, 15))  # int64 kinds, not float64 ones


# -- command line -----------------------------------------------------------------------------


def test_bench_options(capsys):
    assert main(["bench", "--help"]) == 0
    assert "--quick" in capsys.readouterr().out
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--quick", "--chunk-sizes", "2K,1M", "--kinds", "text", "audio", "--no-lm-only",
                              "--no-fast-preset"])
    config = bench.config_from_args(args)
    assert config.chunk_sizes == (2048, 1 << 20) and config.kinds == ("text", "audio") and not config.lm_only
    assert not config.fast_preset
    assert config.models == "default" and config.bytes_per_kind == 32 << 10 and "modified" in config.mode
    assert bench.command_line(args) == ("lmcodec bench --quick --chunk-sizes 2048,1048576 --kinds text audio "
                                        "--no-lm-only --no-fast-preset --out-dir benchmark-results")
    assert bench.QUICK.lm_only and bench.FULL.lm_only and bench.FULL.fast_preset and not bench.QUICK.fast_preset
    assert bench.config_from_args(parser.parse_args([])) == bench.FULL
    assert main(["bench", "--kinds", "nonsense"]) == 2


def test_demo_writes_reads_back_and_compares(tmp_path, capsys):
    pytest.importorskip("zarr")
    pytest.importorskip("matplotlib")
    store = tmp_path / "demo.zarr"
    assert main(["demo", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert out.count("read back identical") == 2 and "zstd -19" in out and "jacksboro" in out
    import zarr

    from lmcodec.demo import load_demo_data

    data = load_demo_data().array
    assert np.array_equal(zarr.open_array(str(store / "lmcodec"), mode="r")[...], data)
    assert main(["demo", "--store", str(store)]) == 1  # refuses to overwrite
    assert "already exists" in capsys.readouterr().err


def test_demo_rows_are_the_corpus_validation_rows():
    pytest.importorskip("matplotlib")
    pytest.importorskip("scipy")
    from lmcodec.corpus import CorpusWarning, load_samples
    from lmcodec.demo import load_demo_data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorpusWarning)  # sources missing here are skipped
        val = {s.name: s for s in load_samples("val", kinds=["sensor"])}
    dem = val.get("sensor/matplotlib-jacksboro-dem")
    if dem is None:
        pytest.skip("matplotlib DEM not in the corpus here")
    assert np.array_equal(load_demo_data().array, dem.array)


# -- validation script ------------------------------------------------------------------------


def _validate_module():
    spec = importlib.util.spec_from_file_location("validate_models", ROOT / "benchmarks" / "validate_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_validate_models_counts_real_lm_body_bytes():
    from lmcodec.codec import LMCodec
    from lmcodec.format import HEADER_SIZE, Mode, parse_header

    v = _validate_module()
    a = np.frombuffer(lm_friendly(3000), dtype=np.uint8)
    enc = LMCodec(segment_length=FAKE.context_length, mix=False).encode(a.tobytes())
    assert parse_header(enc[:HEADER_SIZE], body_length=len(enc) - HEADER_SIZE).mode == Mode.LM
    assert v.lm_body_bytes(FAKE, a) == len(enc) - HEADER_SIZE
    bpb = v.bits_per_byte({"text": 100, "audio": 300}, {"text": 400, "audio": 400})
    assert bpb == {"text": 2.0, "audio": 6.0, "all": 4.0}


# -- real models ------------------------------------------------------------------------------


@pytest.mark.real_models
def test_real_default_model_round_trips_in_the_harness():
    from lmcodec import models

    codec = LMBenchCodec.installed(models.default_model_name())
    assert codec.model_bytes > 0 and codec.n_parameters > 0 and len(codec.model_id) == 16
    text = np.frombuffer(b"The quick brown fox jumps over the lazy dog. " * 30, dtype=np.uint8)
    ds = Dataset("text", "text", "512 B", tuple(bench_data.chunk_array(text, "text", 512)))
    codec.warm_up(ds.chunks[0])
    r = run_codec(codec, ds)  # raises VerificationError unless every chunk round-trips
    assert sum(r.modes.values()) == r.n_chunks == 3
