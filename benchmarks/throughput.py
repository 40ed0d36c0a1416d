"""Throughput of the LM codec: encode/decode KB/s per model, where the time goes, and how close
the model gets to the machine's float32 matmul throughput (CPU, or ``--device cuda``).

    python benchmarks/throughput.py                      # the shipped models (small, tiny, fast)
    python benchmarks/throughput.py --models lm-tiny-v1 --chunk-bytes 262144 --threads 2
    python benchmarks/throughput.py --mode lm            # the model alone (LMCodec(mix=False))
    python benchmarks/throughput.py --kind text          # 1 MiB of validation text (one byte plane)
    python benchmarks/throughput.py --models lm-fast-v1 --mixer-version 1   # the fast preset (older, lighter mixer)
    python benchmarks/throughput.py --device cuda        # the model on the GPU (onnxruntime-gpu)

For each model it encodes one chunk (default 1 MiB) with ``LMCodec`` and decodes it again, by
default with the default codec ``LMCodec()`` (mode ``lm_mix``; ``--mode lm``: ``mix=False``).
The rates (KB/s, KB per CPU-second) come from plain runs; one more run of each direction, with
wrappers around the entry points below, splits the time into (the wrappers cost time of their
own, under the GIL, on every decode step, so they are kept out of the rates):

* model time: ``full_freqs`` (encode) and ``decoder().step`` (decode), i.e. onnxruntime;
* mixer time (``lm_mix``): ``AdaptiveMixer.code`` (encode) and ``.decode`` (decode: the mixer
  *and* the rANS decode step, fused in one compiled kernel; numba, or the numpy reference with
  ``LMCODEC_MIXER=numpy``);
* coder time: rANS ``encode_intervals`` (``lm_mix``) / ``encode_lanes`` (``lm``) and
  ``RansLaneDecoder.decode_step`` (``lm``; numpy). A timed call made inside another one is
  counted once, in the outer one;
* with several cores, ``lm_mix`` decoding runs one group of streams per core concurrently
  (model step, mixer and rANS of a group in one thread): model, mixer and coder times are then
  thread-seconds summed over the groups, can add up to more than the wall time, and *other*
  (wall minus their sum, floored at 0) is no longer meaningful; GFLOP/s then use model
  thread-seconds divided by the number of concurrent groups. ``lm_mix`` encoding computes the
  model's next block of tables while the mixer codes the current one, so there too model and
  mixer time overlap (model time is then the wall time of the model calls, slowed by sharing
  the cores with the mixer) and *other* is a lower bound;
* other: everything else (Python driver, element transform choice (LZMA proxy) and transform,
  byte shuffle, the per-position interval lookup of the ``lm_mix`` encoder, zstd fallback
  attempt, CRC, header).

Each encode and decode is timed ``--repeat`` times (default 3); the table reports the median
run and the range of all runs (single runs on this shared 2-core machine vary by about 10 %),
and the split of the profiled run. The encoder's model calls of that run are then replayed one
after another with nothing else running: *alone* is the fraction of the matmul peak they reach
(the pipelined encoder's own model time is measured while the mixer shares the cores).
Nothing is extrapolated: every rate is bytes actually coded / seconds actually spent. The
machine's float32 matmul throughput is measured in the same run (onnxruntime MatMul, the same
MLAS kernels and thread count as the model), and the model's *useful* multiply-accumulates per
byte (causal attention counted once per key actually attended) turn model time into GFLOP/s
and a fraction of that peak.

``--models`` takes installed model names and ``preset:NAME`` (a ``lmcodec.train`` preset with
random integer weights, exported to a temporary model directory; speed does not depend on the
weights' values). Random weights predict badly, so the codec may store such a chunk as zstd
and decode would never run the model: presets are therefore timed at the stream level
(``lm_mix``: :func:`lmcodec.mixcoding.encode_chunks` / ``decode_chunks`` on the byte planes of
the transformed chunk, with the transform and stream length ``LMCodec`` uses; ``lm``:
:func:`lmcodec.lmcoding.encode_planes` / ``decode_planes``), which is the model path of
``LMCodec`` without header, CRC and the zstd attempt. The same happens, and is reported, if a
shipped model's chunk does not come out in the model mode.

Results go to ``--out`` (JSON) and a table on stdout. The machine is shared: rerun at a quiet
moment, and compare runs only on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lmcodec import lmcoding, mixcoding, mixing, models  # noqa: E402
from lmcodec.codec import LMCodec, default_segment_length  # noqa: E402
from lmcodec.format import HEADER_SIZE, Mode, parse_header  # noqa: E402
from lmcodec.model.spec import ModelConfig  # noqa: E402
from lmcodec.preprocess import join_planes, plane_layout, shuffle_dtype, split_planes  # noqa: E402
from lmcodec.transforms import Transform, apply_transform, choose_coding, invert_transform  # noqa: E402

DEFAULT_MODELS = "lm-small-v1,lm-tiny-v1,lm-fast-v1"


# -- what is measured --------------------------------------------------------------------------


def sample_chunk(n_bytes: int, source: str = "corpus", seed: int = 0, kind: str = "audio") -> tuple[np.ndarray, str]:
    """``(array, description)``: the first ``n_bytes`` of the largest validation-split sample of
    ``kind`` in :mod:`lmcodec.corpus` (default audio: int16, two byte planes; data of the kind the
    models were trained on, so chunks come out in LM mode), or, if the corpus is not installed or
    ``source == "synthetic"``, a deterministic int16 signal (sinusoids, random walk, noise).
    The model's speed hardly depends on the data; the mixer's parallelism does: the encoder runs
    one byte plane per core (text and 8-bit data have one)."""
    if source == "corpus":
        import warnings

        from lmcodec.corpus import load_samples

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            samples = [s for s in load_samples("val", [kind]) if s.array.nbytes >= n_bytes]
        if samples:
            best = max(samples, key=lambda s: s.array.nbytes)
            flat = best.array.reshape(-1)
            return np.ascontiguousarray(flat[: n_bytes // flat.itemsize]), f"corpus val {best.name}"
        if kind != "audio":
            raise SystemExit(f"no validation sample of kind {kind!r} holds {n_bytes} bytes")
    rng = np.random.default_rng(seed)
    n = n_bytes // 2
    t = np.arange(n)
    x = 3000 * np.sin(t / 37.0) + 800 * np.sin(t / 5.3) + np.cumsum(rng.normal(0, 4, n)) + rng.normal(0, 20, n)
    return np.clip(x, -32768, 32767).astype("<i2"), "synthetic int16 signal"


def macs_per_byte(cfg: ModelConfig, segment: int, block: int, pieces: int) -> dict[str, float]:
    """Multiply-accumulates per coded byte for segments of ``segment`` bytes.

    ``useful``: linear layers plus causal attention (position i attends to i + 1 keys, q.k and
    p.v); ``full_graph``: what the encode graph computes (each of its ``pieces`` query pieces
    scores all keys up to the piece's end); ``step``: what the decode graph computes (whole cache
    blocks of ``block`` positions plus the own key).
    """
    d, f, n_layers = cfg.d_model, cfg.d_ff, cfg.n_layers
    linear = n_layers * (d * 3 * d + d * d + 2 * d * f) + d * 256
    i = np.arange(segment)
    size = -(-segment // pieces)
    keys = {
        "useful": float(np.mean(i + 1)),
        "full_graph": float(np.mean(np.minimum((i // size + 1) * size, segment))),
        "step": float(np.mean((i // block + 1) * block + 1)),
    }
    return {name: linear + n_layers * 2 * d * k for name, k in keys.items()}


def matmul_gflops(threads: int, seconds: float = 1.0, device: str = "cpu") -> dict[str, float]:
    """float32 matmul GFLOP/s of this CPU (or, ``device="cuda"``, GPU, with TF32 off as the codec
    runs it and the operands kept on the device) through onnxruntime, best of repeated runs, for
    a large square product and for a model-shaped one ([8192, 128] x [128, 512])."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from lmcodec.runtime import _providers

    out = {}
    for label, (m, k, n) in {"square_1024": (1024, 1024, 1024), "model_shaped": (8192, 128, 512)}.items():
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["a", "b"], ["c"])], "mm",
            [helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k]),
             helper.make_tensor_value_info("b", TensorProto.FLOAT, [k, n])],
            [helper.make_tensor_value_info("c", TensorProto.FLOAT, [m, n])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(model.SerializeToString(), options, providers=_providers(device))
        rng = np.random.default_rng(0)
        binding = session.io_binding()
        for name, shape in (("a", (m, k)), ("b", (k, n))):
            value = rng.integers(-127, 128, shape).astype(np.float32)
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, device, 0))
        binding.bind_output("c", device)
        session.run_with_iobinding(binding)
        best, start = float("inf"), time.perf_counter()
        while time.perf_counter() - start < seconds:
            t = time.perf_counter()
            session.run_with_iobinding(binding)  # returns when the product is done
            best = min(best, time.perf_counter() - t)
        out[label] = 2 * m * k * n / best / 1e9
    return out


class Timers:
    """Wraps the model, mixer and coder entry points that lmcoding and mixcoding call and adds
    up their time."""

    def __init__(self) -> None:
        self.model = 0.0
        self.mixer = 0.0
        self.coder = 0.0
        self._patched: list[tuple[object, str, object]] = []
        self.model_threads: set[int] = set()
        self.full_calls: list[np.ndarray] = []  # the token arrays full_freqs was called with
        self._lock = threading.Lock()
        self._local = threading.local()

    def add(self, bucket: str, seconds: float) -> None:
        """Thread-safe: concurrent decode groups add their time from several threads."""
        with self._lock:
            setattr(self, bucket, getattr(self, bucket) + seconds)
            if bucket == "model":
                self.model_threads.add(threading.get_ident())

    def _patch(self, owner, name: str, bucket: str) -> None:
        original = getattr(owner, name)
        timers = self

        def timed(*args, **kwargs):
            local = timers._local
            if getattr(local, "inside", False):  # nested in another timed call: counted there
                return original(*args, **kwargs)
            local.inside = True
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                local.inside = False
                timers.add(bucket, time.perf_counter() - t)

        self._patched.append((owner, name, original))
        setattr(owner, name, timed)

    def install(self, model) -> None:
        self._patch(lmcoding, "encode_lanes", "coder")
        self._patch(mixcoding, "encode_intervals", "coder")
        self._patch(lmcoding.RansLaneDecoder, "decode_step", "coder")
        self._patch(mixing.AdaptiveMixer, "code", "mixer")
        self._patch(mixing.AdaptiveMixer, "decode", "mixer")
        self._patch(model, "full_freqs", "model")
        timed_full = model.full_freqs
        timers = self

        def full_freqs(tokens):
            with timers._lock:
                timers.full_calls.append(np.array(tokens, copy=True))
            return timed_full(tokens)

        model.full_freqs = full_freqs
        make_decoder = model.decoder

        def decoder(batch, **kwargs):
            stepper = make_decoder(batch, **kwargs)
            timers._patch_instance(stepper)
            return stepper

        self._patched.append((model, "decoder", make_decoder))
        model.decoder = decoder

    def _patch_instance(self, stepper) -> None:
        original = stepper.step
        timers = self

        def step(tokens):
            t = time.perf_counter()
            try:
                return original(tokens)
            finally:
                timers.add("model", time.perf_counter() - t)

        stepper.step = step

    def uninstall(self) -> None:
        for owner, name, original in reversed(self._patched):
            if isinstance(owner, type) or owner in (lmcoding, mixcoding):
                setattr(owner, name, original)
            else:
                try:
                    delattr(owner, name)  # instance attribute shadowing the method
                except AttributeError:
                    setattr(owner, name, original)
        self._patched.clear()

    def reset(self) -> None:
        self.model = self.mixer = self.coder = 0.0
        self.model_threads = set()
        self.full_calls = []


# -- one model -----------------------------------------------------------------------------------


def _timed(timers: Timers, model, fn, repeat: int = 1):
    """Run ``fn`` ``repeat`` (>= 1) times as it is, then once more with ``timers`` installed on
    ``model``. Returns its result and the timing: ``seconds`` / ``cpu_seconds`` of the median plain
    run by wall time (the lower middle one for an even count) and every plain run's wall seconds
    in ``runs_seconds`` (the machine is shared: single runs vary by about 10 %); the split into
    model, mixer, coder and other seconds comes from the profiled run (``profiled_seconds`` its
    wall time), because the timers' wrappers cost time of their own, under the GIL and a lock, on
    every decode step of every concurrent group. ``model_alone_s``: the
    profiled run's ``full_freqs`` calls replayed one after another with nothing else running (the
    encoder overlaps them with the mixer), or None when it made none."""
    runs = []
    for _ in range(max(1, repeat)):
        t, c = time.perf_counter(), time.process_time()
        result = fn()
        runs.append({"seconds": time.perf_counter() - t, "cpu_seconds": time.process_time() - c})
    median = sorted(runs, key=lambda r: r["seconds"])[(len(runs) - 1) // 2]
    timers.reset()
    timers.install(model)
    try:
        t = time.perf_counter()
        fn()
        profiled = time.perf_counter() - t
    finally:
        timers.uninstall()
    model_alone = None
    if timers.full_calls:
        t = time.perf_counter()
        for tokens in timers.full_calls:
            model.full_freqs(tokens)
        model_alone = time.perf_counter() - t
    return result, {**median, "runs_seconds": [r["seconds"] for r in runs], "profiled_seconds": profiled,
                    "model_s": timers.model, "mixer_s": timers.mixer, "coder_s": timers.coder,
                    "other_s": max(0.0, profiled - timers.model - timers.mixer - timers.coder),
                    "model_threads": max(1, len(timers.model_threads)), "model_alone_s": model_alone}


def _stream_level(model, data: np.ndarray, segment: int, mix: bool, timers: Timers, repeat: int,
                  mixer_version: int = mixcoding.MIXER_VERSION) -> tuple[int, dict]:
    """Encode (untimed) and decode (timed) ``data`` below ``LMCodec``: the model body only.
    Returns ``(body bytes, decode timing)``; raises unless the round trip is exact."""
    raw = data.view(np.uint8).reshape(-1)
    if not mix:
        dtype = shuffle_dtype(data.dtype)
        layout = plane_layout(data.nbytes, dtype)
        planes = split_planes(raw, dtype)
        bodies = lmcoding.encode_planes(model, [planes], segment)
        out, dec = _timed(timers, model, lambda: lmcoding.decode_planes(model, bodies, [layout], segment), repeat)
        assert all(np.array_equal(a, b) for a, b in zip(out[0], [p for p, _ in planes])), "round trip failed"
        return len(bodies[0]), dec
    # the codec's own layout and transform policy, for a 1-D chunk (record length unknown)
    coding = choose_coding(raw, data.dtype, 0, mixcoding.MAX_RECORD_LENGTH,
                           mixcoding.MIXER_TRANSFORMS[mixer_version])
    dtype, transform, record = coding.dtype, coding.transform, coding.record
    layout = plane_layout(data.nbytes, dtype)
    params = mixcoding.StreamParams(max(1, mixcoding.DEFAULT_STREAM_LENGTH // segment), record, int(transform))
    planes = split_planes(apply_transform(raw, dtype, transform, record), dtype)
    bodies = mixcoding.encode_chunks(model, [planes], segment, [params], mixer_version=mixer_version)

    def decode():
        (out, prm), = mixcoding.decode_chunks(model, bodies, [layout], segment,
                                              [mixcoding.FORMAT_OF_MIXER[mixer_version]])
        return invert_transform(join_planes(list(out), data.nbytes, dtype), dtype, Transform(prm.transform),
                                prm.record_length)

    out, dec = _timed(timers, model, decode, repeat)
    assert out.tobytes() == data.tobytes(), "round trip failed"
    return len(bodies[0]), dec


def bench_model(name: str, data: np.ndarray, threads: int | None, codec_level: bool, mix: bool = True,
                repeat: int = 3, device: str = "cpu", mixer_version: int = mixcoding.MIXER_VERSION) -> dict:
    model = models.load_model(name, device=device)
    if threads is not None:
        model.threads = threads
    model._full = model._step = None  # fresh sessions with this thread count
    cfg = model.config
    segment = default_segment_length(int(cfg.context_length), mix)  # what the codec below codes with
    # warm-up (session creation, compiled kernels loaded, first-run allocations), not timed
    warm = data[: max(4 * segment, 65536 // data.itemsize)]
    codec = LMCodec(model=name, device=device, mix=mix, mixer_version=mixer_version)
    codec.decode(codec.encode(warm))
    model_mode = "LM_MIX" if mix else "LM"

    timers = Timers()
    # encode: always the real LMCodec path (the model body is computed even when zstd/raw win)
    encoded, enc = _timed(timers, model, lambda: codec.encode(data), repeat)
    header = parse_header(np.frombuffer(encoded, np.uint8))
    mode = Mode(header.mode).name
    if mode == model_mode:
        assert header.segment_length == segment, "the codec coded another segment length than counted"
    if mode == model_mode and codec_level:
        decoded, dec = _timed(timers, model, lambda: codec.decode(encoded), repeat)
        assert decoded == data.tobytes(), "round trip failed"
        compressed = len(encoded) - HEADER_SIZE
        level = "LMCodec"
    else:  # zstd/raw won: time the model decode on the model body itself
        compressed, dec = _stream_level(model, data, segment, mix, timers, repeat, mixer_version)
        level = f"LMCodec encode ({mode} won), {'mixcoding' if mix else 'lmcoding'} decode"

    n = data.nbytes
    try:
        from lmcodec.model.export import query_pieces
        from lmcodec.runtime import cache_block

        block, pieces = cache_block(cfg.context_length), query_pieces(cfg)
    except ImportError:  # an older exporter (before/after comparisons): n x n scores, no blocks
        block, pieces = 1, 1
    macs = macs_per_byte(cfg, segment, block, pieces)
    result = {
        "model": name,
        "config": json.loads(cfg.to_json()),
        "codec": f"LMCodec(mix={mix}, mixer_version={mixer_version})" if mix else "LMCodec(mix=False)",
        "level": level,
        "codec_mode": mode,
        "bytes": n,
        "segment_length": segment,
        "encoded_bytes": len(encoded),
        "lm_body_bytes": compressed,  # the model body (lm_mix or lm), header excluded
        "lm_bits_per_byte": 8 * compressed / n,
        "macs_per_byte": macs,
    }
    for label, t in (("encode", enc), ("decode", dec)):
        # model time of concurrent decode groups is thread-seconds: /threads gives the wall time
        # the same work takes on that many cores, comparable with the 2-thread matmul peak
        model_wall = t["model_s"] / t["model_threads"]
        model_rate = n / model_wall if model_wall else float("nan")
        result[label] = {
            **t,
            "kb_per_s": n / t["seconds"] / 1e3,
            # load-independent view: bytes per CPU-second of this process (all its threads)
            "kb_per_cpu_s": n / t["cpu_seconds"] / 1e3,
            "model_kb_per_s": model_rate / 1e3,
            # useful work per second of model time
            "model_gflops_useful": 2 * macs["useful"] * model_rate / 1e9,
            "model_gflops_computed": 2 * macs["full_graph" if label == "encode" else "step"] * model_rate / 1e9,
            # the encoder's model calls replayed alone (no mixer sharing the cores)
            "model_alone_gflops_useful": (2 * macs["useful"] * n / t["model_alone_s"] / 1e9
                                          if t["model_alone_s"] else None),
        }
    return result


def _preset_model(preset: str, directory: Path) -> str:
    from lmcodec.model.weights import IntegerWeights
    from lmcodec.train import PRESETS

    name = f"preset-{preset}-random"
    weights = IntegerWeights.random(ModelConfig.create(**PRESETS[preset]), seed=0, scale=0.3)
    models.register_model(weights, name, training={"note": "random integer weights, speed only"}, directory=directory)
    return name


# -- report --------------------------------------------------------------------------------------


def table(results: dict) -> str:
    peak = results["matmul_gflops"]["square_1024"]
    where = "CUDA" if results.get("device") == "cuda" else f"{results['threads']} threads"
    rows = [f"matmul float32 (onnxruntime, {where}, best of {len(results['matmul_runs'])} "
            f"measurements taken between the models): {peak:.1f} GFLOP/s square 1024, "
            f"{results['matmul_gflops']['model_shaped']:.1f} GFLOP/s [8192,128]x[128,512]",
            "",
            f"{'model':22s} {'op':6s} {'KB/s':>8s} {'range':>13s} {'KB/cpu-s':>8s} {'model s':>8s} {'mixer s':>8s} {'coder s':>8s} "
            f"{'other s':>8s} {'MMAC/B':>7s} {'GFLOP/s':>8s} {'of peak':>7s} {'alone':>6s}  level"]
    for r in results["models"]:
        for label in ("encode", "decode"):
            t = r[label]
            span = f"{r['bytes'] / max(t['runs_seconds']) / 1e3:.0f}-{r['bytes'] / min(t['runs_seconds']) / 1e3:.0f}"
            alone = (f"{t['model_alone_gflops_useful'] / peak:6.1%}" if t.get("model_alone_gflops_useful")
                     else f"{'-':>6s}")
            rows.append(
                f"{r['model']:22s} {label:6s} {t['kb_per_s']:8.1f} {span:>13s} {t['kb_per_cpu_s']:8.1f} {t['model_s']:8.2f} "
                f"{t.get('mixer_s', 0.0):8.2f} {t['coder_s']:8.2f} "
                f"{t['other_s']:8.2f} {r['macs_per_byte']['useful'] / 1e6:7.3f} {t['model_gflops_useful']:8.1f} "
                f"{t['model_gflops_useful'] / peak:7.1%} {alone}  {r['level']}")
        rows.append(f"{'':22s} {r.get('codec', 'LMCodec(mix=False)')}: {r['bytes']} bytes -> chunk of "
                    f"{r['encoded_bytes']} ({r['codec_mode']}); model body {r['lm_bits_per_byte']:.2f} bits/byte")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=DEFAULT_MODELS, help=f"comma-separated (default {DEFAULT_MODELS})")
    parser.add_argument("--chunk-bytes", type=int, default=1 << 20)
    parser.add_argument("--data", choices=("corpus", "synthetic"), default="corpus")
    parser.add_argument("--kind", default="audio", help="corpus kind of the chunk (default audio)")
    parser.add_argument("--mode", choices=("lm_mix", "lm"), default="lm_mix",
                        help="lm_mix: the default LMCodec() (default); lm: LMCodec(mix=False), the model alone")
    parser.add_argument("--mixer-version", type=int, choices=sorted(mixcoding.FORMAT_OF_MIXER),
                        default=mixcoding.MIXER_VERSION,
                        help=f"lm_mix: the mixer rules to write (default {mixcoding.MIXER_VERSION}, the newest)")
    parser.add_argument("--threads", type=int, default=None,
                        help="onnxruntime intra-op threads (default: LMCODEC_NUM_THREADS or all cores)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the model runs (cuda: onnxruntime-gpu's CUDA provider; the mixer and "
                             "coder stay on the CPU); the matmul peak is measured on the same device")
    parser.add_argument("--repeat", type=int, default=3,
                        help="timed runs of each encode and decode; the median run is reported (default 3)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "throughput.json")
    args = parser.parse_args(argv)

    repeat = max(1, args.repeat)
    threads = args.threads if args.threads is not None else int(os.environ.get("LMCODEC_NUM_THREADS", "0") or 0)
    data, description = sample_chunk(args.chunk_bytes, args.data, kind=args.kind)
    results = {
        "data": description,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version(),
                    "loadavg_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None},
        "threads": threads or os.cpu_count(),
        "mode": args.mode,
        "mixer_version": args.mixer_version if args.mode == "lm_mix" else None,
        "repeat": repeat,
        "chunk_bytes": int(data.nbytes),
        "device": args.device,
        "matmul_runs": [matmul_gflops(threads or os.cpu_count(), device=args.device)],
        "models": [],
    }
    import onnxruntime

    results["machine"]["onnxruntime"] = onnxruntime.__version__
    with tempfile.TemporaryDirectory() as tmp:
        names = []
        for item in args.models.split(","):
            item = item.strip()
            if item.startswith("preset:"):
                names.append((_preset_model(item[len("preset:"):], Path(tmp)), False))
            elif item:
                names.append((item, True))
        if any(not codec_level for _, codec_level in names):
            os.environ["LMCODEC_MODEL_PATH"] = os.pathsep.join(
                [tmp] + [p for p in os.environ.get("LMCODEC_MODEL_PATH", "").split(os.pathsep) if p])
        for name, codec_level in names:
            print(f"... {name}", file=sys.stderr, flush=True)
            results["models"].append(bench_model(name, data, args.threads, codec_level, mix=args.mode == "lm_mix",
                                                 repeat=repeat, device=args.device,
                                                 mixer_version=args.mixer_version))
            results["matmul_runs"].append(matmul_gflops(threads or os.cpu_count(), device=args.device))
    # the machine is shared: the best measurement is the closest to this CPU's real peak
    results["matmul_gflops"] = {k: max(run[k] for run in results["matmul_runs"]) for k in results["matmul_runs"][0]}
    for r in results["models"]:
        for label in ("encode", "decode"):
            t = r[label]
            peak = results["matmul_gflops"]["square_1024"]
            t["fraction_of_matmul_peak"] = t["model_gflops_useful"] / peak
            alone = t["model_alone_gflops_useful"]
            t["model_alone_fraction_of_matmul_peak"] = alone / peak if alone else None
    results["machine"]["loadavg_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwritten to {args.out}; load average at start/end: "
          f"{results['machine']['loadavg_at_start']} / {results['machine']['loadavg_at_end']}")
    return results


if __name__ == "__main__":
    main()
