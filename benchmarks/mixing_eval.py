"""Evaluate :mod:`lmcodec.mixing` on real validation data: exact code lengths per kind and plane.

For every data kind of the corpus (``lmcodec.corpus.load_samples('val')``) a few samples are
taken (each truncated to ``--sample-bytes``, until the kind holds ``--kind-bytes``), byte-shuffled
into planes exactly as :func:`lmcodec.preprocess.split_planes` does, and every plane becomes one
mixer *stream* (one lane). For each plane this reports the exact code length, in bits, of

* ``lm``     the shipped model alone (``lm-small-v1`` by default), tables from ``full_freqs`` on
             1024-byte segments each opened by ``start_token(kind)``, as lmcoding does;
* ``o0``, ``o1``, ``o2``, ``match``: each adaptive component alone (its own normalised table,
             computed from the same run's inputs; float log2 for reporting only);
* ``mix``    the :class:`lmcodec.mixing.AdaptiveMixer` output tables (exact: sum of
             ``16 - log2(f[sym])``), plus ablations (``--ablate``) with one component removed;
* ``zstd`` (numcodecs Zstd level 19) and ``xz`` (lzma preset 9) of the plane's bytes, and of the
  whole shuffled sample per kind (what a classical codec would see).

LM tables are slow to compute on a CPU, so they are cached per plane under ``--cache``
(default ``/tmp/lmcodec_mixing_cache``), keyed by the model id and the plane's bytes and kind.

Run: ``python benchmarks/mixing_eval.py`` (writes ``benchmarks/results/mixing_eval.json``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lmcodec.frequency_model import N_SYMBOLS, start_token
from lmcodec.preprocess import split_planes

DEFAULT_MODEL = "lm-small-v1"
SEGMENT = 1024


@dataclass
class Stream:
    kind: str  # corpus kind (text, audio, ...)
    sample: str  # sample name
    plane: int  # plane index within the sample (0 = least significant byte)
    n_planes: int
    token_kind: int  # start-token kind id
    data: np.ndarray  # uint8 [n]
    record: int = 0  # elements per row of the sample's array (0 for 1-D): a plane's record length


def select_streams(kind_bytes: int = 65536, sample_bytes: int = 32768, min_bytes: int = 8192) -> list[Stream]:
    """Deterministic selection: per kind, samples in corpus order (each at least ``min_bytes``),
    truncated to ``sample_bytes``, until the kind holds ``kind_bytes``; one stream per plane."""
    from lmcodec.corpus import load_samples

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        samples = load_samples("val", max_bytes_per_sample=sample_bytes)
    taken: dict[str, int] = {}
    out: list[Stream] = []
    for s in samples:
        if s.array.nbytes < min_bytes or taken.get(s.kind, 0) >= kind_bytes:
            continue
        taken[s.kind] = taken.get(s.kind, 0) + s.array.nbytes
        raw = np.frombuffer(s.array.tobytes(), dtype=np.uint8)
        planes = split_planes(raw, s.array.dtype)
        record = int(np.prod(s.array.shape[1:])) if s.array.ndim >= 2 else 0
        for p, (data, tk) in enumerate(planes):
            out.append(Stream(s.kind, s.name, p, len(planes), tk, data, record))
    return out


def _lm_cache_key(model_id: bytes, st: Stream) -> str:
    h = hashlib.sha256(model_id + bytes([st.token_kind]) + st.data.tobytes()).hexdigest()[:24]
    return f"{model_id.hex()}_{h}.npy"


def lm_tables_for(streams: list[Stream], model_name: str = DEFAULT_MODEL, cache: Path | None = None,
                  verbose: bool = False, max_batch: int = 16) -> list[np.ndarray]:
    """LM tables ``int32 [n, 256]`` per stream, segment by segment as lmcoding does (cached)."""
    from lmcodec.models import load_model

    cache = Path(cache or "/tmp/lmcodec_mixing_cache")
    cache.mkdir(parents=True, exist_ok=True)
    model = load_model(model_name)
    out: list[np.ndarray | None] = [None] * len(streams)
    todo: list[tuple[int, int, int]] = []  # (stream, start, length) segments not cached
    for i, st in enumerate(streams):
        path = cache / _lm_cache_key(model.model_id, st)
        if path.exists():
            out[i] = np.load(path).astype(np.int32)
        else:
            out[i] = np.zeros((len(st.data), N_SYMBOLS), dtype=np.int32)
            todo += [(i, a, min(SEGMENT, len(st.data) - a)) for a in range(0, len(st.data), SEGMENT)]
    t0 = time.time()
    for first in range(0, len(todo), max_batch):
        batch = todo[first : first + max_batch]
        width = max(n for _, _, n in batch)
        tokens = np.zeros((len(batch), width), dtype=np.int64)
        for r, (i, a, n) in enumerate(batch):
            seg = streams[i].data[a : a + n]
            tokens[r, 0] = start_token(streams[i].token_kind)
            tokens[r, 1:n] = seg[:-1]
        freqs = model.full_freqs(tokens)
        for r, (i, a, n) in enumerate(batch):
            out[i][a : a + n] = freqs[r, :n]
        if verbose:
            done = first + len(batch)
            print(f"  LM segments {done}/{len(todo)} ({time.time() - t0:.0f} s)", flush=True)
    for i in sorted({i for i, _, _ in todo}):
        np.save(cache / _lm_cache_key(model.model_id, streams[i]), out[i].astype(np.uint16))
    return out  # type: ignore[return-value]


def run_mixer(streams: list[Stream], lm: list[np.ndarray], config=None, components: bool = False,
              use_lm: bool = True, records: bool = False) -> dict[str, np.ndarray]:
    """Run one mixer with one lane per stream; return bits per stream for ``mix`` (exact) and,
    with ``components``, each component alone (softmax of its integer input, float)."""
    from lmcodec.mixing import DEFAULT_CONFIG, LOG_ONE, AdaptiveMixer

    config = config or DEFAULT_CONFIG
    B = len(streams)
    lengths = np.array([len(s.data) for s in streams])
    n = int(lengths.max())
    mixer = AdaptiveMixer(B, config)
    if records and "rec" in config.components:
        rec = np.array([s.record if s.record < (1 << config.history_bits) else 0 for s in streams])
        mixer.set_record_length(rec)
    bits = {"mix": np.zeros(B)}
    names = [c for c in config.components if c != "match"]
    if components:
        for c in config.components:
            bits[c] = np.zeros(B)
    lm_buf = np.full((B, N_SYMBOLS), TOTAL_DEFAULT // N_SYMBOLS, dtype=np.int32)
    sym = np.zeros(B, dtype=np.int64)
    for p in range(n):
        act = lengths > p
        idx = np.flatnonzero(act)
        for i in idx:
            lm_buf[i] = lm[i][p]
            sym[i] = streams[i].data[p]
        table = mixer.step(lm_buf if use_lm else None)
        bits["mix"][idx] += 16 - np.log2(table[idx, sym[idx]])
        if components:
            L = mixer._L[:, idx].astype(np.float64) / LOG_ONE  # [kd, n, 256]
            m = L.max(axis=2, keepdims=True)
            lse = m[..., 0] + np.log2(np.exp2(L - m).sum(axis=2))
            for k, c in enumerate(names):
                bits[c][idx] += lse[k] - L[k, np.arange(len(idx)), sym[idx]]
            if "match" in config.components:
                ms = mixer._mscore[idx] / LOG_ONE
                lse_m = np.log2(255 + np.exp2(ms))
                bits["match"][idx] += lse_m - np.where(mixer._pred[idx] == sym[idx], ms, 0)
        mixer.update(sym, None if act.all() else act)
    if components and "lm" in bits:  # the LM's exact cost
        bits["lm"] = np.array([float(np.sum(16 - np.log2(t[np.arange(len(s.data)), s.data])))
                               for t, s in zip(lm, streams)])
    return bits


TOTAL_DEFAULT = 65536


def classical_sizes(data: bytes) -> dict[str, int]:
    from numcodecs import Zstd

    return {"zstd": len(Zstd(level=19).encode(data)), "xz": len(lzma.compress(data, preset=9))}


def speed(lanes: tuple[int, ...] = (16, 64, 256), steps: int = 100, repeats: int = 7) -> dict[int, float]:
    """µs per step+update of the default mixer (min over ``repeats`` runs of ``steps`` steps),
    on text-like lanes with a fixed LM table."""
    from lmcodec.mixing import AdaptiveMixer

    rng = np.random.default_rng(0)
    text = np.frombuffer((Path(__file__).read_bytes() * 16)[: steps * (repeats + 1) + 1024], dtype=np.uint8)
    out = {}
    for B in lanes:
        m = AdaptiveMixer(B)
        lm = rng.integers(1, 400, (B, N_SYMBOLS)).astype(np.int32)
        lm[:, 0] += TOTAL_DEFAULT - lm.sum(1)
        sym = np.stack([np.roll(text, 997 * i) for i in range(B)])
        for p in range(steps):
            m.step(lm)
            m.update(sym[:, p])
        best = float("inf")
        for r in range(repeats):
            t0 = time.perf_counter()
            for p in range(steps * (r + 1), steps * (r + 2)):
                m.step(lm)
                m.update(sym[:, p])
            best = min(best, (time.perf_counter() - t0) / steps)
        out[B] = best * 1e6
    return out


KIND_ORDER = ("text", "code", "image", "audio", "seismic", "sensor", "float32", "float64")


def main(argv: list[str] | None = None) -> int:
    from lmcodec.mixing import COMPONENTS, DEFAULT_CONFIG, MixerConfig

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--kind-bytes", type=int, default=65536)
    ap.add_argument("--sample-bytes", type=int, default=32768)
    ap.add_argument("--min-bytes", type=int, default=8192)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/lmcodec_mixing_cache"))
    ap.add_argument("--no-ablations", action="store_true", help="only the default mix")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "mixing_eval.json")
    args = ap.parse_args(argv)

    t0 = time.time()
    streams = select_streams(args.kind_bytes, args.sample_bytes, args.min_bytes)
    print(f"{len(streams)} streams (planes), {sum(len(s.data) for s in streams)} bytes", flush=True)
    lm = lm_tables_for(streams, args.model, args.cache, verbose=True)

    runs: dict[str, dict[str, np.ndarray]] = {}
    print("mix (default config, explicit record lengths) + components alone ...", flush=True)
    runs["mix"] = run_mixer(streams, lm, DEFAULT_CONFIG, components=True, records=True)
    variants = {}
    if not args.no_ablations:
        dc = DEFAULT_CONFIG.components
        variants = {f"mix-no-{c}": dict(config=MixerConfig(components=tuple(x for x in dc if x != c)), records=True)
                    for c in dc if c != "lm"}
        variants["mix-rec-detected"] = dict(config=DEFAULT_CONFIG, records=False)
        variants["mix-lm-only"] = dict(config=MixerConfig(components=("lm",)), records=True)
        variants["adaptive-no-lm"] = dict(config=DEFAULT_CONFIG, records=True, use_lm=False)
    for name, kw in variants.items():
        print(f"{name} ...", flush=True)
        runs[name] = {"mix": run_mixer(streams, lm, **kw)["mix"]}

    comp_names = ["lm"] + [c for c in COMPONENTS if c != "lm"]
    planes = []
    for i, s in enumerate(streams):
        n = len(s.data)
        row = {"kind": s.kind, "sample": s.sample, "plane": s.plane, "n_planes": s.n_planes, "bytes": n,
               "record": s.record}
        row.update({c: runs["mix"][c][i] / n for c in comp_names if c in runs["mix"]})
        row["mix"] = runs["mix"]["mix"][i] / n
        for name in variants:
            row[name] = runs[name]["mix"][i] / n
        row.update({k: 8 * v / n for k, v in classical_sizes(s.data.tobytes()).items()})
        planes.append(row)
    cols = [c for c in comp_names if c in runs["mix"]] + ["mix"] + list(variants)
    kinds = {}
    for k in KIND_ORDER:
        rows = [r for r in planes if r["kind"] == k]
        if not rows:
            continue
        nb = sum(r["bytes"] for r in rows)
        entry = {"bytes": nb, "planes": len(rows), "samples": len({r["sample"] for r in rows})}
        for c in cols + ["zstd", "xz"]:
            entry[c + ("-plane" if c in ("zstd", "xz") else "")] = sum(r[c] * r["bytes"] for r in rows) / nb
        # classical codecs on each whole shuffled sample (planes concatenated), as zstd would see it
        by_sample: dict[str, list[np.ndarray]] = {}
        for s in streams:
            if s.kind == k:
                by_sample.setdefault(s.sample, []).append(s.data)
        sizes = [classical_sizes(np.concatenate(v).tobytes()) for v in by_sample.values()]
        entry["zstd"] = 8 * sum(z["zstd"] for z in sizes) / nb
        entry["xz"] = 8 * sum(z["xz"] for z in sizes) / nb
        entry["worst_plane_mix"] = max(r["mix"] for r in rows)
        entry["worst_plane_lm"] = max(r["lm"] for r in rows)
        kinds[k] = entry
    total = sum(e["bytes"] for e in kinds.values())
    overall = {c: sum(e[c] * e["bytes"] for e in kinds.values()) / total
               for c in cols + ["zstd", "xz"]}
    overall["mean_over_kinds"] = {c: float(np.mean([e[c] for e in kinds.values()])) for c in cols + ["zstd", "xz"]}

    # ---- print
    show = cols + ["zstd", "xz"]
    print("\nbits per byte (mix = default AdaptiveMixer; zstd/xz on each whole shuffled sample)")
    print(f"{'kind':9s}{'bytes':>8s} " + " ".join(f"{c[-10:]:>10s}" for c in show))
    for k, e in kinds.items():
        print(f"{k:9s}{e['bytes']:8d} " + " ".join(f"{e[c]:10.3f}" for c in show))
    print(f"{'mean':9s}{'':8s} " + " ".join(f"{overall['mean_over_kinds'][c]:10.3f}" for c in show))
    print(f"{'all':9s}{total:8d} " + " ".join(f"{overall[c]:10.3f}" for c in show))
    worst = sorted(planes, key=lambda r: -r["mix"])[:6]
    print("\nworst planes under the mix (bits/byte): " + "; ".join(
        f"{r['sample']} p{r['plane']} ({r['bytes']} B): mix {r['mix']:.3f}, lm {r['lm']:.3f}, xz {r['xz']:.3f}"
        for r in worst))
    over8 = [r for r in planes if r["lm"] > 8.0]
    print(f"planes where the LM alone costs > 8 bits/byte: {len(over8)}; under the mix the max is "
          f"{max(r['mix'] for r in planes):.4f}")
    speeds = {} if args.no_speed else speed()
    if speeds:
        print("µs per step (step + update), default config: " + ", ".join(f"B={b}: {v:.0f}" for b, v in speeds.items()))
    result = {
        "model": args.model,
        "config": DEFAULT_CONFIG.to_dict(),
        "bytes_per_lane": DEFAULT_CONFIG.bytes_per_lane(),
        "selection": {"kind_bytes": args.kind_bytes, "sample_bytes": args.sample_bytes, "min_bytes": args.min_bytes},
        "units": "bits per byte",
        "kinds": kinds,
        "overall": overall,
        "planes": planes,
        "us_per_step": speeds,
        "seconds": time.time() - t0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(f"wrote {args.out} ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
