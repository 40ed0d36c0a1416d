"""Element transforms before the byte-plane split (issue 8): exact LM+mixer code lengths per transform.

Which numeric preprocessing should a chunk get before :func:`lmcodec.preprocess.split_planes`?
For the numeric kinds of the corpus validation split (the samples
``benchmarks/mixing_eval.py`` takes: per kind, samples in corpus order of at least
``--min-bytes``, truncated to ``--sample-bytes``, until the kind holds ``--kind-bytes``), each
*chunk* is transformed, byte-shuffled into planes exactly as ``split_planes`` does (same start-token
kinds as the untransformed dtype) and coded with the shipped model (``lm-small-v1``, 1024-byte
segments opened by ``start_token(kind)`` as lmcoding does) mixed by
:class:`lmcodec.mixing.AdaptiveMixer` (``DEFAULT_CONFIG``, one lane per plane, explicit record
length). The code length is exact (sum of ``16 - log2(f[sym])`` over the coded tables).

Transforms (all on the **unsigned integer view** ``uintN`` of the element bits, N = itemsize, so
for floats on the bit pattern; wrapping arithmetic; each is checked to invert exactly):

* ``none``;
* ``delta``: ``y[0] = x[0]``, ``y[i] = x[i] - x[i-1]`` along the flat (C) element order;
  inverse: cumulative wrapping sum;
* ``xor``: ``y[i] = x[i] ^ x[i-1]`` along the flat order; inverse: cumulative xor;
* ``left`` (images): per row and channel, ``y[r, c] = x[r, c] - x[r, c-1]``, column 0 kept;
* ``up`` (images, and as an extra every other 2-D chunk of >= 2 rows):
  ``y[r] = x[r] - x[r-1]`` per column (per element of the row), row 0 kept.

``core`` candidates are none/delta/xor (+ left/up for images); ``all`` adds ``up`` for the other
2-D chunks.

Geometry: leading axes of length 1 are dropped; a chunk with ``ndim >= 2`` has rows along axis 0
and a record length (mixer ``rec`` component, elements = plane bytes between vertically adjacent
bytes) of ``prod(shape[1:])``: the last axis for 2-D data, ``width * channels`` for RGB images
(as mixing_eval.py); 1-D chunks get 0 (the mixer detects one). ``--chunk-bytes`` (a list; 0 = the
whole sample is one chunk, as in mixing_eval.py) cuts samples into independent chunks of whole
rows (2-D, when a row fits) or whole elements; each chunk is coded alone (fresh mixer lanes,
transforms restart).

Reported per chunk and per transform: LM+mix bits, zstd level 19 (``numcodecs.Zstd``) and xz
(lzma preset 9) of the chunk's shuffled bytes (planes concatenated), and the cheap *selection
heuristics*, each an estimate of the code length, smallest wins:

* ``o0``: sum over planes of ``n_p * H0(plane p)`` (order-0 empirical entropy);
* ``zstd1``: zstd level 1 size of the shuffled bytes;
* ``o1``: sum over planes of the order-1 empirical conditional entropy (byte given previous byte);
* ``kt1``: sum over planes of the *adaptive* order-1 code length (each previous-byte context a
  Krichevsky-Trofimov-style estimator with prior ``alpha = 1/16`` per symbol, in closed form from
  the counts: what a one-pass adaptive order-1 coder would pay, learning cost included);
* ``lzma``: LZMA2 (raw, preset 9, 64 KiB dictionary) size of the shuffled bytes;
* ``zstd19``, ``xz``: the classical sizes above (xz -9 sets up a 64 MiB dictionary per call;
  shown for comparison).

The time of each heuristic is recorded (ms per KiB of chunk and transform; the LM costs about
30 ms per KiB on one core).

For each candidate set the selection summary gives how often each heuristic picks the transform
with the smallest actual LM+mix code length, and the bits lost when it does not; ``none`` (always
none) and ``kind-best`` (the one transform that is best over the whole kind, chosen in-sample)
are the fixed rules to beat.

LM tables are cached under ``--cache`` (default ``/tmp/lmcodec_mixing_cache``, the same files and
keys as mixing_eval.py). Threads: ``LMCODEC_NUM_THREADS``.

Run: ``python benchmarks/transform_eval.py`` (writes ``benchmarks/results/transform_eval.json``);
``--quick``: 16 KiB per kind, whole samples only, written to ``/tmp`` unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lmcodec.frequency_model import N_SYMBOLS, start_token  # noqa: E402
from lmcodec.preprocess import split_planes  # noqa: E402

DEFAULT_MODEL = "lm-small-v1"
SEGMENT = 1024
KINDS = ("image", "audio", "seismic", "sensor", "float32", "float64")
TRANSFORMS = ("none", "delta", "xor", "left", "up")
HEURISTICS = ("o0", "zstd1", "o1", "kt1", "lzma", "zstd19", "xz")
CHEAP = ("o0", "zstd1", "o1", "kt1", "lzma")
KT_ALPHA = 1 / 16


# ----------------------------------------------------------------------------- progress
class _Bar:
    """tqdm when installed, else a line every ~5 %."""

    def __init__(self, total: int, desc: str):
        try:
            from tqdm import tqdm

            self._t = tqdm(total=total, desc=desc, unit="B", unit_scale=True, dynamic_ncols=True,
                           mininterval=1.0, file=sys.stderr)
        except ImportError:
            self._t = None
        self.total, self.n, self._next, self._t0, self.desc = total, 0, 0, time.time(), desc

    def update(self, k: int) -> None:
        self.n += k
        if self._t is not None:
            self._t.update(k)
        elif self.n >= self._next:
            print(f"  {self.desc}: {100 * self.n / max(self.total, 1):5.1f} % "
                  f"({time.time() - self._t0:.0f} s)", flush=True)
            self._next = self.n + max(self.total // 20, 1)

    def set_postfix_str(self, s: str) -> None:
        if self._t is not None:
            self._t.set_postfix_str(s, refresh=False)

    def close(self) -> None:
        if self._t is not None:
            self._t.close()


# ----------------------------------------------------------------------------- transforms
def unsigned_view(a: np.ndarray) -> np.ndarray:
    """The element bits of ``a`` as native ``uintN`` (N = itemsize), same shape."""
    dt = a.dtype
    src = np.dtype(f"{dt.str[0] if dt.itemsize > 1 else '|'}u{dt.itemsize}")
    return np.frombuffer(np.ascontiguousarray(a).tobytes(), dtype=src).astype(f"u{dt.itemsize}").reshape(a.shape)


def to_raw(u: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Inverse of :func:`unsigned_view`: native uintN values -> raw bytes in ``dtype``'s byte order."""
    dst = np.dtype(f"{dtype.str[0] if dtype.itemsize > 1 else '|'}u{dtype.itemsize}")
    return np.frombuffer(u.astype(dst).tobytes(), dtype=np.uint8)


def _hwc(u: np.ndarray) -> np.ndarray:
    return u.reshape(u.shape[0], u.shape[1], -1)


def forward(name: str, u: np.ndarray) -> np.ndarray:
    """Transform ``name`` of the unsigned view ``u`` (wrapping); same shape and dtype."""
    y = u.copy()
    if name == "none":
        return y
    if name in ("delta", "xor"):
        f, x = y.reshape(-1), u.reshape(-1)
        if name == "delta":
            f[1:] = x[1:] - x[:-1]
        else:
            f[1:] = x[1:] ^ x[:-1]
        return y
    if name == "left":  # images: per row, per channel
        h, x = _hwc(y), _hwc(u)
        h[:, 1:] = x[:, 1:] - x[:, :-1]
        return y
    if name == "up":
        y[1:] = u[1:] - u[:-1]
        return y
    raise ValueError(name)


def inverse(name: str, y: np.ndarray) -> np.ndarray:
    x = y.copy()
    if name == "none":
        return x
    if name == "delta":
        return np.cumsum(y.reshape(-1), dtype=y.dtype).reshape(y.shape)
    if name == "xor":
        return np.bitwise_xor.accumulate(y.reshape(-1)).reshape(y.shape)
    if name == "left":
        h = _hwc(x)
        h[:] = np.cumsum(_hwc(y), axis=1, dtype=y.dtype)
        return x
    if name == "up":
        return np.cumsum(y, axis=0, dtype=y.dtype)
    raise ValueError(name)


# ----------------------------------------------------------------------------- data
@dataclass
class Chunk:
    kind: str
    sample: str
    index: int  # chunk number within the sample
    array: np.ndarray  # original dtype, leading unit axes dropped
    record: int  # elements per row (0 for 1-D)
    transforms: list[str] = field(default_factory=list)
    core: list[str] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return int(self.array.nbytes)


def _squeeze_leading(a: np.ndarray) -> np.ndarray:
    while a.ndim > 1 and a.shape[0] == 1:
        a = a[0]
    return a


def _make_chunk(kind: str, sample: str, index: int, a: np.ndarray) -> Chunk:
    a = np.ascontiguousarray(_squeeze_leading(a))
    two_d = a.ndim >= 2 and a.shape[0] >= 2
    record = int(np.prod(a.shape[1:])) if a.ndim >= 2 else 0
    core = ["none", "delta", "xor"]
    if kind == "image" and two_d:
        core += ["left", "up"]
    extra = ["up"] if two_d and kind != "image" else []
    return Chunk(kind, sample, index, a, record, core + extra, core)


def select_chunks(kinds=KINDS, kind_bytes: int = 65536, sample_bytes: int = 32768, min_bytes: int = 8192,
                  chunk_bytes: int = 0) -> list[Chunk]:
    """mixing_eval.py's sample selection for ``kinds``; each sample whole (``chunk_bytes`` 0) or
    cut into chunks of at most ``chunk_bytes`` (whole rows where a row fits, else whole elements)."""
    from lmcodec.corpus import load_samples

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        samples = load_samples("val", kinds=list(kinds), max_bytes_per_sample=sample_bytes)
    taken: dict[str, int] = {}
    out: list[Chunk] = []
    for s in samples:
        if s.array.nbytes < min_bytes or taken.get(s.kind, 0) >= kind_bytes:
            continue
        taken[s.kind] = taken.get(s.kind, 0) + s.array.nbytes
        a = _squeeze_leading(s.array)
        if not chunk_bytes or a.nbytes <= chunk_bytes:
            out.append(_make_chunk(s.kind, s.name, 0, a))
            continue
        row = a.nbytes // a.shape[0] if a.ndim >= 2 else 0
        if a.ndim < 2 or row > chunk_bytes:
            a = a.reshape(-1)
            step = max(chunk_bytes // a.itemsize, 1)
        else:
            step = chunk_bytes // row
        for j, lo in enumerate(range(0, a.shape[0], step)):
            out.append(_make_chunk(s.kind, s.name, j, a[lo : lo + step]))
    return out


@dataclass
class Lane:
    chunk: int  # index into the chunk list
    transform: str
    plane: int
    token_kind: int
    data: np.ndarray  # uint8
    record: int


def transformed_planes(c: Chunk, name: str) -> tuple[list[tuple[np.ndarray, int]], np.ndarray]:
    """``split_planes`` of the transformed chunk, and its shuffled bytes; checks the inverse."""
    u = unsigned_view(c.array)
    y = forward(name, u)
    if not np.array_equal(inverse(name, y), u):
        raise AssertionError(f"{name} does not invert on {c.sample}")
    raw = to_raw(y, c.array.dtype)
    planes = split_planes(raw, c.array.dtype)
    return planes, np.concatenate([p for p, _ in planes])


# ----------------------------------------------------------------------------- estimates
def h0_bits(p: np.ndarray) -> float:
    c = np.bincount(p, minlength=256).astype(np.float64)
    c = c[c > 0]
    return float(len(p) * np.log2(len(p)) - (c * np.log2(c)).sum()) if len(p) else 0.0


def h1_bits(p: np.ndarray) -> float:
    """Order-1 empirical conditional entropy (the first byte: 8 bits)."""
    if len(p) < 2:
        return 8.0 * len(p)
    pair = np.bincount(p[:-1].astype(np.int64) * 256 + p[1:], minlength=65536).astype(np.float64)
    prev = pair.reshape(256, 256).sum(axis=1)
    pair, prev = pair[pair > 0], prev[prev > 0]
    return float(8.0 + (prev * np.log2(prev)).sum() - (pair * np.log2(pair)).sum())


def kt1_bits(p: np.ndarray, alpha: float = KT_ALPHA) -> float:
    """Adaptive order-1 code length: per previous-byte context the sequential KT-style estimator
    ``(c(s) + alpha) / (n + 256 alpha)``, whose total is ``-log2`` of the Dirichlet-multinomial
    probability of the context's counts (the first byte: 8 bits)."""
    n = len(p)
    if n < 2:
        return 8.0 * n
    pair = np.bincount(p[:-1].astype(np.int64) * 256 + p[1:], minlength=65536)
    ctx = pair.reshape(256, 256).sum(axis=1)
    # lg(k, a) = log2(Gamma(k + a) / Gamma(a)) = sum_{j < k} log2(j + a), as a table over k
    lg_a = np.concatenate([[0.0], np.cumsum(np.log2(np.arange(n) + alpha))])
    lg_A = np.concatenate([[0.0], np.cumsum(np.log2(np.arange(n) + 256 * alpha))])
    return float(8.0 + lg_A[ctx].sum() - lg_a[pair].sum())


_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9, "dict_size": 1 << 16}]


def estimates(planes: list[tuple[np.ndarray, int]], shuffled: np.ndarray, times: dict[str, float]) -> dict[str, float]:
    """Heuristic estimates and classical sizes (bits) of one transformed chunk; adds seconds to ``times``."""
    from numcodecs import Zstd

    buf = shuffled.tobytes()
    funcs = {
        "o0": lambda: sum(h0_bits(p) for p, _ in planes),
        "zstd1": lambda: 8.0 * len(Zstd(level=1).encode(buf)),
        "o1": lambda: sum(h1_bits(p) for p, _ in planes),
        "kt1": lambda: sum(kt1_bits(p) for p, _ in planes),
        "lzma": lambda: 8.0 * len(lzma.compress(buf, format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)),
        "zstd19": lambda: 8.0 * len(Zstd(level=19).encode(buf)),
        "xz": lambda: 8.0 * len(lzma.compress(buf, preset=9)),
    }
    out = {}
    for name, f in funcs.items():
        t = time.perf_counter()
        out[name] = f()
        times[name] = times.get(name, 0.0) + time.perf_counter() - t
    return out


# ----------------------------------------------------------------------------- LM + mixer
def _lm_cache_key(model_id: bytes, token_kind: int, data: np.ndarray) -> str:
    """Same file names as mixing_eval.py, so the two scripts share their cache."""
    h = hashlib.sha256(model_id + bytes([token_kind]) + data.tobytes()).hexdigest()[:24]
    return f"{model_id.hex()}_{h}.npy"


def lm_tables(lanes: list[Lane], model, cache: Path, bar: _Bar, max_batch: int = 16) -> list[np.ndarray]:
    """uint16 ``[n, 256]`` LM tables per lane (segment by segment, cached); frequencies <= 65281."""
    cache.mkdir(parents=True, exist_ok=True)
    out: list[np.ndarray | None] = [None] * len(lanes)
    todo: list[tuple[int, int, int]] = []
    for i, ln in enumerate(lanes):
        path = cache / _lm_cache_key(model.model_id, ln.token_kind, ln.data)
        if path.exists():
            out[i] = np.load(path).astype(np.uint16)
            bar.update(len(ln.data))
        else:
            out[i] = np.zeros((len(ln.data), N_SYMBOLS), dtype=np.uint16)
            todo += [(i, a, min(SEGMENT, len(ln.data) - a)) for a in range(0, len(ln.data), SEGMENT)]
    for first in range(0, len(todo), max_batch):
        batch = todo[first : first + max_batch]
        width = max(n for _, _, n in batch)
        tokens = np.zeros((len(batch), width), dtype=np.int64)
        for r, (i, a, n) in enumerate(batch):
            tokens[r, 0] = start_token(lanes[i].token_kind)
            tokens[r, 1:n] = lanes[i].data[a : a + n - 1]
        freqs = model.full_freqs(tokens)
        for r, (i, a, n) in enumerate(batch):
            out[i][a : a + n] = freqs[r, :n]
        bar.update(sum(n for _, _, n in batch))
    for i in sorted({i for i, _, _ in todo}):
        np.save(cache / _lm_cache_key(model.model_id, lanes[i].token_kind, lanes[i].data), out[i])
    return out  # type: ignore[return-value]


def mix_bits(lanes: list[Lane], lm: list[np.ndarray], bar: _Bar, config=None) -> np.ndarray:
    """Exact code length in bits of every lane under one AdaptiveMixer (one lane per plane)."""
    from lmcodec.mixing import DEFAULT_CONFIG, AdaptiveMixer

    config = config or DEFAULT_CONFIG
    B = len(lanes)
    lengths = np.array([len(ln.data) for ln in lanes])
    mixer = AdaptiveMixer(B, config)
    if "rec" in config.components:
        mixer.set_record_length(np.array([r if (r := ln.record) < (1 << config.history_bits) else 0
                                          for ln in lanes]))
    bits = np.zeros(B)
    lm_buf = np.full((B, N_SYMBOLS), 65536 // N_SYMBOLS, dtype=np.int32)
    sym = np.zeros(B, dtype=np.int64)
    done = 0
    for p in range(int(lengths.max())):
        act = lengths > p
        idx = np.flatnonzero(act)
        for i in idx:
            lm_buf[i] = lm[i][p]
            sym[i] = lanes[i].data[p]
        table = mixer.step(lm_buf)
        bits[idx] += 16 - np.log2(table[idx, sym[idx]])
        mixer.update(sym, None if act.all() else act)
        done += len(idx)
        if p % 256 == 255:
            bar.update(done)
            done = 0
    bar.update(done)
    return bits


# ----------------------------------------------------------------------------- evaluation
def evaluate(chunks: list[Chunk], model, cache: Path, label: str, times: dict[str, float]) -> list[dict]:
    """One row per chunk: per transform the LM+mix bits, classical sizes and heuristics (bits)."""
    rows: list[dict] = []
    lanes_by_kind: dict[str, list[Lane]] = {}
    for ci, c in enumerate(chunks):
        row = {"kind": c.kind, "sample": c.sample, "chunk": c.index, "bytes": c.nbytes, "dtype": c.array.dtype.str,
               "shape": list(c.array.shape), "record": c.record, "transforms": list(c.transforms),
               "core": list(c.core), "bits": {}}
        for t in c.transforms:
            planes, shuffled = transformed_planes(c, t)
            row["bits"][t] = estimates(planes, shuffled, times)
            for k, (p, tk) in enumerate(planes):
                lanes_by_kind.setdefault(c.kind, []).append(Lane(ci, t, k, tk, p, c.record))
        rows.append(row)
    total = 2 * sum(len(ln.data) for v in lanes_by_kind.values() for ln in v)
    bar = _Bar(total, f"{label} LM+mix")
    for kind, lanes in lanes_by_kind.items():
        bar.set_postfix_str(f"{kind} LM")
        lm = lm_tables(lanes, model, cache, bar)
        bar.set_postfix_str(f"{kind} mix ({len(lanes)} lanes)")
        bits = mix_bits(lanes, lm, bar)
        del lm
        for ln, b in zip(lanes, bits):
            est = rows[ln.chunk]["bits"][ln.transform]
            est["mix"] = est.get("mix", 0.0) + float(b)
            est.setdefault("mix_planes", []).append(float(b) / len(ln.data))
    bar.close()
    return rows


def _argmin(d: dict[str, float], cands: list[str]) -> str:
    return min(cands, key=lambda t: (d[t], cands.index(t)))


def summarize(rows: list[dict]) -> dict:
    """Per kind: bits/byte per transform (mix, zstd19, xz), wins, and the selection summary."""
    kinds: dict[str, dict] = {}
    for k in KINDS:
        rs = [r for r in rows if r["kind"] == k]
        if not rs:
            continue
        nb = sum(r["bytes"] for r in rs)
        ts = [t for t in TRANSFORMS if any(t in r["bits"] for r in rs)]
        per_t = {}
        for t in ts:
            sub = [r for r in rs if t in r["bits"]]
            sb = sum(r["bytes"] for r in sub)
            per_t[t] = {"chunks": len(sub), "bytes": sb,
                        **{m: sum(r["bits"][t][m] for r in sub) / sb for m in ("mix", "zstd19", "xz", "zstd1")},
                        # mix minus the mix of ``none`` on the same chunks (bits/byte)
                        "mix_vs_none": sum(r["bits"][t]["mix"] - r["bits"]["none"]["mix"] for r in sub) / sb}
        entry = {"bytes": nb, "chunks": len(rs), "samples": len({r["sample"] for r in rs}), "transforms": per_t}
        for cset in ("core", "all"):
            entry[f"selection_{cset}"] = selection(rs, cset)
        kinds[k] = entry
    sel_all = {cset: selection(rows, cset) for cset in ("core", "all")}
    return {"kinds": kinds, "selection_overall": sel_all}


def selection(rs: list[dict], cset: str) -> dict:
    """Oracle (per-chunk best by LM+mix), each heuristic's and fixed rules' picks and losses."""
    nb = sum(r["bytes"] for r in rs)
    cands = [(r, r["core"] if cset == "core" else r["transforms"]) for r in rs]
    mix = [{t: r["bits"][t]["mix"] for t in c} for r, c in cands]
    best = [_argmin(m, c) for m, (_, c) in zip(mix, cands)]
    oracle = sum(m[b] for m, b in zip(mix, best))
    out = {"chunks": len(rs), "bytes": nb, "oracle_bpb": oracle / nb,
           "oracle_wins": {t: best.count(t) for t in TRANSFORMS if t in best}, "rules": {}}
    # per kind, the one transform best over the kind's chunks (in-sample), among those all of them have
    kind_best = {}
    for k in {r["kind"] for r in rs}:
        ks = [(m, c) for m, (r, c) in zip(mix, cands) if r["kind"] == k]
        common = [t for t in TRANSFORMS if all(t in c for _, c in ks)]
        kind_best[k] = min(common, key=lambda t: sum(m[t] for m, _ in ks))
    rules = {"none": lambda r, c: "none", "kind-best": lambda r, c: kind_best[r["kind"]]}
    for h in HEURISTICS:
        rules[h] = lambda r, c, h=h: _argmin({t: r["bits"][t][h] for t in c}, c)
    for name, rule in rules.items():
        picks = [rule(r, c) for r, c in cands]
        lost = [m[p] - m[b] for m, p, b in zip(mix, picks, best)]
        out["rules"][name] = {"agree": int(sum(p == b for p, b in zip(picks, best))),
                              "bpb": (oracle + sum(lost)) / nb, "lost_bpb": sum(lost) / nb,
                              "lost_pct": 100 * sum(lost) / oracle, "max_lost_bits_per_byte_chunk":
                              max((lo / r["bytes"] for lo, (r, _) in zip(lost, cands)), default=0.0),
                              "picks": {t: picks.count(t) for t in TRANSFORMS if t in picks}}
    out["rules"]["kind-best"]["transform"] = kind_best
    return out


# ----------------------------------------------------------------------------- printing
def _short(name: str, n: int = 34) -> str:
    name = name.split("/", 1)[-1]
    return name if len(name) <= n else name[: n - 12] + "…" + name[-11:]


def print_report(label: str, rows: list[dict], summ: dict, per_chunk: bool) -> None:
    print(f"\n=== {label}: bits per byte (mix = LM lm-small-v1 + DEFAULT_CONFIG mixer; zstd-19 / xz-9 on the "
          f"shuffled bytes of the same transformed chunks)")
    print(f"{'kind':8s} {'transform':9s} {'chunks':>6s} {'bytes':>7s} {'mix':>7s} {'vs none':>7s} {'zstd19':>7s}"
          f" {'xz9':>7s} {'chunk wins':>10s}")
    for k, e in summ["kinds"].items():
        wins = e["selection_all"]["oracle_wins"]
        best_t = min(e["transforms"], key=lambda t: e["transforms"][t]["mix"] if e["transforms"][t]["chunks"]
                     == e["chunks"] else 1e9)
        for t, v in e["transforms"].items():
            mark = " *" if t == best_t else ""
            print(f"{k:8s} {t:9s} {v['chunks']:6d} {v['bytes']:7d} {v['mix']:7.3f} {v['mix_vs_none']:+7.3f} {v['zstd19']:7.3f}"
                  f" {v['xz']:7.3f} {wins.get(t, 0):10d}{mark}")
    print("(vs none: mix minus mix of none on the same chunks; * = best single transform for the kind among those "
          "every chunk has; chunk wins: per-chunk best by mix, all candidates)")
    for cset in ("core", "all"):
        print(f"\n{label}: per-chunk selection, candidates '{cset}' (agree = picks the chunk's best by mix; "
              f"lost = bits/byte above the per-chunk oracle)")
        names = ["none", "kind-best"] + list(HEURISTICS)
        print(f"{'kind':8s} {'chunks':>6s} {'oracle':>7s} " + " ".join(f"{n:>14s}" for n in names))
        ents = [(k, e[f"selection_{cset}"]) for k, e in summ["kinds"].items()]
        ents.append(("all", summ["selection_overall"][cset]))
        for k, s in ents:
            cells = [f"{s['rules'][n]['agree']:2d}/{s['chunks']:<2d} +{s['rules'][n]['lost_bpb']:.3f}" for n in names]
            print(f"{k:8s} {s['chunks']:6d} {s['oracle_bpb']:7.3f} " + " ".join(f"{c:>14s}" for c in cells))
    if per_chunk:
        print(f"\n{label}: per chunk, mix bits/byte per transform (best in [ ]); heuristic picks")
        for r in rows:
            ts = r["transforms"]
            best = _argmin({t: r["bits"][t]["mix"] for t in ts}, ts)
            cells = " ".join((f"[{t}={r['bits'][t]['mix'] / r['bytes']:.3f}]" if t == best else
                              f"{t}={r['bits'][t]['mix'] / r['bytes']:.3f}") for t in ts)
            picks = " ".join(f"{h}:{_argmin({t: r['bits'][t][h] for t in ts}, ts)}" for h in CHEAP)
            print(f"  {r['kind']:8s} {_short(r['sample']):34s} #{r['chunk']:<2d} {r['bytes']:6d} B  {cells}   {picks}")


def _rounded(x):
    """Floats to 6 significant digits (keeps the JSON small)."""
    if isinstance(x, float):
        return float(f"{x:.6g}")
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_rounded(v) for v in x]
    return x


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--kind-bytes", type=int, default=65536)
    ap.add_argument("--sample-bytes", type=int, default=32768)
    ap.add_argument("--min-bytes", type=int, default=8192)
    ap.add_argument("--chunk-bytes", default="0,8192",
                    help="comma-separated chunk sizes to evaluate (0: each sample is one chunk)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/lmcodec_mixing_cache"))
    ap.add_argument("--quick", action="store_true", help="16 KiB per kind, whole samples only")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.kind_bytes, args.chunk_bytes = min(args.kind_bytes, 16384), "0"
    out = args.out or (Path("/tmp/lmcodec_transform_eval_quick.json") if args.quick
                       else ROOT / "benchmarks" / "results" / "transform_eval.json")
    sizes = [int(x) for x in args.chunk_bytes.split(",")]

    from lmcodec.mixing import DEFAULT_CONFIG
    from lmcodec.models import load_model

    t0 = time.time()
    model = load_model(args.model)
    result: dict = {
        "model": args.model, "mixer_config": DEFAULT_CONFIG.to_dict(), "units": "bits per byte",
        "selection": {"kinds": args.kinds, "kind_bytes": args.kind_bytes, "sample_bytes": args.sample_bytes,
                      "min_bytes": args.min_bytes},
        "threads": os.environ.get("LMCODEC_NUM_THREADS"), "quick": args.quick,
        "runs": {},
    }
    for size in sizes:
        label = "whole samples" if size == 0 else f"{size}-byte chunks"
        t1 = time.time()
        chunks = select_chunks(args.kinds, args.kind_bytes, args.sample_bytes, args.min_bytes, size)
        n_lane_bytes = sum(c.nbytes * len(c.transforms) for c in chunks)
        print(f"{label}: {len(chunks)} chunks, {sum(c.nbytes for c in chunks)} bytes, "
              f"{n_lane_bytes} bytes over all transforms", flush=True)
        times: dict[str, float] = {}
        rows = evaluate(chunks, model, args.cache, label, times)
        summ = summarize(rows)
        print_report(label, rows, summ, per_chunk=True)
        kib = n_lane_bytes / 1024
        ms_per_kib = {h: 1000 * v / kib for h, v in times.items()}
        print(f"{label}: heuristic cost, ms per KiB (of chunk x transform): "
              + ", ".join(f"{h} {v:.3f}" for h, v in ms_per_kib.items()))
        result["runs"][str(size)] = {"chunk_bytes": size, "label": label, **summ,
                                     "heuristic_ms_per_kib": ms_per_kib, "chunks": rows,
                                     "seconds": time.time() - t1}
    result["seconds"] = time.time() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_rounded(result), indent=1, default=float) + "\n")
    print(f"\nwrote {out} ({result['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
