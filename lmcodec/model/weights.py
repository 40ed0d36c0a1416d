"""Integer weights of a model: the single source from which the reference forward pass and both
ONNX graphs are built.

Names and shapes (``D = d_model``, ``F = d_ff``, ``H = n_heads``, ``T = context_length``,
``V = vocab_size``); all entries are integers:

=====================  ===============  ===================================
``embed``              ``[V, D]``       residual units, ``|x| <= RES_MAX``
``l{i}.pos_bias``      ``[H, T]``       score bias by distance, ``<= POS_BIAS_MAX``
``l{i}.wqkv``          ``[D, 3D]``      int8 range (q | k | v, head-major)
``l{i}.wo``            ``[D, D]``       int8 range
``l{i}.w1``            ``[D, F]``       int8 range
``l{i}.b1``            ``[F]``          ``|b| <= BIAS_MAX``
``l{i}.w2``            ``[F, D]``       int8 range
``w_out``              ``[D, 256]``     int8 range
``b_out``              ``[256]``        ``|b| <= BIAS_MAX``
=====================  ===============  ===================================
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json

import numpy as np

from lmcodec.model.spec import ACT_MAX, BIAS_MAX, POS_BIAS_MAX, RES_MAX, ModelConfig


def _expected_shapes(cfg: ModelConfig) -> dict[str, tuple[tuple[int, ...], int]]:
    """name -> (shape, magnitude bound)."""
    d, f, h, t = cfg.d_model, cfg.d_ff, cfg.n_heads, cfg.context_length
    shapes: dict[str, tuple[tuple[int, ...], int]] = {"embed": ((cfg.vocab_size, d), RES_MAX)}
    for i in range(cfg.n_layers):
        shapes[f"l{i}.pos_bias"] = ((h, t), POS_BIAS_MAX)
        shapes[f"l{i}.wqkv"] = ((d, 3 * d), ACT_MAX)
        shapes[f"l{i}.wo"] = ((d, d), ACT_MAX)
        shapes[f"l{i}.w1"] = ((d, f), ACT_MAX)
        shapes[f"l{i}.b1"] = ((f,), BIAS_MAX)
        shapes[f"l{i}.w2"] = ((f, d), ACT_MAX)
    shapes["w_out"] = ((d, 256), ACT_MAX)
    shapes["b_out"] = ((256,), BIAS_MAX)
    return shapes


@dataclasses.dataclass(frozen=True)
class IntegerWeights:
    """A config plus its integer tensors (int32 numpy arrays), validated on construction."""

    config: ModelConfig
    tensors: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        expected = _expected_shapes(self.config)
        if set(expected) != set(self.tensors):
            missing = set(expected) - set(self.tensors)
            extra = set(self.tensors) - set(expected)
            raise ValueError(f"weights do not match config: missing {missing}, extra {extra}")
        for name, (shape, bound) in expected.items():
            t = self.tensors[name]
            if t.shape != shape:
                raise ValueError(f"{name}: shape {t.shape}, expected {shape}")
            if t.dtype != np.int32:
                raise ValueError(f"{name}: dtype {t.dtype}, expected int32")
            if t.size and int(np.abs(t).max()) > bound:
                raise ValueError(f"{name}: magnitude {int(np.abs(t).max())} exceeds {bound}")

    def __getitem__(self, name: str) -> np.ndarray:
        return self.tensors[name]

    @property
    def n_parameters(self) -> int:
        return int(sum(t.size for t in self.tensors.values()))

    def to_bytes(self) -> bytes:
        """npz bytes with the config as JSON (a storage form; its zip timestamps vary, so hash
        with :meth:`digest`, never these bytes)."""
        buf = io.BytesIO()
        config = np.frombuffer(self.config.to_json().encode(), dtype=np.uint8)
        np.savez_compressed(buf, __config__=config, **{k: self.tensors[k] for k in sorted(self.tensors)})
        return buf.getvalue()

    def digest(self) -> bytes:
        """sha256 over a canonical serialisation: the config JSON, then per tensor in name order
        its name, shape and int32 little-endian values. Equal weights give equal digests; the
        first 8 bytes are the model id that every chunk header records."""
        h = hashlib.sha256(b"lmcodec-integer-weights-v1\0" + self.config.to_json().encode() + b"\0")
        for name in sorted(self.tensors):
            t = np.ascontiguousarray(self.tensors[name], dtype="<i4")
            h.update(f"{name}:{','.join(map(str, t.shape))}\0".encode())
            h.update(t.tobytes())
        return h.digest()

    @classmethod
    def from_bytes(cls, data: bytes) -> "IntegerWeights":
        with np.load(io.BytesIO(data)) as npz:
            config = ModelConfig.from_dict(json.loads(npz["__config__"].tobytes().decode()))
            tensors = {k: npz[k].astype(np.int32) for k in npz.files if k != "__config__"}
        return cls(config, tensors)

    @classmethod
    def random(cls, config: ModelConfig, seed: int = 0, scale: float = 1.0) -> "IntegerWeights":
        """Random weights for tests; ``scale=1`` spreads weights over the whole int8 range."""
        rng = np.random.default_rng(seed)
        tensors = {}
        for name, (shape, bound) in _expected_shapes(config).items():
            limit = max(1, int(bound * min(scale, 1.0)))
            tensors[name] = rng.integers(-limit, limit + 1, size=shape).astype(np.int32)
        return cls(config, tensors)

    @classmethod
    def extreme(cls, config: ModelConfig, sign: int = 1) -> "IntegerWeights":
        """Every tensor at its bound (with alternating signs per row): drives activations to
        their clip limits, the adversarial case for the exactness bounds."""
        tensors = {}
        for name, (shape, bound) in _expected_shapes(config).items():
            pattern = np.ones(shape, dtype=np.int64)
            if len(shape) == 2:
                pattern[1::2] = -1
            tensors[name] = (sign * bound * pattern).astype(np.int32)
        return cls(config, tensors)
