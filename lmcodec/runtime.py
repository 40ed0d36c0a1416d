"""onnxruntime inference of a shipped model: the :class:`~lmcodec.frequency_model.FrequencyModel`
the codec uses.

Sessions are created lazily, once per model and device, and shared (``InferenceSession.run`` is
thread-safe): each CPU core runs its own single-threaded call on a share of the rows or lanes.
Exactness does not depend on any session setting: thread count, batch size, cache block size,
graph optimisation level and execution provider all give the same integers (tests prove it).
The graphs output each entry's output-table index (``gaps``); :func:`tables_from_gaps` turns
them into the frequency tables with exact integer arithmetic (graphs exported earlier output the
tables themselves, and are accepted too).
docs/performance.md has measurements and tuning advice.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
from numba import njit

from lmcodec.frequency_model import N_SYMBOLS
from lmcodec.model.spec import FREQ_SPREAD, OUT_LUT_SIZE, ModelConfig, output_exp_table

_TOKENS_PER_RUN = 2048
"""Full-graph mini-batch size in tokens (the output alone is 1 KiB per token). Measured on the
2-core Zen 4, single-threaded runs: lm-fast-v1 3.2 us/token at 2048 against 3.4 at 8192, lm-small-v1
28 against 31 (smaller runs keep the intermediates in the cache)."""
_SCORES_PER_RUN = 1 << 24
"""Full-graph mini-batches also keep each attention tensor (B * H * n * n floats) <= 64 MiB."""
ENCODE_BATCH_BYTES = 64 << 20
"""Lanes per encode batch: as many as keep the batch's frequency tables (1 KiB per byte) within
this budget (at least 64)."""
DECODE_CACHE_BYTES = 128 << 20
"""Lanes per decode batch: as many as keep the float32 KV cache within this budget (64 to 4096).
More lanes amortise the per-step session overhead over more bytes."""


def cache_block(context_length: int) -> int:
    """Positions per block of the step decoder's KV cache (any value gives the same output):
    32, or 64 for contexts of 512 and more (measured fastest on a 2-core Zen 4: fewer, larger
    per-lane products against less masked waste in the last block)."""
    return 64 if context_length >= 512 else 32


_OUT_EXP = output_exp_table().astype(np.int64)


@njit(cache=True, nogil=True)
def _tables_from_gaps(rows, exp):
    """In place: each row of output-table indices (int32 ``[m, 256]``) becomes its frequency
    table, ``1 + floor(E[g] * 65280 / sum(E[g]))`` plus the remainder to ``TOTAL`` at the first
    entry with ``g = 0`` (the first largest ``E``): :func:`lmcodec.model.reference.frequencies`.

    ``E[g] <= 4096`` and ``sum(E[g]) <= 2**20``, so every product is below ``2**28``; the quotient
    is estimated in float64 and corrected with the exact integer remainder (as
    :func:`lmcodec.mixing_kernels._to_table`). Indices are clamped to the table so that no input
    reads outside it (the graphs already clamp them). Returns -1, or the first row without a zero
    gap (which no graph produces: the largest logit has gap 0), left unfinished.
    """
    e = np.empty(N_SYMBOLS, dtype=np.int64)
    top = OUT_LUT_SIZE - 1
    for i in range(rows.shape[0]):
        row = rows[i]
        total = 0
        first = -1
        for v in range(N_SYMBOLS):
            g = min(max(np.int64(row[v]), 0), top)
            if g == 0 and first < 0:
                first = v
            e[v] = exp[g]
            total += e[v]
        if first < 0:
            return i
        inv = FREQ_SPREAD / total
        spread = 0
        for v in range(N_SYMBOLS):
            f = np.int64(e[v] * inv)
            r = e[v] * FREQ_SPREAD - f * total
            f += (r >= total) - (r < 0)
            row[v] = f + 1
            spread += f
        row[first] += FREQ_SPREAD - spread
    return -1


def tables_from_gaps(gaps: np.ndarray) -> np.ndarray:
    """The frequency tables (int32 ``[..., 256]``, rows summing to ``TOTAL``) of the full or step
    graph's ``gaps`` output, computed in place in ``gaps`` (a C-contiguous int32 array)."""
    if gaps.dtype != np.int32 or not gaps.flags.c_contiguous or gaps.shape[-1:] != (N_SYMBOLS,):
        raise ValueError(f"gaps must be C-contiguous int32 [..., {N_SYMBOLS}], got {gaps.dtype}{gaps.shape}")
    bad = _tables_from_gaps(gaps.reshape(-1, N_SYMBOLS), _OUT_EXP)
    if bad >= 0:
        raise ValueError(f"row {bad} of the model's output has no zero gap: not the output of a valid graph")
    return gaps


def available_devices() -> list[str]:
    import onnxruntime as ort

    providers = ort.get_available_providers()
    return ["cpu"] + (["cuda"] if "CUDAExecutionProvider" in providers else [])


def _providers(device: str) -> list:
    if device == "auto":
        device = "cuda" if "cuda" in available_devices() else "cpu"
    if device == "cuda":
        if "cuda" not in available_devices():
            raise RuntimeError("device='cuda' requested but onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)")
        # TF32 would round matmul inputs to 10 mantissa bits: exact for int8 operands, but we
        # switch it off so that no operand of any size is ever rounded.
        return [("CUDAExecutionProvider", {"use_tf32": 0}), "CPUExecutionProvider"]
    if device != "cpu":
        raise ValueError(f"unknown device {device!r}: use 'auto', 'cpu' or 'cuda'")
    return ["CPUExecutionProvider"]


class OnnxFrequencyModel:
    """Full-sequence and step graphs of one model on one device.

    ``threads``: CPU cores to use (``None``: the environment variable ``LMCODEC_NUM_THREADS``,
    else all cores). Work is parallelised across independent rows/lanes: each core runs its own
    single-threaded onnxruntime call on a share of the rows (encode) or lanes (decode), which
    scales better than onnxruntime's intra-op threads on these many small operators.
    ``optimize`` (graph optimisations on/off) exists for tests. Neither changes the output.
    """

    def __init__(self, full_path: Path, step_path: Path, config: ModelConfig, model_id: bytes,
                 device: str = "auto", threads: int | None = None, optimize: bool = True) -> None:
        if threads is None:
            threads = int(os.environ.get("LMCODEC_NUM_THREADS", "0") or 0)
        self.full_path, self.step_path = Path(full_path), Path(step_path)
        self.config = config
        self.context_length = config.context_length
        self.model_id = model_id
        self.device = device
        self.threads = threads
        self.optimize = optimize
        self._lock = threading.Lock()
        self._full = None
        self._step = None
        self._full_output = ""
        self._pool = None
        self._pool_pid = 0
        self._on_gpu: bool | None = None

    @property
    def on_gpu(self) -> bool:
        if self._on_gpu is None:
            self._on_gpu = self.device == "cuda" or (self.device == "auto" and "cuda" in available_devices())
        return self._on_gpu

    @property
    def workers(self) -> int:
        """Concurrent single-threaded runs (1 on CUDA: the GPU parallelises inside a run)."""
        return 1 if self.on_gpu else max(1, self.threads or os.cpu_count() or 1)

    def _session(self, path: Path):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = (
            ort.GraphOptimizationLevel.ORT_ENABLE_ALL if self.optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        )
        return ort.InferenceSession(str(path), options, providers=_providers(self.device))

    def _sessions(self):
        with self._lock:
            if self._full is None:
                self._full = self._session(self.full_path)
                self._step = self._session(self.step_path)
                self._full_output = self._full.get_outputs()[0].name  # "gaps", or "freqs" (older export)
        return self._full, self._step

    def parallel(self, fn, items: list) -> list:
        """``[fn(x) for x in items]``, spread over :attr:`workers` threads (onnxruntime releases
        the GIL while it runs)."""
        if self.workers == 1 or len(items) < 2:
            return [fn(x) for x in items]
        with self._lock:
            # a forked child inherits the pool object but not its threads: make a new one
            if self._pool is None or self._pool_pid != os.getpid():
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="lmcodec-ort")
                self._pool_pid = os.getpid()
            pool = self._pool
        return list(pool.map(fn, items))

    def full_freqs(self, tokens: np.ndarray) -> np.ndarray:
        """int64 ``[B, n]`` -> int32 ``[B, n, 256]``, run in mini-batches of whole rows."""
        tokens = np.ascontiguousarray(tokens, dtype=np.int64)
        b, n = tokens.shape
        if n > self.context_length:
            raise ValueError(f"{n} tokens exceed the model's context length {self.context_length}")
        out = np.empty((b, n, 256), dtype=np.int32)
        if b == 0 or n == 0:
            return out
        full, _ = self._sessions()
        name = self._full_output
        rows = max(1, min(_TOKENS_PER_RUN // n, _SCORES_PER_RUN // (self.config.n_heads * n * n)))
        rows = min(rows, -(-b // self.workers))  # at least one mini-batch per worker

        def run(i: int) -> None:
            part = out[i:i + rows]
            if not self.on_gpu:  # the CPU session writes straight into ``out`` (no copy)
                binding = full.io_binding()
                binding.bind_cpu_input("tokens", tokens[i:i + rows])
                binding.bind_output(name, "cpu", 0, np.int32, list(part.shape), part.ctypes.data)
                full.run_with_iobinding(binding)
            else:
                part[...] = full.run([name], {"tokens": tokens[i:i + rows]})[0]
            if name == "gaps":
                tables_from_gaps(part)

        self.parallel(run, list(range(0, b, rows)))
        return out

    def decoder(self, batch: int, workers: int | None = None) -> "OnnxStepDecoder":
        """A step decoder for ``batch`` lanes; its steps use up to ``workers`` threads (default
        :attr:`workers`; 1 runs each step in the calling thread, for callers that run several
        decoders concurrently)."""
        return OnnxStepDecoder(self, batch, workers=workers)

    def cache_bytes_per_lane(self) -> int:
        """float32 KV cache of one decoder lane (keys and values, all layers, whole context)."""
        cfg = self.config
        block = cache_block(cfg.context_length)
        positions = -(-cfg.context_length // block) * block
        return 2 * cfg.n_layers * positions * cfg.d_model * 4

    def lane_batch(self, segment_length: int, purpose: str) -> int:
        """Lanes per model batch for :mod:`lmcoding` (``purpose``: ``"encode"``/``"decode"``).

        Never changes the output (lanes are independent), only speed and memory."""
        if purpose == "encode":
            return max(64, ENCODE_BATCH_BYTES // (1024 * max(1, segment_length)))
        return int(min(4096, max(64, DECODE_CACHE_BYTES // self.cache_bytes_per_lane())))


class _LaneGroup:
    """KV cache of a contiguous range of lanes: one pre-allocated float32 buffer per layer and
    kind, block-major as the step graph expects (keys ``[NB, b, H, Dh, blk]``, values
    ``[NB, b, H, blk, Dh]``, position ``j`` in block ``j // blk``), and the step graph's inputs
    for the block in use (``feeds``, rebuilt by :meth:`feeds_for` when the block changes: a
    decode step's Python work is a fixed cost per step, paid on top of onnxruntime's)."""

    def __init__(self, cfg: ModelConfig, lanes: slice, block: int) -> None:
        n_blocks = -(-cfg.context_length // block)
        b = lanes.stop - lanes.start
        h, dh = cfg.n_heads, cfg.head_dim
        self.lanes = lanes
        self.k = [np.zeros((n_blocks, b, h, dh, block), dtype=np.float32) for _ in range(cfg.n_layers)]
        self.v = [np.zeros((n_blocks, b, h, block, dh), dtype=np.float32) for _ in range(cfg.n_layers)]
        self.feeds: dict[str, np.ndarray] = {}
        self._blocks = -1  # blocks the feeds pass

    def feeds_for(self, tokens: np.ndarray, p: int, blocks: int) -> dict[str, np.ndarray]:
        """The step graph's inputs for position ``p`` whose cache prefix is ``blocks`` blocks
        (views, no copy) and this group's share of ``tokens``."""
        if blocks != self._blocks:
            self._blocks = blocks
            for layer, (k, v) in enumerate(zip(self.k, self.v)):
                self.feeds[f"past_k{layer}"] = k[:blocks]
                self.feeds[f"past_v{layer}"] = v[:blocks]
        self.feeds["token"] = tokens[self.lanes]
        self.feeds["pos"] = np.array(p, dtype=np.int64)
        return self.feeds


class OnnxStepDecoder:
    """Advances ``batch`` lanes one position per :meth:`step`.

    Lanes are split into one group per worker thread; each group's step is one single-threaded
    session run on its own cache (see :class:`_LaneGroup`): it passes the contiguous prefix of
    the blocks in use (no copy) and writes the new keys/values in place. float32 instead of int8
    costs 4x the memory but saves converting the whole cache at every step.
    """

    def __init__(self, model: OnnxFrequencyModel, batch: int, block: int | None = None,
                 workers: int | None = None) -> None:
        cfg = model.config
        _, self._session = model._sessions()
        self._gaps = self._session.get_outputs()[0].name == "gaps"  # else "freqs" (older export)
        self._model = model
        block = cache_block(cfg.context_length) if block is None else block
        self.block = block = max(1, min(block, cfg.context_length))
        parts = max(1, min(model.workers if workers is None else workers, batch))
        bounds = [batch * i // parts for i in range(parts + 1)]
        self._groups = [_LaneGroup(cfg, slice(lo, hi), block) for lo, hi in zip(bounds, bounds[1:])]
        self.context_length = cfg.context_length
        self.batch = batch
        self.pos = 0

    def _run(self, group: _LaneGroup, tokens: np.ndarray, p: int) -> np.ndarray:
        nb, offset = divmod(p, self.block)
        freqs, new_k, new_v = self._session.run(None, group.feeds_for(tokens, p, nb + 1))
        for layer, (k, v) in enumerate(zip(group.k, group.v)):
            k[nb, :, :, :, offset] = new_k[layer]
            v[nb, :, :, offset, :] = new_v[layer]
        return tables_from_gaps(freqs) if self._gaps else freqs

    def step(self, tokens: np.ndarray) -> np.ndarray:
        p = self.pos
        if p >= self.context_length:
            raise ValueError("step decoder is past the model's context length")
        tokens = np.ascontiguousarray(tokens, dtype=np.int64).reshape(self.batch)
        parts = self._model.parallel(lambda group: self._run(group, tokens, p), self._groups)
        self.pos += 1
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
