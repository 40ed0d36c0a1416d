"""onnxruntime inference of a shipped model: the :class:`~lmcodec.frequency_model.FrequencyModel`
the codec uses.

Sessions are created lazily, once per model and device, and shared (``InferenceSession.run`` is
thread-safe). Exactness does not depend on any session setting: thread count, batch size,
graph optimisation level and execution provider all give the same integers (tests prove it).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from lmcodec.model.spec import ModelConfig

_TOKENS_PER_RUN = 8192
"""Full-graph mini-batch size in tokens: bounds the attention buffers (B * H * n * n floats)."""


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

    ``threads`` (onnxruntime intra-op threads, 0 = onnxruntime's default) and
    ``optimize`` (graph optimisations on/off) exist for tests and tuning; they never change
    the output.
    """

    def __init__(self, full_path: Path, step_path: Path, config: ModelConfig, model_id: bytes,
                 device: str = "auto", threads: int = 0, optimize: bool = True) -> None:
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

    def _session(self, path: Path):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
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
        return self._full, self._step

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
        rows = max(1, _TOKENS_PER_RUN // n)
        for i in range(0, b, rows):
            out[i:i + rows] = full.run(["freqs"], {"tokens": tokens[i:i + rows]})[0]
        return out

    def decoder(self, batch: int) -> "OnnxStepDecoder":
        return OnnxStepDecoder(self, batch)


class OnnxStepDecoder:
    """Advances ``batch`` lanes one position per :meth:`step`, keeping the KV cache in two
    pre-allocated int8 buffers ``[T, L, B, H, Dh]``: each step passes the contiguous prefix
    ``cache[:pos]`` (no copy) and writes the new keys/values into ``cache[pos]``."""

    def __init__(self, model: OnnxFrequencyModel, batch: int) -> None:
        cfg = model.config
        _, self._session = model._sessions()
        shape = (cfg.context_length, cfg.n_layers, batch, cfg.n_heads, cfg.head_dim)
        self._k = np.zeros(shape, dtype=np.int8)
        self._v = np.zeros(shape, dtype=np.int8)
        self.batch = batch
        self.pos = 0

    def step(self, tokens: np.ndarray) -> np.ndarray:
        if self.pos >= self._k.shape[0]:
            raise ValueError("step decoder is past the model's context length")
        tokens = np.ascontiguousarray(tokens, dtype=np.int64).reshape(self.batch)
        p = self.pos
        freqs, new_k, new_v = self._session.run(
            None, {"token": tokens, "pos": np.array(p, dtype=np.int64), "past_k": self._k[:p], "past_v": self._v[:p]}
        )
        self._k[p] = new_k
        self._v[p] = new_v
        self.pos += 1
        return freqs
