"""Pure-numpy reference of the integer semantics, in int64 arithmetic (exact by construction).

Used by tests as the oracle that the PyTorch forward and both ONNX graphs must match bit for
bit. It is written independently of the graph builders: floors are arithmetic shifts and
integer ``//``, never float operations. Speed is not a goal.
"""

from __future__ import annotations

import numpy as np

from lmcodec.frequency_model import N_SYMBOLS, TOTAL
from lmcodec.model.spec import (
    ACT_MAX,
    ATT_LUT_SIZE,
    FREQ_SPREAD,
    HID_MAX,
    NORM_SHIFT,
    OUT_LUT_SIZE,
    PROB_BITS,
    RES_MAX,
    attention_exp_table,
    gelu_table,
    inverse_norm_table,
    output_exp_table,
)
from lmcodec.model.weights import IntegerWeights

_INV = inverse_norm_table().astype(np.int64)
_ATT_EXP = attention_exp_table().astype(np.int64)
_OUT_EXP = output_exp_table().astype(np.int64)
_GELU = gelu_table().astype(np.int64)


def absmax_norm(r: np.ndarray) -> np.ndarray:
    """Per-position absmax normalisation to [-127, 127]: ``(r * INV[m]) >> 15``, m = max|r|."""
    m = np.maximum(np.abs(r).max(axis=-1, keepdims=True), 1)
    return (r * _INV[m]) >> NORM_SHIFT


def _clip(x: np.ndarray, bound: int) -> np.ndarray:
    return np.clip(x, -bound, bound)


def attention_probs(scores: np.ndarray, allowed: np.ndarray, shift: int) -> np.ndarray:
    """Integer softmax along the last axis: ``floor(e * 2**10 / sum e)``, 0 where not allowed."""
    masked = np.where(allowed, scores, np.iinfo(np.int64).min // 4)
    z = masked.max(axis=-1, keepdims=True) - masked
    e = np.where(allowed, _ATT_EXP[np.minimum(z >> shift, ATT_LUT_SIZE - 1)], 0)
    return (e << PROB_BITS) // e.sum(axis=-1, keepdims=True)


def frequencies(logits: np.ndarray, shift: int) -> np.ndarray:
    """Logits (int) -> int32 frequency table: entries >= 1, rows summing to 2**16."""
    z = logits.max(axis=-1, keepdims=True) - logits
    e = _OUT_EXP[np.minimum(z >> shift, OUT_LUT_SIZE - 1)]
    f = 1 + (e * FREQ_SPREAD) // e.sum(axis=-1, keepdims=True)
    remainder = TOTAL - f.sum(axis=-1)
    top = np.argmax(e, axis=-1)  # first index of the largest weight
    np.put_along_axis(f, top[..., None], np.take_along_axis(f, top[..., None], -1) + remainder[..., None], -1)
    return f.astype(np.int32)


def forward(weights: IntegerWeights, tokens: np.ndarray) -> np.ndarray:
    """Frequency tables int32 ``[B, n, 256]`` for int64 tokens ``[B, n]``, ``n <= T``."""
    cfg = weights.config
    w = {k: v.astype(np.int64) for k, v in weights.tensors.items()}
    tokens = np.asarray(tokens, dtype=np.int64)
    b, n = tokens.shape
    if n > cfg.context_length:
        raise ValueError(f"{n} tokens exceed the context length {cfg.context_length}")
    h, dh = cfg.n_heads, cfg.head_dim
    pos = np.arange(n)
    dist = pos[:, None] - pos[None, :]  # [n, n], i - j
    allowed = dist >= 0
    r = w["embed"][tokens]  # [B, n, D]
    for i in range(cfg.n_layers):
        x = absmax_norm(r)
        qkv = _clip((x @ w[f"l{i}.wqkv"]) >> cfg.shift_qkv, ACT_MAX)
        q, k, v = (qkv[..., j * cfg.d_model:(j + 1) * cfg.d_model].reshape(b, n, h, dh).transpose(0, 2, 1, 3) for j in range(3))
        scores = q @ k.transpose(0, 1, 3, 2) + w[f"l{i}.pos_bias"][:, np.maximum(dist, 0)][None]
        p = attention_probs(scores, allowed, cfg.shift_att)
        o = ((p @ v) >> PROB_BITS).transpose(0, 2, 1, 3).reshape(b, n, cfg.d_model)
        r = _clip(r + _clip((o @ w[f"l{i}.wo"]) >> cfg.shift_attn_out, RES_MAX), RES_MAX)
        x = absmax_norm(r)
        hid = _clip((x @ w[f"l{i}.w1"] + w[f"l{i}.b1"]) >> cfg.shift_ff_in, HID_MAX)
        g = _GELU[hid + HID_MAX]
        r = _clip(r + _clip((g @ w[f"l{i}.w2"]) >> cfg.shift_ff_out, RES_MAX), RES_MAX)
    logits = absmax_norm(r) @ w["w_out"] + w["b_out"]
    return frequencies(logits, cfg.shift_logits)
