"""Quantization-aware training model (PyTorch; training only, never imported at run time).

With ``exact=True`` the forward pass computes *exactly* the integer semantics of
:mod:`lmcodec.model.reference` (same integers, bit for bit), while gradients flow through
float surrogates by straight-through estimators: ``floor``/``round`` pass the gradient
unchanged, table lookups (exp, GELU) pass the gradient of the function they tabulate.
``exact=False`` runs the surrogates alone (a float warm-up of the same network).

Float parameters map to integer weights by fixed power-of-two scales chosen from the fan-in
(:func:`weight_scale`), so :meth:`QATModel.to_integer_weights` is a rounding and a clip.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.utils.checkpoint
from torch import nn

from lmcodec.model.spec import (
    ACT_MAX,
    ATT_EXP_BITS,
    ATT_LUT_SIZE,
    ATT_STEPS,
    BIAS_MAX,
    GELU_OUT_SCALE,
    HID_FRAC_BITS,
    HID_MAX,
    INIT_WEIGHT_STD,
    MASK_VALUE,
    NORM_SHIFT,
    OUT_STEPS,
    POS_BIAS_MAX,
    PROB_BITS,
    RES_FRAC_BITS,
    RES_MAX,
    ModelConfig,
    attention_exp_table,
    gelu_table,
    inverse_norm_table,
)
from lmcodec.model.weights import IntegerWeights


def weight_scale(fan_in: int) -> float:
    """Power of two mapping a float weight to integer units: ``w_int = round(w * scale)``."""
    return 2.0 ** round(math.log2(INIT_WEIGHT_STD * math.sqrt(fan_in)))


def ste_floor(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.floor(x) - x).detach()


def ste_round(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def ste_replace(surrogate: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """Value of ``exact`` with the gradient of ``surrogate``."""
    return surrogate + (exact - surrogate).detach()


class QuantLinear(nn.Module):
    """``clip(floor((x @ W_int + b_int) / 2**shift))`` with int8 weights."""

    def __init__(self, fan_in: int, fan_out: int, shift: int, bound: float, bias_scale: float | None = None) -> None:
        super().__init__()
        self.scale = weight_scale(fan_in)
        self.weight = nn.Parameter(torch.randn(fan_in, fan_out) * (INIT_WEIGHT_STD / self.scale))
        self.bias = nn.Parameter(torch.zeros(fan_out)) if bias_scale is not None else None
        self.bias_scale = bias_scale
        self.shift = shift
        self.bound = bound

    def int_weight(self) -> torch.Tensor:
        return torch.clamp(ste_round(self.weight * self.scale), -ACT_MAX, ACT_MAX)

    def int_bias(self) -> torch.Tensor | None:
        if self.bias is None:
            return None
        return torch.clamp(ste_round(self.bias * self.bias_scale), -BIAS_MAX, BIAS_MAX)

    def accumulate(self, x: torch.Tensor) -> torch.Tensor:
        acc = x @ self.int_weight()
        bias = self.int_bias()
        return acc if bias is None else acc + bias

    def forward(self, x: torch.Tensor, exact: bool) -> torch.Tensor:
        y = self.accumulate(x) * 2.0 ** -self.shift
        return torch.clamp(ste_floor(y) if exact else y, -self.bound, self.bound)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.qkv = QuantLinear(cfg.d_model, 3 * cfg.d_model, cfg.shift_qkv, ACT_MAX)
        self.out = QuantLinear(cfg.d_model, cfg.d_model, cfg.shift_attn_out, RES_MAX)
        self.ff_in = QuantLinear(cfg.d_model, cfg.d_ff, cfg.shift_ff_in, HID_MAX, bias_scale=2.0 ** (cfg.shift_ff_in + HID_FRAC_BITS))
        self.ff_out = QuantLinear(cfg.d_ff, cfg.d_model, cfg.shift_ff_out, RES_MAX)
        # relative-position score bias in nats, initialised as ALiBi (slopes 2**(-8 h / H))
        slopes = torch.tensor([2.0 ** (-8.0 * (h + 1) / cfg.n_heads) for h in range(cfg.n_heads)])
        distance = torch.arange(cfg.context_length, dtype=torch.float32)
        self.pos_bias = nn.Parameter(-slopes[:, None] * distance[None, :])
        self.pos_scale = 2.0 ** cfg.shift_att * ATT_STEPS

    def int_pos_bias(self) -> torch.Tensor:
        return torch.clamp(ste_round(self.pos_bias * self.pos_scale), -POS_BIAS_MAX, POS_BIAS_MAX)


class QATModel(nn.Module):
    """The byte Transformer with integer forward semantics (see module docstring)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Parameter(torch.randn(cfg.vocab_size, cfg.d_model))
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.head = QuantLinear(cfg.d_model, 256, 0, float("inf"), bias_scale=2.0 ** cfg.shift_logits * OUT_STEPS)
        with torch.no_grad():  # start near the uniform distribution (8 bits/byte)
            self.head.weight.mul_(0.25)
        self.register_buffer("inv_table", torch.from_numpy(inverse_norm_table()), persistent=False)
        self.register_buffer("att_table", torch.from_numpy(attention_exp_table()), persistent=False)
        self.register_buffer("gelu_lut", torch.from_numpy(gelu_table()), persistent=False)

    # -- integer building blocks ------------------------------------------------------------
    def int_embed(self) -> torch.Tensor:
        return torch.clamp(ste_round(self.embed * 2.0**RES_FRAC_BITS), -RES_MAX, RES_MAX)

    def absmax_norm(self, r: torch.Tensor, exact: bool) -> torch.Tensor:
        m = torch.clamp(r.detach().abs().amax(dim=-1, keepdim=True), min=1.0)
        if exact:
            return ste_floor(r * self.inv_table[m.long()] * 2.0**-NORM_SHIFT)
        return r * (ACT_MAX / m)

    def attention_probs(self, scores: torch.Tensor, allowed: torch.Tensor, exact: bool) -> torch.Tensor:
        scores = torch.where(allowed, scores, torch.full_like(scores, MASK_VALUE))
        z = scores.detach().amax(dim=-1, keepdim=True) - scores
        step = 2.0 ** -self.cfg.shift_att
        e = (1 << ATT_EXP_BITS) * torch.exp(-z * (step / ATT_STEPS))
        if not exact:
            return e * (1 << PROB_BITS) / e.sum(dim=-1, keepdim=True)
        index = torch.clamp(torch.floor(z.detach() * step), max=ATT_LUT_SIZE - 1).long()
        e_int = self.att_table[index]
        e = ste_replace(e, e_int)
        p = e * (1 << PROB_BITS) / e.sum(dim=-1, keepdim=True)
        p_int = torch.floor((e_int * (2 << PROB_BITS) + 1) / (2 * e_int.sum(dim=-1, keepdim=True)))
        return ste_replace(p, p_int)

    def gelu(self, hid: torch.Tensor, exact: bool) -> torch.Tensor:
        g = GELU_OUT_SCALE * nn.functional.gelu(hid * 2.0**-HID_FRAC_BITS, approximate="tanh")
        if not exact:
            return g
        return ste_replace(g, self.gelu_lut[(hid.detach() + HID_MAX).long()])

    def block(self, block: Block, r: torch.Tensor, dist: torch.Tensor, allowed: torch.Tensor, exact: bool) -> torch.Tensor:
        """One Transformer block on the residual stream ``r`` ``[B, n, D]``."""
        cfg = self.cfg
        b, n, _ = r.shape
        qkv = block.qkv(self.absmax_norm(r, exact), exact)
        q, k, v = qkv.view(b, n, 3, cfg.n_heads, cfg.head_dim).permute(2, 0, 3, 1, 4)
        bias = block.int_pos_bias() if exact else block.pos_bias * block.pos_scale
        scores = q @ k.transpose(-1, -2) + bias[:, dist]
        o = self.attention_probs(scores, allowed, exact) @ v * 2.0**-PROB_BITS
        o = (ste_floor(o) if exact else o).transpose(1, 2).reshape(b, n, cfg.d_model)
        r = torch.clamp(r + block.out(o, exact), -RES_MAX, RES_MAX)
        hid = block.ff_in(self.absmax_norm(r, exact), exact)
        return torch.clamp(r + block.ff_out(self.gelu(hid, exact), exact), -RES_MAX, RES_MAX)

    def forward(self, tokens: torch.Tensor, exact: bool = True, recompute: bool = False) -> torch.Tensor:
        """Integer logits ``[B, n, 256]`` (exact: the integers of the reference; scale to nats
        with :meth:`logits_to_nats`). ``recompute`` trades compute for memory in training
        (activation checkpointing per block); it does not change the result."""
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        dist = pos[:, None] - pos[None, :]
        allowed = dist >= 0
        dist = dist.clamp(min=0)
        r = self.int_embed()[tokens] if exact else self.embed[tokens] * 2.0**RES_FRAC_BITS
        for block in self.blocks:
            if recompute and self.training:
                r = torch.utils.checkpoint.checkpoint(self.block, block, r, dist, allowed, exact, use_reentrant=False)
            else:
                r = self.block(block, r, dist, allowed, exact)
        return self.head.accumulate(self.absmax_norm(r, exact))

    def logits_to_nats(self, logits: torch.Tensor) -> torch.Tensor:
        return logits * (2.0**-self.cfg.shift_logits / OUT_STEPS)

    # -- export and import -------------------------------------------------------------------
    @classmethod
    @torch.no_grad()
    def from_integer_weights(cls, weights: IntegerWeights) -> "QATModel":
        """The model whose :meth:`to_integer_weights` gives back ``weights`` exactly (each float
        parameter is its integer divided by its scale), e.g. to fine-tune a shipped model."""
        model = cls(weights.config)

        def load(param: torch.Tensor, name: str, scale: float) -> None:
            param.copy_(torch.from_numpy(weights[name].astype(np.float64) / scale).to(param.dtype))

        load(model.embed, "embed", 2.0**RES_FRAC_BITS)
        for i, block in enumerate(model.blocks):
            load(block.pos_bias, f"l{i}.pos_bias", block.pos_scale)
            for linear, name in ((block.qkv, "wqkv"), (block.out, "wo"), (block.ff_in, "w1"), (block.ff_out, "w2")):
                load(linear.weight, f"l{i}.{name}", linear.scale)
            load(block.ff_in.bias, f"l{i}.b1", block.ff_in.bias_scale)
        load(model.head.weight, "w_out", model.head.scale)
        load(model.head.bias, "b_out", model.head.bias_scale)
        return model

    @torch.no_grad()
    def to_integer_weights(self) -> IntegerWeights:
        def as_int(t: torch.Tensor) -> np.ndarray:
            return t.detach().cpu().numpy().astype(np.int32)

        tensors = {"embed": as_int(self.int_embed())}
        for i, block in enumerate(self.blocks):
            tensors[f"l{i}.pos_bias"] = as_int(block.int_pos_bias())
            tensors[f"l{i}.wqkv"] = as_int(block.qkv.int_weight())
            tensors[f"l{i}.wo"] = as_int(block.out.int_weight())
            tensors[f"l{i}.w1"] = as_int(block.ff_in.int_weight())
            tensors[f"l{i}.b1"] = as_int(block.ff_in.int_bias())
            tensors[f"l{i}.w2"] = as_int(block.ff_out.int_weight())
        tensors["w_out"] = as_int(self.head.int_weight())
        tensors["b_out"] = as_int(self.head.int_bias())
        return IntegerWeights(self.cfg, tensors)
