"""Architecture hyper-parameters, fixed-point constants, lookup tables and the exactness proof.

Every tensor of the model holds integers. The ONNX graphs store them in float32 (int8 KV cache,
int32 for the final normalisation), which is exact as long as every value and every partial sum
of every reduction stays below 2**24 in magnitude: then any summation order (threads, batch,
BLAS kernel, GPU) yields the same integer. :func:`check_bounds` proves this for a config from the
worst case of each operand (not from observed values); docs/model.md walks through it.

Fixed-point conventions (all "units" are integer steps):

* activations entering a matmul: int8 range ``[-ACT_MAX, ACT_MAX]``;
* the residual stream: ``[-RES_MAX, RES_MAX]``, 1.0 = ``2**RES_FRAC_BITS``;
* weights: int8 range ``[-ACT_MAX, ACT_MAX]``; biases ``|b| <= BIAS_MAX``;
* rescaling is ``floor(x * 2**-s)`` (exact: power-of-two scaling of an integer < 2**24, then
  floor) followed by a clip;
* divisions are of non-negative integers, written so that a float32 quotient cannot be rounded
  across an integer (see :data:`PROB_BITS`) or done in int32.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np

from lmcodec.frequency_model import N_SYMBOLS, TOTAL, VOCAB_SIZE
from lmcodec.model import tables

ACT_MAX = 127
"""Activations and weights that enter a matmul lie in [-127, 127]."""
RES_MAX = (1 << 15) - 1
"""Residual stream bound (int16 range)."""
RES_FRAC_BITS = 8
"""Residual fixed point: the integer 256 stands for 1.0."""
BIAS_MAX = 1 << 21
"""Bound of every bias (linear layers)."""
POS_BIAS_MAX = 1 << 20
"""Bound of every entry of the relative-position score bias."""
FLOAT32_EXACT = 1 << 24
"""Every integer of magnitude <= 2**24 is exact in float32; we keep all values strictly below."""

NORM_SHIFT = 15
"""absmax norm: ``x = floor(r * INV[m] / 2**15)`` with ``INV[m] = floor(127 * 2**15 / m)``."""

ATT_EXP_BITS = 8
"""Attention weights before normalisation: ``e = round(2**8 * exp(-k / ATT_STEPS))``."""
ATT_STEPS = 16
"""Attention LUT resolution: 16 steps per nat."""
ATT_LUT_SIZE = 128
"""Entries of the attention exp table; the last ones are 0 (that is how masking works)."""
PROB_BITS = 10
"""Attention probabilities are ``p = floor(e * 2**10 / sum(e))``, so ``sum(p) <= 2**10``."""
MASK_VALUE = -float(1 << 23)
"""Score given to future positions (replacing, not added); after the max-shift it always lands
on the zero entry of the attention table."""

HID_FRAC_BITS = 6
"""FFN pre-activation fixed point: 64 stands for 1.0."""
HID_MAX = 511
"""FFN pre-activations are clipped to [-511, 511] (about [-8, 8]) and index the GELU table."""
GELU_OUT_SCALE = 16
"""GELU table output: ``round(16 * gelu(h / 64))`` clipped to [-127, 127]."""

OUT_EXP_BITS = 12
"""Output weights before normalisation: ``round(2**12 * exp(-k / OUT_STEPS))``."""
OUT_STEPS = 32
"""Output LUT resolution: 32 steps per nat."""
OUT_LUT_SIZE = 512
"""Entries of the output exp table (it reaches 0 after about 290 steps)."""
INIT_WEIGHT_STD = 22.6
"""Standard deviation of integer weights at initialisation (the int8 range is +-127)."""
FREQ_SPREAD = TOTAL - N_SYMBOLS
"""``f = 1 + floor(e * 65280 / sum(e))``; the remainder (< 256) goes to the most likely symbol."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of one model. Together with the integer weights it defines the model."""

    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 512
    context_length: int = 1024
    vocab_size: int = VOCAB_SIZE
    shift_qkv: int = 9
    """floor-shift after x @ Wqkv (int8 out)."""
    shift_att: int = 8
    """Scores are divided by 2**shift_att before indexing the attention table."""
    shift_attn_out: int = 5
    """floor-shift after o @ Wo (residual units out)."""
    shift_ff_in: int = 9
    """floor-shift after x @ W1 + b1 (HID units out)."""
    shift_ff_out: int = 7
    """floor-shift after gelu @ W2 (residual units out)."""
    shift_logits: int = 7
    """Logits are divided by 2**shift_logits before indexing the output table."""

    @classmethod
    def create(cls, d_model: int, n_layers: int, n_heads: int, d_ff: int, context_length: int) -> "ModelConfig":
        """A config whose shifts put activations at their intended scale at initialisation.

        Assumes absmax-normalised inputs of standard deviation about 42 (127 / 3) and weights of
        standard deviation :data:`INIT_WEIGHT_STD`; each shift is ``round(log2(acc_std / target))``.
        """

        def shift(fan_in: int, in_std: float, out_std: float) -> int:
            return max(0, round(math.log2(math.sqrt(fan_in) * in_std * INIT_WEIGHT_STD / out_std)))

        head_dim = d_model // n_heads
        return cls(
            d_model=d_model,
            n_layers=n_layers,
            n_heads=n_heads,
            d_ff=d_ff,
            context_length=context_length,
            shift_qkv=shift(d_model, 42, 42),
            # unit-variance attention logits: q.k / 2**shift / ATT_STEPS ~ 1
            shift_att=max(0, round(math.log2(math.sqrt(head_dim) * 42 * 42 / ATT_STEPS))),
            shift_attn_out=shift(d_model, 20, 128),
            shift_ff_in=shift(d_model, 42, 1 << HID_FRAC_BITS),
            shift_ff_out=shift(d_ff, 10, 128),
            shift_logits=shift(d_model, 42, OUT_STEPS),
        )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(**d)

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError("d_model must be a multiple of n_heads")
        check_bounds(self)


def inverse_norm_table() -> np.ndarray:
    """``INV[m] = floor(127 * 2**15 / m)`` for ``m`` in ``0..RES_MAX`` (``INV[0]`` unused: m >= 1).

    float32 ``[RES_MAX + 1]``; every entry < 2**22.
    """
    m = np.arange(RES_MAX + 1, dtype=np.int64)
    m[0] = 1
    return ((ACT_MAX << NORM_SHIFT) // m).astype(np.float32)


def attention_exp_table() -> np.ndarray:
    """``E[k] = round(2**8 * exp(-k / 16))``, float32 ``[128]``; ``E[0] = 256``, ``E[127] = 0``.

    A frozen literal (:mod:`lmcodec.model.tables`), never recomputed with float ``exp``.
    """
    return np.array(tables.ATTENTION_EXP, dtype=np.float32)


def output_exp_table() -> np.ndarray:
    """``E[k] = round(2**12 * exp(-k / 32))``, float32 ``[512]``; ``E[0] = 4096``, ``E[511] = 0``.

    A frozen literal (:mod:`lmcodec.model.tables`), never recomputed with float ``exp``.
    """
    return np.array(tables.OUTPUT_EXP, dtype=np.float32)


def gelu_table() -> np.ndarray:
    """``G[h + 511] = clip(round(16 * gelu(h / 64)), -127, 127)`` for h in [-511, 511], float32.

    ``gelu`` is the tanh approximation evaluated in float64 by numpy when the table was frozen:
    the entries at exact float64 ties (``h = 458, 462, ..., 506``) are rounded half to even, so
    six of them are one above the correctly rounded real value. The literal in
    :mod:`lmcodec.model.tables` is the definition (scripts/make_tables.py records its origin).
    """
    return np.array(tables.GELU, dtype=np.float32)


def _require(cond: bool, what: str) -> None:
    if not cond:
        raise ValueError(f"model config breaks an exactness bound: {what}")


def check_bounds(cfg: "ModelConfig") -> dict[str, int]:
    """Prove that every intermediate of ``cfg``'s forward pass stays below 2**24.

    Returns the worst-case magnitude of each intermediate (all < 2**24), for docs and tests.
    Worst cases use only the clip bounds of the operands, never observed values.
    """
    a = ACT_MAX
    w = ACT_MAX
    bounds = {
        # absmax norm: r * INV[m] with |r| <= m, INV[m] <= 127 * 2**15 / m
        "norm_product": a << NORM_SHIFT,
        # x @ Wqkv, K = d_model
        "qkv_acc": cfg.d_model * a * w,
        # q . k over head_dim, plus position bias, plus the mask value
        "scores": cfg.head_dim * a * a + POS_BIAS_MAX,
        "scores_shifted": cfg.head_dim * a * a + POS_BIAS_MAX + int(-MASK_VALUE),
        # sum of attention weights over up to context_length keys
        "exp_sum": cfg.context_length << ATT_EXP_BITS,
        # numerator of the probability division: 2 * e * 2**PROB_BITS + 1
        "prob_numerator": (2 << ATT_EXP_BITS << PROB_BITS) + 1,
        # p @ v: sum(p) <= 2**PROB_BITS
        "attn_acc": (1 << PROB_BITS) * a,
        # o @ Wo, K = d_model
        "attn_out_acc": cfg.d_model * a * w,
        # x @ W1 + b1
        "ff_in_acc": cfg.d_model * a * w + BIAS_MAX,
        # gelu @ W2, K = d_ff
        "ff_out_acc": cfg.d_ff * a * w,
        # residual add before clipping
        "residual_sum": 2 * RES_MAX,
        # x @ Wout + bout, and the max-shifted logits
        "logits": cfg.d_model * a * w + BIAS_MAX,
        "logits_shifted": 2 * (cfg.d_model * a * w + BIAS_MAX),
        # output exp sum over 256 symbols
        "out_exp_sum": N_SYMBOLS << OUT_EXP_BITS,
        # tie-break key e * 256 + (255 - symbol)
        "argmax_key": (1 << OUT_EXP_BITS) * N_SYMBOLS + N_SYMBOLS,
    }
    for name, value in bounds.items():
        _require(value < FLOAT32_EXACT, f"{name} can reach {value} >= 2**24")
    # The probability division p = floor((2a+1)/(2b)) is computed in float32: a float quotient
    # with relative error c * 2**-23 cannot cross an integer while (2a+1) * c < 2**23, since the
    # true quotient is at distance >= 1/(2b) from every integer. With (2a+1) <= 2**19 + 1 even
    # a 7-ulp division would be exact; IEEE division (0.5 ulp) has a wide margin.
    _require(bounds["prob_numerator"] * 8 < 1 << 23, "probability division margin")
    # The output normalisation e * 65280 / sum(e) runs in int32 (exact by definition).
    _require((1 << OUT_EXP_BITS) * FREQ_SPREAD < 1 << 31, "int32 frequency numerator")
    _require(cfg.context_length <= (1 << 16), "context length")
    # The attention table must be 0 at its end (masking) and the output table too.
    att, out = tables.ATTENTION_EXP, tables.OUTPUT_EXP
    _require(len(att) == ATT_LUT_SIZE and att[-1] == 0, "attention table ends at 0")
    _require(len(out) == OUT_LUT_SIZE and out[-1] == 0, "output table ends at 0")
    _require(len(tables.GELU) == 2 * HID_MAX + 1, "GELU table size")
    # Masked scores must land on the last (zero) attention entry.
    worst_gap = -MASK_VALUE - (cfg.head_dim * a * a + POS_BIAS_MAX)
    _require(worst_gap / (1 << cfg.shift_att) >= ATT_LUT_SIZE - 1, "mask reaches the zero entry")
    return bounds
