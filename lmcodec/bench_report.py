"""The benchmark report: machine description, JSON, Markdown tables and matplotlib plots.

:func:`write_report` turns the document of :func:`lmcodec.bench.run_benchmark` into
``benchmarks.json``, ``benchmarks.md`` and ``benchmarks-*.png`` in one directory. Everything
in the Markdown comes from the JSON document, so a report can be re-rendered from a saved
``benchmarks.json`` with ``write_report(json.load(f), out_dir)``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Iterable
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .transforms import Transform

__all__ = ["machine_info", "write_report", "render_markdown", "aggregate", "default_codec", "plane_rows",
           "PAPER_TABLE1", "PLANE_LIMIT"]

#: Deletang et al. 2023 ("Language Modeling Is Compression"), Table 1, raw compression rates
#: (1 GB of each dataset in 2048-byte chunks) as quoted in issue 6: column -> compressor -> rate.
PAPER_TABLE1: dict[str, dict[str, float]] = {
    "text": {"gzip": 0.323, "LZMA2": 0.230, "Transformer 3.2M": 0.170, "Chinchilla 70B": 0.083},
    "image": {"PNG": 0.585},
    "audio": {"FLAC": 0.303},
}
_PAPER_ROW = {"gzip-9": "gzip", "xz-9": "LZMA2", "png": "PNG", "flac": "FLAC"}
_PAPER_ONLY = ("Transformer 3.2M", "Chinchilla 70B")

_PACKAGES = ("lmcodec", "numpy", "onnxruntime", "numcodecs", "pcodec", "fpzip", "soundfile",
             "Pillow", "matplotlib", "zarr")
PLANE_LIMIT = 8.0
"""Bits per byte no byte plane may exceed (the per-stream raw fallback of lm_mix)."""
PLOTS = {"rates": "benchmarks-rates.png", "speed": "benchmarks-speed.png",
         "scaling": "benchmarks-scaling.png"}


# -- machine ----------------------------------------------------------------------------------


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + (" (with uncommitted changes)" if dirty else "")


def machine_info() -> dict:
    """Date, CPU, memory, load, OS and package versions of this machine (JSON-ready)."""
    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    mem_kib = next((int(line.split()[1]) for line in _read("/proc/meminfo").splitlines()
                    if line.startswith("MemTotal:")), None)
    packages = {}
    for name in _PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    try:
        import soundfile

        packages["libsndfile"] = soundfile.__libsndfile_version__
    except (ImportError, OSError):
        packages["libsndfile"] = None
    return {
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": None if mem_kib is None else round(mem_kib / 2**20, 1),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": packages,
        "git_commit": _git_commit(),
    }


# -- aggregation ------------------------------------------------------------------------------


def aggregate(results: Iterable[dict]) -> dict:
    """Totals of results: raw and compressed bytes, seconds, max peaks, rate, MB/s."""
    rs = list(results)
    raw = sum(r["raw_bytes"] for r in rs)
    comp = sum(r["compressed_bytes"] for r in rs)
    enc = sum(r["encode"]["seconds"] for r in rs)
    dec = sum(r["decode"]["seconds"] for r in rs)
    peaks = {k: [r[k]["peak_bytes"] for r in rs if r[k]["peak_bytes"] is not None] for k in ("encode", "decode")}
    model = rs[0]["model_bytes"] if rs else None
    return {
        "raw_bytes": raw, "compressed_bytes": comp, "rate": comp / raw if raw else None,
        "adjusted_rate": None if model is None or not raw else (comp + model) / raw,
        "encode_mb_s": raw / 1e6 / enc if enc > 0 else None,
        "decode_mb_s": raw / 1e6 / dec if dec > 0 else None,
        "encode_cpu_s": sum(r["encode"]["cpu_seconds"] for r in rs),
        "decode_cpu_s": sum(r["decode"]["cpu_seconds"] for r in rs),
        "encode_peak_bytes": max(peaks["encode"], default=None),
        "decode_peak_bytes": max(peaks["decode"], default=None),
    }


def _index(doc: dict) -> dict[tuple[str, str, str], dict]:
    return {(r["group"], r["dataset"], r["codec"]): r for r in doc["results"]}


def _groups(doc: dict) -> list[str]:
    """Chunking groups of the main datasets, in run order (the paper group excluded)."""
    seen: list[str] = []
    for d in doc["datasets"]:
        if d["group"] != "paper" and d["group"] not in seen:
            seen.append(d["group"])
    return seen


def _datasets(doc: dict, group: str) -> list[dict]:
    return [d for d in doc["datasets"] if d["group"] == group]


def _codecs(doc: dict) -> list[str]:
    ran = {r["codec"] for r in doc["results"]}
    return [c["name"] for c in doc["codecs"] if c["name"] in ran]


def _group_total(doc: dict, group: str, codec: str) -> dict | None:
    """Aggregate over every dataset of the group, or None if the codec skipped one."""
    idx = _index(doc)
    rs = [idx.get((group, d["name"], codec)) for d in _datasets(doc, group)]
    if not rs or any(r is None for r in rs):
        return None
    return aggregate(rs)


# -- markdown ---------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, fmt: str = ".3g") -> str:
    return "—" if x is None else format(x, fmt)


def _mib(n: int | None) -> str:
    return "—" if n is None else f"{n / 2**20:.1f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


_MODES = ("lm_mix", "lm", "zstd", "raw")


def _is_lm(doc: dict, codec: str) -> bool:
    return any(m["codec"] == codec for m in doc["models"])


def _mode_label(model: dict) -> str:
    """The models table's mode column for one ``doc["models"]`` entry."""
    from .codec import FAST_PRESET

    if not model.get("mix", True):
        return "lm (`LMCodec(mix=False)`)"
    version = model.get("mixer_version")
    if version is None:
        return "lm_mix (`LMCodec()`)"
    preset = {"model": model["name"], "mixer_version": version} == FAST_PRESET
    return f"lm_mix, mixer version {version} (`{'LMCodec.fast()' if preset else f'LMCodec(mixer_version={version})'}`)"


def default_codec(doc: dict) -> str | None:
    """The default model's default codec (mode lm_mix) in ``doc``: the models entry marked
    ``default`` and ``mix``, else the first ``mix`` entry, else the first entry."""
    ms = doc["models"]
    for pick in ([m for m in ms if m.get("default") and m.get("mix", True)], [m for m in ms if m.get("mix", True)], ms):
        if pick:
            return pick[0]["codec"]
    return None


def _rate_table(doc: dict, group: str) -> list[str]:
    idx = _index(doc)
    sets = _datasets(doc, group)
    best = {d["name"]: min((r["rate"] for (g, n, _), r in idx.items() if g == group and n == d["name"]),
                           default=None) for d in sets}
    rows = []
    for codec in _codecs(doc):
        cells, adjusted, modes = [], [], []
        for d in sets:
            r = idx.get((group, d["name"], codec))
            cell = "—" if r is None else _pct(r["rate"])
            if r is not None and r["rate"] == best[d["name"]]:
                cell = f"**{cell}**"
            cells.append(cell)
            adjusted.append("—" if r is None else _pct(r["adjusted_rate"]))
            m = (r or {}).get("modes") or {}
            modes.append("—" if not m else "/".join(str(m.get(k, 0)) for k in _MODES))
        total = _group_total(doc, group, codec)
        rows.append([f"`{codec}`", *cells, _pct(total and total["rate"])])
        if _is_lm(doc, codec):
            rows.append([f"`{codec}` adjusted", *adjusted, _pct(total and total["adjusted_rate"])])
            rows.append([f"`{codec}` chunks {'/'.join(_MODES)}", *modes, ""])
    header = ["codec", *[d["name"] for d in sets], "all kinds"]
    return _table(header, rows)


def _speed_table(doc: dict, group: str) -> list[str]:
    rows = []
    for codec in _codecs(doc):
        rs = [r for r in doc["results"] if r["group"] == group and r["codec"] == codec]
        if not rs:
            continue
        a = aggregate(rs)
        rows.append([f"`{codec}`", _num(a["encode_mb_s"]), _num(a["decode_mb_s"]),
                     _num(a["encode_cpu_s"], ".2f"), _num(a["decode_cpu_s"], ".2f"),
                     _mib(a["encode_peak_bytes"]), _mib(a["decode_peak_bytes"]), f"{a['raw_bytes']:,}"])
    return _table(["codec", "encode MB/s", "decode MB/s", "encode CPU s", "decode CPU s",
                   "encode peak MiB", "decode peak MiB", "raw bytes"], rows)


def _paper_cells(doc: dict) -> list[tuple[str, str, str]]:
    """(column title, group, dataset) of the paper-style table."""
    g2k = "2 KiB" if "2 KiB" in _groups(doc) else None
    cols = [("text", g2k, "text"), ("image 32x64 gray", "paper", "image-gray-32x64"),
            ("audio 8-bit", "paper", "audio-8bit"), ("audio 16-bit", g2k, "audio")]
    return [(t, g, n) for t, g, n in cols if g is not None]


def _paper_table(doc: dict) -> list[str]:
    idx = _index(doc)
    cols = _paper_cells(doc)
    rows = []
    lm_codecs = [m["codec"] for m in doc["models"]]
    for codec in [c for c in _PAPER_ROW if c in _codecs(doc)] + lm_codecs:
        for adjusted in (False, True) if codec in lm_codecs else (False,):
            cells = []
            for _, g, n in cols:
                r = idx.get((g, n, codec))
                cells.append("—" if r is None else _pct(r["adjusted_rate"] if adjusted else r["rate"]))
            name = _PAPER_ROW.get(codec, "")
            paper = [_pct(PAPER_TABLE1[k].get(name)) if not adjusted else "—" for k in ("text", "image", "audio")]
            label = f"`{codec}`" + (" adjusted" if adjusted else "")
            rows.append([label, *cells, *paper])
    for name in _PAPER_ONLY:
        rows.append([f"paper: {name}", *["" for _ in cols], _pct(PAPER_TABLE1["text"][name]), "—", "—"])
    header = ["compressor", *[t for t, _, _ in cols], "paper: enwik9", "paper: ImageNet", "paper: LibriSpeech"]
    return _table(header, rows)


def _data_table(doc: dict) -> list[str]:
    rows = []
    first_group = _groups(doc)[:1]
    for d in doc["datasets"]:
        if d["group"] not in first_group and d["group"] != "paper":
            continue
        srcs = "; ".join(f"{s['name']} ({s['package']} {s['version'] or ''}".rstrip() + f", {s['dtype']} "
                         f"{'x'.join(map(str, s['shape']))})" for s in d["sources"])
        name = d["name"] if d["group"] != "paper" else f"{d['name']} (paper)"
        rows.append([name, srcs, f"{d['raw_bytes']:,}"])
    return _table(["dataset", "validation samples (package, dtype, shape)", "raw bytes"], rows)


def _chunk_table(doc: dict) -> list[str]:
    rows = []
    for g in _groups(doc) + ["paper"]:
        for d in _datasets(doc, g):
            rows.append([g, d["name"], str(d["n_chunks"]), f"{d['raw_bytes'] / d['n_chunks']:,.0f}",
                         "x".join(map(str, d["chunk_shape"])) + f" {d['dtype']}"])
    return _table(["chunking", "dataset", "chunks", "mean chunk bytes", "first chunk"], rows)


def _bpb(rate: float | None) -> str:
    """A rate (compressed / raw) as bits per byte."""
    return "—" if rate is None else f"{8 * rate:.2f}"


def _bits(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def _versus(lm: dict, other: dict | None) -> str:
    """``win −12.3 %`` / ``lose +4.0 %``: the LM codec's size relative to ``other``'s."""
    if other is None:
        return "—"
    d = lm["compressed_bytes"] / other["compressed_bytes"] - 1
    word = "**win**" if d < 0 else ("tie" if d == 0 else "lose")
    return f"{word} {100 * d:+.1f}%"


def _best_classical(doc: dict, group: str, name: str) -> dict | None:
    rs = [r for r in doc["results"] if r["group"] == group and r["dataset"] == name and not _is_lm(doc, r["codec"])]
    return min(rs, key=lambda r: r["compressed_bytes"]) if rs else None


def _total(rs: list[dict | None]) -> dict | None:
    if not rs or any(r is None for r in rs):
        return None
    return {"raw_bytes": sum(r["raw_bytes"] for r in rs),
            "compressed_bytes": sum(r["compressed_bytes"] for r in rs),
            "rate": sum(r["compressed_bytes"] for r in rs) / sum(r["raw_bytes"] for r in rs)}


def _win_table(doc: dict, groups: list[str]) -> tuple[list[str], dict]:
    """Per dataset of ``groups`` (and in total): the default codec vs zstd-19, xz-9 and the best
    classical codec of that dataset, in bits per byte; also returns the totals."""
    idx = _index(doc)
    lm_codec = default_codec(doc)
    lm_only = next((m["codec"] for m in doc["models"] if not m.get("mix", True)), None)
    rows, cols = [], {"lm": [], "lm_only": [], "zstd-19": [], "xz-9": [], "best": []}
    for group in groups:
        for d in _datasets(doc, group):
            lm = idx.get((group, d["name"], lm_codec))
            if lm is None:
                continue
            only = idx.get((group, d["name"], lm_only)) if lm_only else None
            zstd = idx.get((group, d["name"], "zstd-19"))
            xz = idx.get((group, d["name"], "xz-9"))
            best = _best_classical(doc, group, d["name"])
            for key, r in (("lm", lm), ("lm_only", only), ("zstd-19", zstd), ("xz-9", xz), ("best", best)):
                cols[key].append(r)
            label = d["name"] if len(groups) == 1 else f"{d['name']} ({group})"
            rows.append([label, f"**{_bpb(lm['rate'])}**", _bpb(only and only["rate"]),
                         _bpb(zstd and zstd["rate"]), _bpb(xz and xz["rate"]),
                         "—" if best is None else f"{_bpb(best['rate'])} `{best['codec']}`",
                         _versus(lm, zstd), _versus(lm, xz), _versus(lm, best)])
    totals = {k: _total(v) for k, v in cols.items()}
    if rows:
        t = totals
        rows.append(["**all**", f"**{_bpb(t['lm'] and t['lm']['rate'])}**", _bpb(t["lm_only"] and t["lm_only"]["rate"]),
                     _bpb(t["zstd-19"] and t["zstd-19"]["rate"]), _bpb(t["xz-9"] and t["xz-9"]["rate"]),
                     _bpb(t["best"] and t["best"]["rate"]) + " (best per dataset)",
                     *(_versus(t["lm"], t[k]) if t["lm"] else "—" for k in ("zstd-19", "xz-9", "best"))])
    header = ["data", f"`{lm_codec}`", "lm-only" if lm_only else "lm-only (not run)", "zstd-19", "xz-9",
              "best classical", "vs zstd-19", "vs xz-9", "vs best classical"]
    return _table(header, rows), totals


def _summary(doc: dict) -> list[str]:
    lm_codec = default_codec(doc)
    if lm_codec is None:
        return []
    lm_only = next((m["codec"] for m in doc["models"] if not m.get("mix", True)), None)
    lines = [
        f"The default codec, `{lm_codec}` (`LMCodec()`, mode lm_mix), against zstd -19, xz -9 and "
        "the best classical codec of each dataset (every baseline that applies, pcodec, fpzip, PNG "
        "and FLAC included), in **bits per byte** (8 x compressed / raw; lower is better; LMCodec "
        "with its 36-byte chunk headers). *vs*: LMCodec's compressed size relative to the other "
        "codec's (negative = smaller = **win**). "
        + (f"*lm-only*: `{lm_only}` (`LMCodec(mix=False)`, the model alone), to show what mixing adds. "
           if lm_only else "")
        + "*all*: total compressed over total raw bytes of the datasets above; for *best classical* "
        "the best codec is picked per dataset.",
        "",
    ]
    idx = _index(doc)
    everything: dict[str, list] = {}
    for group in [*_groups(doc), "paper"]:
        if not any(idx.get((group, d["name"], lm_codec)) for d in _datasets(doc, group)):
            continue
        table, totals = _win_table(doc, [group])
        title = "the paper's datasets (2048-byte chunks)" if group == "paper" else f"chunks of {group}"
        lines += [f"**{title}**", "", *table, ""]
        if group != "paper":
            for k, v in totals.items():
                everything.setdefault(k, []).append(v)
    t = {k: _total(v) for k, v in everything.items()}
    if t.get("lm"):
        parts = [f"{name} {_bpb(t[k]['rate'])} ({_versus(t['lm'], t[k])})"
                 for k, name in (("zstd-19", "zstd-19"), ("xz-9", "xz-9"), ("best", "best classical per dataset"))
                 if t.get(k)]
        lines += [f"Over every kind at every chunk size ({_groups_text(doc)}): `{lm_codec}` "
                  f"{_bpb(t['lm']['rate'])} bits/byte"
                  + (f", lm-only {_bpb(t['lm_only']['rate'])}" if t.get("lm_only") else "")
                  + "; " + ", ".join(parts) + ".", ""]
    for group in _groups(doc):
        for m in doc["models"]:
            wins, losses = [], []
            for d in _datasets(doc, group):
                lm = idx.get((group, d["name"], m["codec"]))
                best = _best_classical(doc, group, d["name"])
                if lm is None or best is None:
                    continue
                text = f"{d['name']} ({_pct(lm['rate'])} vs `{best['codec']}` {_pct(best['rate'])})"
                (wins if lm["rate"] < best["rate"] else losses).append(text)
            lines.append(f"- {group} chunks, `{m['codec']}`: beats every classical baseline on "
                         f"{len(wins)} of {len(wins) + len(losses)} kinds"
                         + (f": {', '.join(wins)}" if wins else "")
                         + (f"; behind on {', '.join(losses)}" if losses else "") + ".")
    return lines


def _groups_text(doc: dict) -> str:
    return ", ".join(_groups(doc))


def plane_rows(doc: dict, codec: str | None = None) -> list[dict]:
    """Per (group, dataset) of ``codec`` (default: :func:`default_codec`) with per-plane data:
    bits per byte of each plane over its lm_mix chunks, overhead and the other chunks."""
    codec = codec or default_codec(doc)
    dsets = {(d["group"], d["name"]): d for d in doc["datasets"]}
    out = []
    for r in doc["results"]:
        pl = r.get("planes")
        if r["codec"] != codec or not pl:
            continue
        d = dsets.get((r["group"], r["dataset"]), {})
        lm_raw = sum(p["bytes"] for p in pl["planes"])
        out.append({
            "group": r["group"], "dataset": r["dataset"], "dtype": d.get("dtype", ""),
            "itemsize": _itemsize(d.get("dtype", "|u1")),
            "chunks": r["n_chunks"], "lm_mix_chunks": pl["lm_mix_chunks"],
            "planes": [8 * p["coded_bytes"] / p["bytes"] if p["bytes"] else None for p in pl["planes"]],
            "overhead_bpb": 8 * pl["overhead_bytes"] / lm_raw if lm_raw else None,
            "other": pl["other"], "plain": pl.get("plain", {"chunks": 0}), "transforms": pl["transforms"],
            "decimal": pl.get("decimal", 0),
            "max_chunk_plane": pl["max_chunk_plane_bits_per_byte"],
        })
    return out


def _itemsize(dtype: str) -> int:
    import numpy as np

    return np.dtype(dtype).itemsize


_TRANSFORM_NAMES = tuple(t.name.lower() for t in Transform)  # the keys of lm_mix_planes' "transforms"


def _plane_section(doc: dict) -> list[str]:
    codec = default_codec(doc)
    rows = plane_rows(doc, codec)
    multi = [r for r in rows if r["itemsize"] > 1]
    if not multi:
        return []
    width = max(len(r["planes"]) for r in multi)
    table = []
    for r in multi:
        o = r["other"]
        other = "—" if not o["chunks"] else f"{o['chunks']}: {_bits(8 * o['compressed_bytes'] / o['raw_bytes'])}"
        u = r["plain"]
        plain = "—" if not u["chunks"] else f"{u['chunks']}: {_bits(8 * u['compressed_bytes'] / u['raw_bytes'])}"
        tf = "/".join(str(r["transforms"].get(k, 0)) for k in _TRANSFORM_NAMES) + f", {r['decimal']} decimal"
        table.append([r["group"], r["dataset"], r["dtype"], f"{r['lm_mix_chunks']} of {r['chunks']}",
                      *[_bits(x) for x in r["planes"]]
                      + ["" for _ in range(width - len(r["planes"]))],
                      _bits(r["overhead_bpb"]), other, plain, tf])
    cells = [(x, r, p) for r in multi for p, x in enumerate(r["planes"]) if x is not None]
    lines = [
        "## Bits per byte per byte plane",
        "",
        f"`{codec}` on the multi-byte kinds: bits per byte of each byte plane (plane 0 = least "
        "significant byte of each element; the planes are those of the residuals after the chunk's "
        "element transform) over the dataset's chunks stored in mode lm_mix, from "
        "`lmcodec.mixcoding.body_report` (each plane's streams: word counts, final states and words, "
        "or the bytes of a stream stored raw). *overhead* = the 36-byte chunk headers and each body's "
        "shared prefix (mixer version, transform, varints, raw-stream bitmap) of those chunks, in "
        "bits per raw byte. Chunks stored as zstd or raw are **not** split by plane (one zstd frame "
        "codes all planes together); they are reported apart, whole, as *chunks zstd/raw: count: "
        "bits/byte*. *chunks plain*: lm_mix chunks the encoder coded unshuffled, as plain bytes (their "
        "one plane holds whole elements, so it is not a byte plane), reported apart the same way. "
        "*transforms*: shuffled lm_mix chunks coded with element transform "
        f"{'/'.join(_TRANSFORM_NAMES)}, and how many of them with the decimal step (floats as "
        "scaled integers, `lmcodec.decimals`).",
        "",
        *_table(["chunking", "dataset", "dtype", "lm_mix chunks (shuffled)", *[f"plane {p}" for p in range(width)],
                 "overhead", "chunks zstd/raw", "chunks plain", "transforms"], table),
        "",
    ]
    if cells:
        worst, wr, wp = max(cells, key=lambda c: c[0])
        chunk_worst = max((r["max_chunk_plane"] for r in multi if r["max_chunk_plane"] is not None), default=None)
        ok = worst <= PLANE_LIMIT and (chunk_worst is None or chunk_worst <= PLANE_LIMIT)
        single = [x for r in rows if r["itemsize"] == 1 for x in r["planes"] if x is not None]
        lines += [
            f"**Maximum over the planes above: {worst:.3f} bits/byte** ({wr['dataset']}, chunks of "
            f"{wr['group']}, plane {wp}); the largest single plane of a single chunk: "
            f"{_num(chunk_worst, '.3f')} bits/byte. Requirement (no plane above {PLANE_LIMIT:.1f} "
            f"bits/byte, before the overhead column): **{'met' if ok else 'NOT met'}**. A stream that "
            "would not shrink is stored raw (8.0 bits/byte), so a plane can reach 8.0 but not exceed "
            "it; the overhead column is what the chunk adds on top"
            + (f" (1-byte kinds, one plane each: at most {max(single):.3f} bits/byte)." if single else "."),
            "",
        ]
    return lines


def render_markdown(doc: dict, plots: dict[str, str]) -> str:
    """The Markdown report; ``plots`` maps plot keys (``PLOTS``) to the file names written."""
    meta = doc["meta"]
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{meta['command']}` (mode **{meta['mode']}**) on {meta['date_utc']}; the run "
        f"took {meta['duration_s'] / 60:.1f} minutes. Do not edit by hand: rerun the command "
        "(see *Reproduce* below).",
        "",
        "All data is the corpus **validation** split (docs/data.md), which the models never "
        "trained on. Every result below was decoded and checked byte for byte against its input; "
        "a codec that fails that check stops the run.",
        "",
        "## Summary",
        "",
        *_summary(doc),
        "",
        "The shipped models are only partially trained (see onnx_models/manifest.json). In the "
        "default mode lm_mix the model's tables are mixed with statistics adapted on each stream, "
        "and a stream that would not shrink is stored raw; a whole chunk is stored as zstd or raw "
        "where that is smaller (the *chunks lm_mix/lm/zstd/raw* rows count the chunks per mode). "
        "At this data scale the adjusted rate (which counts the model's weights) is far above "
        "100%: the model only pays for itself on gigabytes.",
        "",
        "## Machine",
        "",
        *_table(["", ""], [
            ["CPU", f"{meta['cpu']} ({meta['usable_cpus']} usable of {meta['logical_cpus']} logical CPUs)"],
            ["memory", f"{meta['memory_gib']} GiB"],
            ["load average at start (1/5/15 min)", ", ".join(f"{x:.2f}" for x in meta["load_average"] or [])],
            ["load average at end", ", ".join(f"{x:.2f}" for x in meta.get("load_average_end") or [])],
            ["OS", meta["platform"]],
            ["Python", meta["python"]],
            ["packages", ", ".join(f"{k} {v}" for k, v in meta["packages"].items() if v)],
            ["lmcodec commit", meta["git_commit"] or "unknown (not a git checkout)"],
        ]),
        "",
        "The machine may be shared: a load average above the CPU count means other work competed "
        "for the CPUs and the speeds below are pessimistic (the CPU seconds are less affected).",
        "",
        "## How to read the tables",
        "",
        "- **rate** = compressed bytes / raw bytes (lower is better; bold: best in its column). "
        "Every chunk is coded on its own, as a Zarr chunk is; LMCodec sizes include its 36-byte "
        "chunk header.",
        "- **adjusted** (LM codecs) = (compressed bytes + model bytes) / raw bytes, the paper's "
        "adjusted rate; model bytes = size of the model's integer weights file `weights.npz` "
        "(what a decoder needs besides the code). The paper counts 2 bytes per parameter.",
        "- **all kinds** = total compressed / total raw over the kinds, for codecs that apply to "
        "every kind.",
        "- **MB/s** = raw bytes / 10^6 / wall-clock seconds for all chunks of the dataset (LMCodec "
        "codes all chunks in one batch call each way; models are loaded before timing).",
        "- **peak MiB** = rise of the process's peak resident set size during the encode or decode "
        "call (Linux VmHWM, reset through /proc/self/clear_refs, after gc and malloc_trim): native "
        "memory included, memory kept from earlier calls (a loaded model, onnxruntime's arena) "
        "not; the maximum over the datasets is shown.",
        "",
        "## Models",
        "",
        *_table(["codec", "model", "mode", "parameters", "model bytes (weights.npz)", "model id"],
                [[f"`{m['codec']}`", f"`{m['name']}`" + (" (default)" if m.get("default") else ""),
                  _mode_label(m),
                  f"{m['n_parameters']:,}" if m["n_parameters"] else "—",
                  f"{m['model_bytes']:,}", m["model_id"]] for m in doc["models"]]),
        "",
        "Every LMCodec chunk gets the record length (bytes of a plane per row) of its chunk's shape: "
        "the row of a 2-D chunk (tables, grids, stereo frames) or of an image tile (all pixels of a "
        "row with their channels); 1-D chunks leave it to the mixer to detect.",
        "",
        "## Data",
        "",
        *_data_table(doc),
        "",
        *_chunk_table(doc),
        "",
    ]
    for group in _groups(doc):
        sets = _datasets(doc, group)
        n_chunks = sum(d["n_chunks"] for d in sets)
        mean = sum(d["raw_bytes"] for d in sets) / n_chunks
        lines += [f"## Compression rate, chunks of {group}", "",
                  f"{n_chunks} chunks of {mean:,.0f} bytes on average (a sample smaller than the chunk "
                  "size is one chunk; image chunks are tiles).", "", *_rate_table(doc, group), "",
                  f"### Speed and memory, chunks of {group}", "", *_speed_table(doc, group), ""]
    lines += _plane_section(doc)
    lines += [
        "## The paper's Table 1 at our scale",
        "",
        "Deletang et al. 2023, *Language Modeling Is Compression*, Table 1 codes 1 GB each of "
        "enwik9, ImageNet patches and LibriSpeech in 2048-byte chunks. Here: corpus text in 2 KiB "
        "chunks, 32x64 grayscale patches of the corpus images (RGB mean truncated to uint8, as the "
        "paper builds them), the audio kind's recordings mapped to 8 bits as the paper does (high "
        "byte + 128, whole 2048-byte chunks) and, as 16-bit samples, the audio kind's 2 KiB chunks "
        "(same recordings, same byte budget, so the 8-bit set covers twice the duration). Our data "
        "is kilobytes, not a gigabyte, so the adjusted rates are not comparable in scale; only the "
        "paper's numbers quoted in issue 6 are listed.",
        "",
        *_paper_table(doc),
        "",
        "## Plots",
        "",
    ]
    captions = {"rates": "Compression rate per data kind and codec (lower is better)",
                "speed": "Rate over all kinds vs decode speed (codecs that apply to every kind)",
                "scaling": "Rate vs model size (raw and adjusted, all kinds)"}
    for key, name in plots.items():
        lines += [f"![{captions[key]}]({name})", "", f"*{captions[key]}.*", ""]
    skipped = [s for s in doc["skipped"] if s["dataset"] == "*"]
    if skipped:
        lines += ["## Codecs not run", ""] + [f"- `{s['codec']}`: {s['reason']}" for s in skipped] + [""]
    lines += [
        "Codecs that do not apply to a dataset (e.g. PNG outside images, FLAC outside audio, "
        "pcodec on bytes, fpzip on integers) show —; `benchmarks.json` lists every skip.",
        "",
        "## Reproduce",
        "",
        "```sh",
        'pip install -e ".[bench]" && scripts/install-data.sh      # codecs and corpus packages',
        "lmcodec bench --out-dir docs                  # full run (benchmarks/README.md says what it covers)",
        "lmcodec bench --quick --out-dir docs          # quick run: default model, 32 KiB per kind",
        "python benchmarks/validate_models.py          # per-kind validation bits/byte of each model",
        "```",
        "",
        "Raw results: `benchmarks.json` next to this file (every number above, per dataset, with "
        "the data's provenance and sha1).",
        "",
    ]
    return "\n".join(lines)


# -- plots ------------------------------------------------------------------------------------


def _plot_rates(doc: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    groups = _groups(doc)
    codecs = _codecs(doc)
    idx = _index(doc)
    fig = Figure(figsize=(14, 3.6 * len(groups)), layout="constrained")
    axes = fig.subplots(len(groups), 1, squeeze=False)[:, 0]
    width = 0.8 / len(codecs)
    cmap = _colors(codecs)
    for ax, group in zip(axes, groups):
        names = [d["name"] for d in _datasets(doc, group)]
        for j, codec in enumerate(codecs):
            xs, ys = [], []
            for i, n in enumerate(names):
                r = idx.get((group, n, codec))
                if r is not None:
                    xs.append(i - 0.4 + (j + 0.5) * width)
                    ys.append(100 * r["rate"])
            ax.bar(xs, ys, width, label=codec, color=cmap[codec],
                   hatch="//" if _is_lm(doc, codec) else None, edgecolor="black" if _is_lm(doc, codec) else None,
                   linewidth=0.4)
        ax.set_xticks(range(len(names)), names)
        ax.set_ylabel("compressed / raw (%)")
        ax.set_title(f"chunks of {group}")
        ax.axhline(100, color="grey", linewidth=0.6)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(ncol=min(6, len(codecs)), fontsize=8, loc="upper left", bbox_to_anchor=(0, 1.35))
    fig.savefig(path, dpi=110)


def _colors(codecs: list[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return {c: cmap(i % 20) for i, c in enumerate(codecs)}


def _plot_speed(doc: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.subplots()
    codecs = _codecs(doc)
    cmap = _colors(codecs)
    markers = "osD^v<>"
    for gi, group in enumerate(_groups(doc)):
        for codec in codecs:
            total = _group_total(doc, group, codec)
            if total is None or total["decode_mb_s"] is None:
                continue
            ax.scatter(total["decode_mb_s"], 100 * total["rate"], color=cmap[codec], marker=markers[gi % len(markers)],
                       s=60, edgecolor="black" if _is_lm(doc, codec) else "none",
                       label=f"{codec} ({group})")
    ax.set_xscale("log")
    ax.set_xlabel("decode speed (MB/s, log scale)")
    ax.set_ylabel("compressed / raw over all kinds (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.savefig(path, dpi=110)


def _scaling_models(doc: dict) -> list[dict]:
    """The models of the scaling plot: every model as the default codec (``LMCodec(model=...)``:
    mode lm_mix, newest mixer version), by size."""
    ms = [m for m in doc["models"] if m["n_parameters"] and m.get("mix", True) and m.get("mixer_version") is None]
    return sorted(ms, key=lambda m: m["n_parameters"])


def _plot_scaling(doc: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    models = _scaling_models(doc)
    for group in _groups(doc):
        totals = [(m["n_parameters"], _group_total(doc, group, m["codec"])) for m in models]
        pts = [(n, t) for n, t in totals if n and t]
        if len(pts) < 2:
            continue
        xs = [n for n, _ in pts]
        ax.plot(xs, [100 * t["rate"] for _, t in pts], "o-", label=f"raw, {group}")
        ax.plot(xs, [100 * t["adjusted_rate"] for _, t in pts], "s--", label=f"adjusted, {group}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("model parameters")
    ax.set_ylabel("compressed / raw over all kinds (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)


def _write_plots(doc: dict, out: Path) -> dict[str, str]:
    written = {}
    _plot_rates(doc, out / PLOTS["rates"])
    written["rates"] = PLOTS["rates"]
    _plot_speed(doc, out / PLOTS["speed"])
    written["speed"] = PLOTS["speed"]
    if len(_scaling_models(doc)) >= 2:
        _plot_scaling(doc, out / PLOTS["scaling"])
        written["scaling"] = PLOTS["scaling"]
    return written


def write_report(doc: dict, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``benchmarks.json``, the plots and ``benchmarks.md`` into ``out_dir``; return the
    paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "benchmarks.json"
    json_path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    plots = _write_plots(doc, out)
    md_path = out / "benchmarks.md"
    md_path.write_text(render_markdown(doc, plots))
    return [json_path, *(out / p for p in plots.values()), md_path]
