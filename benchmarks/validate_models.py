"""Per-kind validation bits/byte of each installed model, next to zstd -19 and xz -9.

For the ``validation`` field of onnx_models/manifest.json (issue 3). The lead copies the
``validation`` object of each model from the JSON this writes; this script never edits the
manifest.

Data: the corpus validation split (which no model trained on), selected as ``lmcodec bench``
does (:func:`lmcodec.bench_data.select_samples`: per kind up to ``--samples-per-kind`` samples
from different packages, ``--bytes-per-kind`` bytes in all).

Measure: **real encoded sizes**. Each sample is one chunk: its bytes are byte-shuffled into
planes by its dtype and rANS-coded with the model in segments of the model's context length
(:func:`lmcodec.lmcoding.encode_planes`, exactly what LMCodec stores in LM mode); the size is the
LM body (lane word counts, final states and words), without the 36-byte chunk header and
without the zstd/raw fallback. zstd -19 and xz -9 code the same samples, each as one stream in
memory order. bits/byte = 8 * coded bytes / raw bytes, per kind and over all kinds.

    python benchmarks/validate_models.py                       # all models, 128 KiB per kind
    python benchmarks/validate_models.py --models lm-small-v1 --bytes-per-kind 64K
"""

from __future__ import annotations

import argparse
import json
import lzma
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from lmcodec.bench_data import select_samples
from lmcodec.cli import _parse_size
from lmcodec.corpus import KINDS, load_samples

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "validation.json"
METHOD = ("real LM body bytes (rANS lane counts, final states and words; no chunk header, no "
          "zstd/raw fallback), one chunk per sample, segments of the model's context length; "
          "zstd -19 and xz -9 on the same samples as one stream each")


def lm_body_bytes(model, array: np.ndarray) -> int:
    """Bytes of the LM body that codes ``array`` as one chunk with ``model``."""
    from lmcodec.lmcoding import encode_planes
    from lmcodec.preprocess import shuffle_dtype, split_planes

    data = np.ascontiguousarray(array).view(np.uint8).reshape(-1)
    planes = split_planes(data, shuffle_dtype(array.dtype))
    (body,) = encode_planes(model, [planes], model.context_length)
    return len(body)


def zstd19_bytes(array: np.ndarray) -> int:
    from numcodecs import Zstd

    return len(Zstd(level=19).encode(np.ascontiguousarray(array)))


def xz9_bytes(array: np.ndarray) -> int:
    return len(lzma.compress(np.ascontiguousarray(array).tobytes(), preset=9))


def bits_per_byte(coded: dict[str, int], raw: dict[str, int]) -> dict[str, float]:
    """Per kind and ``"all"``: 8 * coded / raw."""
    out = {k: 8 * coded[k] / raw[k] for k in raw}
    out["all"] = 8 * sum(coded.values()) / sum(raw.values())
    return out


def validate(model_names: list[str], bytes_per_kind: int, samples_per_kind: int, progress: bool) -> dict:
    """The JSON document: one ``validation`` object per model (see the module docstring)."""
    from tqdm import tqdm

    from lmcodec import models

    selected = select_samples(load_samples("val"), bytes_per_kind, samples_per_kind)
    kinds = [k for k in KINDS if k in selected]
    raw = {k: sum(a.nbytes for _, a in selected[k]) for k in kinds}
    baselines = {"zstd-19": zstd19_bytes, "xz-9": xz9_bytes}
    base_bpb = {name: bits_per_byte({k: sum(fn(a) for _, a in selected[k]) for k in kinds}, raw)
                for name, fn in baselines.items()}
    data = {k: [{"name": s.name, "package": s.source.get("package"), "version": s.source.get("version"),
                 "shape": list(a.shape), "dtype": a.dtype.str, "bytes": int(a.nbytes)} for s, a in selected[k]]
            for k in kinds}
    out: dict = {"generated_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 "command": "python benchmarks/validate_models.py " + " ".join(sys.argv[1:]), "models": {}}
    for name in model_names:
        model = models.load_model(name)
        coded = {}
        t0 = time.perf_counter()
        for k in tqdm(kinds, desc=name, unit="kind", file=sys.stderr, disable=not progress):
            coded[k] = sum(lm_body_bytes(model, a) for _, a in selected[k])
        out["models"][name] = {
            "model_id": models.model_info(name)["model_id"],
            "validation": {
                "split": "val",
                "method": METHOD,
                "bits_per_byte": bits_per_byte(coded, raw),
                "baselines_bits_per_byte": base_bpb,
                "raw_bytes": {**raw, "all": sum(raw.values())},
                "samples": data,
                "encode_seconds": round(time.perf_counter() - t0, 1),
                "generated_utc": out["generated_utc"],
            },
        }
    return out


def markdown(doc: dict) -> str:
    """A table: kind, raw bytes, each model's bits/byte, zstd -19, xz -9."""
    names = list(doc["models"])
    first = doc["models"][names[0]]["validation"]
    kinds = list(first["raw_bytes"])
    header = ["kind", "raw bytes", *names, *first["baselines_bits_per_byte"]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for k in kinds:
        cells = [f"{doc['models'][n]['validation']['bits_per_byte'][k]:.3f}" for n in names]
        cells += [f"{b[k]:.3f}" for b in first["baselines_bits_per_byte"].values()]
        lines.append(f"| {k} | {first['raw_bytes'][k]:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from lmcodec import models

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", metavar="NAME", help="default: every installed model")
    p.add_argument("--bytes-per-kind", type=_parse_size, default=128 << 10, metavar="BYTES")
    p.add_argument("--samples-per-kind", type=int, default=4)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON output (default {DEFAULT_OUT})")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    names = args.models or sorted(models.installed_models())
    doc = validate(names, args.bytes_per_kind, args.samples_per_kind, not args.no_progress)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    print(markdown(doc))
    print(f"\nwritten: {args.out} (copy models.<name>.validation into onnx_models/manifest.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
