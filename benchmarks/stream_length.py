"""What the ``lm_mix`` stream length (and segment length) costs and buys on small chunks: size over
every corpus kind, and decode speed when chunks are read one per call (zarr's default
``codec_pipeline.batch_size`` is 1).

    python benchmarks/stream_length.py                                   # fast preset and default, 64 KiB chunks
    python benchmarks/stream_length.py --codecs lm-small-v1:3 --lengths 16384,4096 --chunk-bytes 131072
    python benchmarks/stream_length.py --codecs lm-small-v1:3 --lengths 16384 --segment-lengths 1024,512,256

A decode step advances one byte of every stream of the call, and a step has a fixed cost
(docs/performance.md), so a chunk of few streams decodes slowly: a 64 KiB int16 chunk has four
16 KiB streams. Shorter streams give more lanes per step, at some cost in size (each stream
codes its bytes after fewer bytes of its own; streams of a plane share mixer statistics only
since mixer version 2). The segment length (``LMCodec(segment_length=...)``; default
:func:`lmcodec.codec.default_segment_length`, the model's context capped at 512 bytes in lm_mix)
is the model's context within a stream: shorter segments mean less KV cache per lane and step
(decode reads all of it) and less context for the model.

The chunks are the benchmark's (``lmcodec bench``: the validation split, 256 KiB per kind, cut
into ``--chunk-bytes`` chunks); every codec encodes each kind in one batch call. Decode speed is
measured on the audio kind's chunks (int16), one ``LMCodec.decode`` call per chunk, after one
untimed warm-up call, best of ``--repeat`` passes over the chunks, and all of them in one
``decode_batch`` call (what ``codec_pipeline.batch_size`` >= their count gives); every decode is
checked.
Results go to stdout and ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lmcodec import LMCodec  # noqa: E402
from lmcodec.bench import FULL  # noqa: E402
from lmcodec.bench_data import kind_datasets, select_samples  # noqa: E402
from lmcodec.corpus import KINDS, load_samples  # noqa: E402
from lmcodec.format import parse_header  # noqa: E402

DEFAULT_CODECS = "lm-fast-v1:1,lm-small-v1:3"


def _best_seconds(decode, expected: list[bytes], repeat: int, label: str) -> float:
    """Fastest of ``repeat`` (>= 1) timed calls of ``decode()``; each must return ``expected``."""
    best = float("inf")
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        decoded = decode()
        best = min(best, time.perf_counter() - start)
        if decoded != expected:
            raise SystemExit(f"{label}: round trip failed")
    return best


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codecs", default=DEFAULT_CODECS,
                        help=f"comma-separated MODEL:MIXER_VERSION (default {DEFAULT_CODECS}: the fast preset and "
                             "the default codec)")
    parser.add_argument("--lengths", default="16384,4096,2048", help="stream lengths, bytes (default 16384,4096,2048)")
    parser.add_argument("--segment-lengths", default="0",
                        help="segment lengths, bytes; 0 = the codec's default (default 0)")
    parser.add_argument("--chunk-bytes", type=int, default=64 << 10)
    parser.add_argument("--repeat", type=int, default=2, help="timed passes over the audio chunks (default 2)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "stream_length.json")
    args = parser.parse_args(argv)

    selected = select_samples(load_samples("val", kinds=KINDS), FULL.bytes_per_kind, FULL.samples_per_kind)
    chunks = {kind: list(kind_datasets(selected, args.chunk_bytes, (kind,))[0].chunks) for kind in KINDS}
    raw = sum(c.nbytes for cs in chunks.values() for c in cs)
    audio_raw = sum(c.nbytes for c in chunks["audio"])
    rows = []
    for spec in args.codecs.split(","):
        model, mixer_version = spec.split(":")
        settings = [(int(x), int(y)) for x in args.lengths.split(",") for y in args.segment_lengths.split(",")]
        for length, segment in settings:
            codec = LMCodec(model=model, mixer_version=int(mixer_version), stream_length=length,
                            segment_length=segment or None)
            sizes, audio = {}, []
            start = time.perf_counter()
            for kind, cs in chunks.items():
                encoded = codec.encode_batch(cs)
                sizes[kind] = sum(map(len, encoded))
                if kind == "audio":
                    audio = encoded
            encode_s = time.perf_counter() - start
            codec.decode(audio[0])  # warm-up: sessions, compiled kernels
            expected = [c.tobytes() for c in chunks["audio"]]
            label = f"{spec} stream length {length} segment length {segment or 'default'}"
            best = _best_seconds(lambda: [codec.decode(e) for e in audio], expected, args.repeat, label)
            batch_best = _best_seconds(lambda: codec.decode_batch(audio), expected, args.repeat, f"{label}, batch")
            total = sum(sizes.values())
            row = {"model": model, "mixer_version": int(mixer_version), "stream_length": length,
                   "segment_length": segment or None,  # None: the codec's default, coded as below
                   "coded_segment_length": max({parse_header(e).segment_length for e in audio} - {0}, default=None),
                   "chunk_bytes": args.chunk_bytes, "raw_bytes": raw, "compressed_bytes": total,
                   "bytes_by_kind": sizes, "encode_s": encode_s, "audio_chunks": len(audio),
                   "audio_decode_kb_per_s": audio_raw / best / 1e3,
                   "audio_batch_decode_kb_per_s": audio_raw / batch_best / 1e3}
            rows.append(row)
            print(f"{model} mixer {mixer_version} stream {length:6d} segment {segment or 'default'}: all kinds {total:,} B "
                  f"({100 * total / raw:.2f} % of {raw:,}), encode {encode_s:.1f} s; audio, one chunk per call: "
                  f"decode {row['audio_decode_kb_per_s']:.1f} KB/s, all {len(audio)} in one call "
                  f"{row['audio_batch_decode_kb_per_s']:.1f} KB/s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"written to {args.out}")
    return rows


if __name__ == "__main__":
    main()
