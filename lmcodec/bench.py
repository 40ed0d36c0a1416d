"""Benchmark harness: every codec on every dataset, each result decoded and checked byte-exact.

``lmcodec bench`` (or ``python -m lmcodec.bench``) runs :func:`run_benchmark` and writes the
report (:mod:`lmcodec.bench_report`). Datasets come from :mod:`lmcodec.bench_data`, codecs from
:mod:`lmcodec.bench_codecs`.

Measured per (dataset, codec), over all the dataset's chunks (each coded on its own):

* ``compressed_bytes``: sum of the encoded chunks (for LMCodec including its 36-byte chunk
  headers); ``rate = compressed / raw``; ``adjusted_rate = (compressed + model bytes) / raw``
  for LM codecs (the paper's adjusted rate; model bytes = the ``weights.npz`` file).
* encode / decode wall-clock seconds (``time.perf_counter``) and process CPU seconds
  (``time.process_time``, all threads), so MB/s = raw bytes / 1e6 / wall seconds.
* LMCodec only: chunks per mode (``modes``) and, for the default codec (mode ``lm_mix``), the
  bytes spent per byte plane (``planes``, :func:`lmcodec.bench_codecs.lm_mix_planes`).
* peak memory: the rise of the process's peak resident set size during the call, in bytes
  (Linux: ``/proc/self/clear_refs`` resets VmHWM, then VmHWM - VmRSS at the start; after
  ``gc.collect()`` and ``malloc_trim``). It includes native allocations (onnxruntime, zstd,
  libFLAC) but not memory kept from earlier calls (loaded models, onnxruntime's arena).
  ``None`` where /proc does not allow it.

Every encoded chunk is decoded and compared with the original bytes; a mismatch raises
:class:`VerificationError` and the run stops, so no result is ever reported undecoded.
Models are loaded (``warm_up``) before any timing.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from .bench_codecs import BenchCodec
from .bench_data import Dataset

__all__ = [
    "VerificationError",
    "Measurement",
    "Result",
    "BenchConfig",
    "QUICK",
    "FULL",
    "measure",
    "run_codec",
    "run_all",
    "run_benchmark",
    "run_datasets",
    "add_arguments",
    "config_from_args",
    "command_line",
    "run_from_args",
    "main",
]


class VerificationError(Exception):
    """A codec's decoded output differs from its input (the result is not reported)."""


# -- measuring --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    seconds: float  # wall clock
    cpu_seconds: float  # process CPU time, all threads
    peak_bytes: int | None  # rise of peak RSS during the call


def _status_kib(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise OSError(f"{field_name} not in /proc/self/status")


def _release_memory() -> None:
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _reset_peak() -> int | None:
    """Reset the kernel's peak-RSS counter; return the current RSS in KiB (None: unsupported)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_kib("VmRSS")
    except OSError:
        return None


def measure(fn: Callable[[], Any]) -> tuple[Any, Measurement]:
    """Run ``fn()`` once; return its result and the :class:`Measurement`."""
    _release_memory()
    start_rss = _reset_peak()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = None
    if start_rss is not None:
        try:
            peak = max(0, _status_kib("VmHWM") - start_rss) * 1024
        except OSError:
            pass
    return out, Measurement(seconds, cpu, peak)


# -- one result -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    group: str
    dataset: str
    kind: str
    codec: str
    raw_bytes: int
    compressed_bytes: int
    n_chunks: int
    encode: Measurement
    decode: Measurement
    model_bytes: int | None = None
    modes: dict[str, int] | None = None  # LMCodec: chunks stored per mode
    planes: dict | None = None  # LMCodec lm_mix: bytes per byte plane (bench_codecs.lm_mix_planes)

    @property
    def rate(self) -> float:
        """compressed / raw (a fraction; 0.25 = 25 %)."""
        return self.compressed_bytes / self.raw_bytes

    @property
    def adjusted_rate(self) -> float | None:
        """(compressed + model bytes) / raw, for codecs with a model."""
        if self.model_bytes is None:
            return None
        return (self.compressed_bytes + self.model_bytes) / self.raw_bytes

    def to_json(self) -> dict:
        d = asdict(self)
        d.update(rate=self.rate, adjusted_rate=self.adjusted_rate,
                 encode_mb_s=_mb_s(self.raw_bytes, self.encode.seconds),
                 decode_mb_s=_mb_s(self.raw_bytes, self.decode.seconds))
        return d


def _mb_s(raw: int, seconds: float) -> float | None:
    return raw / 1e6 / seconds if seconds > 0 else None


def _as_bytes(x) -> bytes:
    if isinstance(x, np.ndarray):
        return np.ascontiguousarray(x).tobytes()
    return bytes(x)


def run_codec(codec: BenchCodec, dataset: Dataset) -> Result:
    """Encode and decode every chunk of ``dataset``; raise :class:`VerificationError` unless
    every chunk decodes to its exact bytes."""
    chunks = list(dataset.chunks)
    encoded, enc = measure(lambda: codec.encode(chunks))
    if len(encoded) != len(chunks):
        raise VerificationError(f"{codec.name} on {dataset.group}/{dataset.name}: "
                                f"{len(encoded)} encoded chunks for {len(chunks)} inputs")
    decoded, dec = measure(lambda: codec.decode(encoded, chunks))
    if len(decoded) != len(chunks):
        raise VerificationError(f"{codec.name} on {dataset.group}/{dataset.name}: "
                                f"{len(decoded)} decoded chunks for {len(chunks)} inputs")
    for i, (orig, back) in enumerate(zip(chunks, decoded)):
        if _as_bytes(back) != np.ascontiguousarray(orig).tobytes():
            raise VerificationError(
                f"{codec.name} on {dataset.group}/{dataset.name}: chunk {i} ({orig.nbytes} bytes, "
                f"{orig.dtype}{orig.shape}) does not decode to its original bytes")
    return Result(dataset.group, dataset.name, dataset.kind, codec.name, dataset.raw_bytes,
                  sum(len(e) for e in encoded), len(chunks), enc, dec,
                  model_bytes=codec.model_bytes, modes=codec.modes(encoded), planes=codec.planes(encoded, chunks))


def run_all(codecs: Sequence[BenchCodec], datasets: Sequence[Dataset], progress: bool = True
            ) -> tuple[list[Result], list[dict]]:
    """Every applicable (dataset, codec) pair; returns ``(results, skipped)`` where ``skipped``
    lists ``{"codec", "group", "dataset", "reason"}`` (``dataset`` ``"*"`` for every dataset)."""
    from tqdm import tqdm

    skipped: list[dict] = []
    usable = []
    for codec in codecs:
        reason = codec.unavailable()
        if reason:
            skipped.append({"codec": codec.name, "group": "*", "dataset": "*", "reason": reason})
        else:
            usable.append(codec)
    pairs = []
    for ds in datasets:
        for codec in usable:
            if codec.applies(ds.kind, ds.dtype, ds.chunk_shape):
                pairs.append((ds, codec))
            else:
                skipped.append({"codec": codec.name, "group": ds.group, "dataset": ds.name,
                                "reason": f"not applicable to {ds.kind} {ds.dtype} chunks"})
    warmed: set[tuple[str, str]] = set()
    results = []
    with tqdm(total=len(pairs), desc="bench", unit="run", file=sys.stderr, disable=not progress) as bar:
        for ds, codec in pairs:
            bar.set_postfix_str(f"{codec.name} on {ds.group}/{ds.name}")
            if (codec.name, ds.dtype.str) not in warmed:
                codec.warm_up(ds.chunks[0])
                warmed.add((codec.name, ds.dtype.str))
            results.append(run_codec(codec, ds))
            bar.update()
    return results, skipped


# -- a whole run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchConfig:
    """What one benchmark run covers.

    ``models``: ``"all"`` (every installed model), ``"default"`` or a tuple of model names;
    each runs as the default codec (mode ``lm_mix``). ``lm_only``: also run the default model
    with ``mix=False`` (mode ``lm``), if it is among ``models``, to show what mixing adds.
    ``fast_preset``: also run :meth:`lmcodec.LMCodec.fast` (its model with its older mixer
    version), if its model is among ``models``, to show what the preset's speed costs.
    """

    mode: str  # "quick" | "full", with " (modified)" when options changed it
    chunk_sizes: tuple[int, ...]
    bytes_per_kind: int
    samples_per_kind: int = 2
    models: str | tuple[str, ...] = "all"
    kinds: tuple[str, ...] | None = None  # None: every corpus kind
    lm_only: bool = True
    fast_preset: bool = True


QUICK = BenchConfig("quick", chunk_sizes=(2048, 64 << 10), bytes_per_kind=32 << 10, models="default",
                    fast_preset=False)
"""Default model only (lm_mix and lm-only), 32 KiB per kind, 2 KiB and 64 KiB chunks."""
FULL = BenchConfig("full", chunk_sizes=(2048, 64 << 10, 1 << 20), bytes_per_kind=256 << 10)
"""Every installed model, 256 KiB per kind, 2 KiB / 64 KiB / 1 MiB chunks."""


def _model_names(config: BenchConfig) -> list[str]:
    from . import models

    if config.models == "all":
        return sorted(models.installed_models())
    if config.models == "default":
        return [models.default_model_name()]
    return list(config.models)


def run_benchmark(config: BenchConfig, progress: bool = True, command: str = "") -> dict:
    """Load the data, run every codec (baselines, the default LMCodec per model and, with
    ``config.lm_only``, the default model with ``mix=False``; with ``config.fast_preset``,
    ``LMCodec.fast()``) and return the report document (see :func:`run_datasets`)."""
    from . import models
    from .bench_codecs import LMBenchCodec, baseline_codecs
    from .bench_data import kind_datasets, paper_datasets, select_samples
    from .codec import FAST_PRESET
    from .corpus import KINDS, load_samples

    started = time.time()
    names = _model_names(config)
    default = models.default_model_name()
    codecs: list[BenchCodec] = [*baseline_codecs(), *(LMBenchCodec.installed(m, default=m == default) for m in names)]
    if config.lm_only and default in names:
        codecs.append(LMBenchCodec.installed(default, mix=False, default=True))
    if config.fast_preset and FAST_PRESET["model"] in names:
        codecs.append(LMBenchCodec.installed(FAST_PRESET["model"], default=False,
                                             mixer_version=FAST_PRESET["mixer_version"]))
    kinds = tuple(config.kinds or KINDS)
    samples = load_samples("val", kinds=kinds)
    selected = select_samples(samples, config.bytes_per_kind, config.samples_per_kind)
    datasets: list[Dataset] = []
    for size in config.chunk_sizes:
        datasets += kind_datasets(selected, size, kinds)
    images = [s for s in samples if s.kind == "image"]
    audio = [s for s, _ in selected.get("audio", [])]
    datasets += paper_datasets(images, audio, config.bytes_per_kind)
    del samples, images, audio  # the whole validation split: free it before timing
    return run_datasets(datasets, codecs, config, progress, command, started)


def run_datasets(datasets: Sequence[Dataset], codecs: Sequence[BenchCodec], config: BenchConfig,
                 progress: bool = True, command: str = "", started: float | None = None) -> dict:
    """Run ``codecs`` on ``datasets`` and return the report document: ``meta`` (machine, date,
    command, duration, config), ``models``, ``codecs``, ``datasets``, ``results`` and
    ``skipped`` (JSON-ready; :mod:`lmcodec.bench_report` renders it)."""
    from .bench_codecs import LMBenchCodec
    from .bench_report import machine_info

    started = time.time() if started is None else started
    info = machine_info()
    results, skipped = run_all(codecs, datasets, progress)
    lms = [c for c in codecs if isinstance(c, LMBenchCodec)]
    return {
        "meta": {**info, "mode": config.mode, "command": command,
                 "started_unix": started, "duration_s": time.time() - started,
                 "load_average_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
                 "config": {**asdict(config), "models": sorted({c.model for c in lms})}},
        "models": [{"name": c.model, "codec": c.name, "n_parameters": c.n_parameters,
                    "model_bytes": c.model_bytes, "model_id": c.model_id, "mix": c.mix,
                    "mixer_version": c.mixer_version, "default": c.default} for c in lms],
        "codecs": [{"name": c.name, "description": c.description} for c in codecs],
        "datasets": [d.describe() for d in datasets],
        "results": [r.to_json() for r in results],
        "skipped": skipped,
    }


# -- command line -----------------------------------------------------------------------------


def _size_list(text: str) -> tuple[int, ...]:
    from .cli import _parse_size

    sizes = tuple(_parse_size(t) for t in text.split(",") if t.strip())
    if not sizes:
        raise argparse.ArgumentTypeError("give at least one chunk size, e.g. 2K,64K")
    return sizes


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``lmcodec bench`` (shared with ``python -m lmcodec.bench``)."""
    from .cli import _parse_size
    from .corpus import KINDS

    p.add_argument("--quick", action="store_true",
                   help="default model only, 32 KiB per kind, 2 KiB and 64 KiB chunks")
    p.add_argument("--no-lm-only", action="store_true",
                   help="skip the extra run of the default model with mix=False (mode lm)")
    p.add_argument("--no-fast-preset", action="store_true",
                   help="skip the extra run of the fast preset (LMCodec.fast())")
    p.add_argument("--out-dir", default="benchmark-results", metavar="DIR",
                   help="where benchmarks.md, benchmarks.json and the plots go "
                        "(default: ./benchmark-results; the repository's docs use 'docs')")
    p.add_argument("--models", nargs="+", metavar="NAME",
                   help="models to benchmark (default: all installed; --quick: the default model)")
    p.add_argument("--bytes-per-kind", type=_parse_size, metavar="BYTES",
                   help="data per corpus kind (default 256K; --quick 32K)")
    p.add_argument("--chunk-sizes", type=_size_list, metavar="LIST",
                   help="comma-separated chunk sizes (default 2K,64K,1M; --quick 2K,64K)")
    p.add_argument("--kinds", nargs="+", metavar="KIND", choices=KINDS,
                   help="corpus kinds (default: all)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """The :class:`BenchConfig` that parsed ``lmcodec bench`` options describe."""
    base = QUICK if args.quick else FULL
    changes: dict[str, Any] = {}
    if args.models:
        changes["models"] = tuple(args.models)
    if args.bytes_per_kind:
        changes["bytes_per_kind"] = args.bytes_per_kind
    if args.chunk_sizes:
        changes["chunk_sizes"] = args.chunk_sizes
    if args.kinds:
        changes["kinds"] = tuple(args.kinds)
    if getattr(args, "no_lm_only", False):
        changes["lm_only"] = False
    if getattr(args, "no_fast_preset", False):
        changes["fast_preset"] = False
    if changes:
        changes["mode"] = f"{base.mode} (modified)"
    return replace(base, **changes)


def command_line(args: argparse.Namespace) -> str:
    """The ``lmcodec bench`` command that reproduces ``args``."""
    parts = ["lmcodec bench"] + (["--quick"] if args.quick else [])
    if args.models:
        parts += ["--models", *args.models]
    if args.bytes_per_kind:
        parts += ["--bytes-per-kind", str(args.bytes_per_kind)]
    if args.chunk_sizes:
        parts += ["--chunk-sizes", ",".join(map(str, args.chunk_sizes))]
    if args.kinds:
        parts += ["--kinds", *args.kinds]
    if getattr(args, "no_lm_only", False):
        parts += ["--no-lm-only"]
    if getattr(args, "no_fast_preset", False):
        parts += ["--no-fast-preset"]
    return " ".join(parts + ["--out-dir", args.out_dir])


def run_from_args(args: argparse.Namespace) -> int:
    """Run the benchmark the options describe and write the report; prints the written paths."""
    from .bench_report import write_report

    doc = run_benchmark(config_from_args(args), progress=not args.no_progress, command=command_line(args))
    for path in write_report(doc, args.out_dir):
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lmcodec.bench",
                                     description="Benchmark LMCodec against classical codecs on the corpus.")
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
