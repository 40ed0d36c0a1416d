"""ONNX export: the full-sequence graph (encode path) and the incremental step graph with a KV
cache (decode path), both built from the same :class:`IntegerWeights`.

Only exact float32 operations on integer values appear: MatMul/Add/Sub/Mul by powers of two,
Floor, Clip, Min/Max, ReduceMax/ReduceSum, Gather (lookup tables), one float Div written so it
cannot round across an integer, and an int32 Div for the final normalisation. No int8 kernels
(MatMulInteger/QLinear*), no Softmax/Exp/Erf/Sqrt/LayerNormalization.

Graph interfaces (opset 17)::

    full:  tokens int64 [B, n]                      -> freqs int32 [B, n, 256]
    step:  token int64 [B], pos int64 [],            -> freqs int32 [B, 256],
           past_k int8 [pos, L, B, H, Dh],              new_k int8 [L, B, H, Dh],
           past_v int8 [pos, L, B, H, Dh]               new_v int8 [L, B, H, Dh]

``pos`` is the index of ``token`` in its segment; ``past_*[j]`` holds the keys/values of position
``j < pos``. The cache is position-major so that a runtime can pass ``cache[:pos]`` of a
pre-allocated buffer without a copy and write ``new_*`` into ``cache[pos]``.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lmcodec.frequency_model import N_SYMBOLS
from lmcodec.model.spec import (
    ACT_MAX,
    ATT_LUT_SIZE,
    FREQ_SPREAD,
    HID_MAX,
    MASK_VALUE,
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

OPSET = 17


class _GraphBuilder:
    """Accumulates nodes and initializers; every helper returns the name of its output."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._consts: dict[tuple, str] = {}
        self._count = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def op(self, op_type: str, *inputs: str, hint: str | None = None, **attrs) -> str:
        out = self._name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def tensor(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def const(self, value, dtype=np.float32) -> str:
        array = np.asarray(value, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._consts:
            self._consts[key] = self.tensor(self._name("c"), array)
        return self._consts[key]

    # -- exact integer building blocks ------------------------------------------------------
    def shift_floor(self, x: str, shift: int) -> str:
        """floor(x / 2**shift): a power-of-two scaling is exact, then Floor."""
        return self.op("Floor", self.op("Mul", x, self.const(2.0 ** -shift)))

    def clip(self, x: str, bound: float) -> str:
        return self.op("Clip", x, self.const(-bound), self.const(bound))

    def lookup(self, table: str, index_float: str) -> str:
        """table[index] for a float tensor holding non-negative in-range integers."""
        return self.op("Gather", table, self.op("Cast", index_float, to=TensorProto.INT64))

    def reduce_max(self, x: str) -> str:
        return self.op("ReduceMax", x, axes=[-1], keepdims=1)

    def reduce_sum(self, x: str) -> str:
        return self.op("ReduceSum", x, self.const([-1], np.int64), keepdims=1)


class _ModelGraph:
    """The layers of the model, expressed once for both graphs."""

    def __init__(self, g: _GraphBuilder, weights: IntegerWeights) -> None:
        self.g = g
        self.w = weights
        self.cfg = weights.config
        self.inv = g.tensor("lut_inverse_norm", inverse_norm_table())
        self.att_exp = g.tensor("lut_attention_exp", attention_exp_table())
        self.out_exp = g.tensor("lut_output_exp", output_exp_table())
        self.gelu = g.tensor("lut_gelu", gelu_table())

    def param(self, name: str) -> str:
        return self.g.tensor(name, self.w[name].astype(np.float32))

    def absmax_norm(self, r: str) -> str:
        g = self.g
        m = g.op("Max", g.reduce_max(g.op("Abs", r)), g.const(1.0))
        return g.shift_floor(g.op("Mul", r, g.lookup(self.inv, m)), NORM_SHIFT)

    def linear(self, x: str, weight: str, shift: int, bound: float, bias: str | None = None) -> str:
        g = self.g
        acc = g.op("MatMul", x, self.param(weight))
        if bias is not None:
            acc = g.op("Add", acc, self.param(bias))
        return g.clip(g.shift_floor(acc, shift), bound)

    def attention_probs(self, scores: str) -> str:
        """Integer softmax over the last axis: floor(e * 2**10 / sum(e)) as
        floor((2 * e * 2**10 + 1) / (2 * sum(e))), a float quotient that is never an integer."""
        g = self.g
        z = g.op("Sub", g.reduce_max(scores), scores)
        index = g.op("Min", g.op("Floor", g.op("Mul", z, g.const(2.0 ** -self.cfg.shift_att))), g.const(ATT_LUT_SIZE - 1.0))
        e = g.lookup(self.att_exp, index)
        numerator = g.op("Add", g.op("Mul", e, g.const(2.0 ** (PROB_BITS + 1))), g.const(1.0))
        denominator = g.op("Mul", g.reduce_sum(e), g.const(2.0))
        return g.op("Floor", g.op("Div", numerator, denominator))

    def residual_add(self, r: str, delta: str) -> str:
        return self.g.clip(self.g.op("Add", r, delta), RES_MAX)

    def feed_forward(self, r: str, layer: int) -> str:
        g = self.g
        hid = self.linear(self.absmax_norm(r), f"l{layer}.w1", self.cfg.shift_ff_in, HID_MAX, bias=f"l{layer}.b1")
        act = g.lookup(self.gelu, g.op("Add", hid, g.const(float(HID_MAX))))
        return self.residual_add(r, self.linear(act, f"l{layer}.w2", self.cfg.shift_ff_out, RES_MAX))

    def attention_output(self, r: str, o: str, layer: int) -> str:
        """o: [B, n, D] heads' outputs already rescaled to int8."""
        return self.residual_add(r, self.linear(o, f"l{layer}.wo", self.cfg.shift_attn_out, RES_MAX))

    def frequencies(self, r: str) -> str:
        """Final norm, logits and the integer frequency table (int32, rows sum to 2**16)."""
        g = self.g
        logits = g.op("Add", g.op("MatMul", self.absmax_norm(r), self.param("w_out")), self.param("b_out"))
        z = g.op("Sub", g.reduce_max(logits), logits)
        index = g.op("Min", g.op("Floor", g.op("Mul", z, g.const(2.0 ** -self.cfg.shift_logits))), g.const(OUT_LUT_SIZE - 1.0))
        e = g.lookup(self.out_exp, index)
        # the most likely symbol (lowest index on ties) gets the rounding remainder
        key = g.op("Add", g.op("Mul", e, g.const(float(N_SYMBOLS))), g.const(np.arange(N_SYMBOLS - 1, -1, -1)))
        top = g.op("Cast", g.op("Equal", key, g.reduce_max(key)), to=TensorProto.FLOAT)
        e_int = g.op("Cast", e, to=TensorProto.INT32)
        total = g.op("Cast", g.reduce_sum(e), to=TensorProto.INT32)
        share = g.op("Cast", g.op("Div", g.op("Mul", e_int, g.const(FREQ_SPREAD, np.int32)), total), to=TensorProto.FLOAT)
        remainder = g.op("Sub", g.const(float(FREQ_SPREAD)), g.reduce_sum(share))
        freqs = g.op("Add", g.op("Add", share, g.const(1.0)), g.op("Mul", top, remainder))
        return g.op("Cast", freqs, to=TensorProto.INT32)


def _finish(g: _GraphBuilder, name: str, inputs: list, outputs: list, weights: IntegerWeights) -> onnx.ModelProto:
    graph = helper.make_graph(g.nodes, name, inputs, outputs, g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="lmcodec")
    model.ir_version = 8
    helper.set_model_props(model, {"lmcodec_config": weights.config.to_json(), "lmcodec_graph": name})
    onnx.checker.check_model(model)
    return model


def build_full_graph(weights: IntegerWeights) -> onnx.ModelProto:
    """All positions of a batch of segments at once (causal), for encoding."""
    g = _GraphBuilder()
    m = _ModelGraph(g, weights)
    cfg = weights.config
    h, dh, d = cfg.n_heads, cfg.head_dim, cfg.d_model
    tokens = "tokens"
    n = g.op("Gather", g.op("Shape", tokens), g.const(1, np.int64), axis=0)
    positions = g.op("Range", g.const(0, np.int64), n, g.const(1, np.int64))
    dist = g.op("Sub", g.op("Unsqueeze", positions, g.const([1], np.int64)), g.op("Unsqueeze", positions, g.const([0], np.int64)))
    allowed = g.op("GreaterOrEqual", dist, g.const(0, np.int64))
    dist = g.op("Where", allowed, dist, g.const(0, np.int64))  # [n, n], i - j on and below the diagonal
    r = g.op("Gather", m.param("embed"), tokens)  # [B, n, D]
    for layer in range(cfg.n_layers):
        qkv = m.linear(m.absmax_norm(r), f"l{layer}.wqkv", cfg.shift_qkv, ACT_MAX)
        qkv = g.op("Transpose", g.op("Reshape", qkv, g.const([0, 0, 3, h, dh], np.int64)), perm=[2, 0, 3, 1, 4])
        q, k, v = (g.op("Gather", qkv, g.const(j, np.int64), axis=0) for j in range(3))  # [B, H, n, Dh]
        scores = g.op("MatMul", q, g.op("Transpose", k, perm=[0, 1, 3, 2]))
        scores = g.op("Add", scores, g.op("Gather", m.param(f"l{layer}.pos_bias"), dist, axis=1))
        scores = g.op("Where", allowed, scores, g.const(MASK_VALUE))
        o = g.shift_floor(g.op("MatMul", m.attention_probs(scores), v), PROB_BITS)
        o = g.op("Reshape", g.op("Transpose", o, perm=[0, 2, 1, 3]), g.const([0, 0, d], np.int64))
        r = m.feed_forward(m.attention_output(r, o, layer), layer)
    freqs = m.frequencies(r)
    g.nodes.append(helper.make_node("Identity", [freqs], ["freqs"]))
    inputs = [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["B", "n"])]
    outputs = [helper.make_tensor_value_info("freqs", TensorProto.INT32, ["B", "n", N_SYMBOLS])]
    return _finish(g, "lmcodec_full", inputs, outputs, weights)


def build_step_graph(weights: IntegerWeights) -> onnx.ModelProto:
    """One position for every lane, attending to a KV cache of the earlier positions."""
    g = _GraphBuilder()
    m = _ModelGraph(g, weights)
    cfg = weights.config
    h, dh, d, n_layers = cfg.n_heads, cfg.head_dim, cfg.d_model, cfg.n_layers
    keys_count = g.op("Add", "pos", g.const(1, np.int64))
    dist = g.op("Sub", "pos", g.op("Range", g.const(0, np.int64), keys_count, g.const(1, np.int64)))  # [pos+1]
    r = g.op("Gather", m.param("embed"), g.op("Unsqueeze", "token", g.const([1], np.int64)))  # [B, 1, D]
    new_k, new_v = [], []
    for layer in range(n_layers):
        qkv = m.linear(m.absmax_norm(r), f"l{layer}.wqkv", cfg.shift_qkv, ACT_MAX)
        qkv = g.op("Reshape", qkv, g.const([0, 3, h, dh], np.int64))  # [B, 3, H, Dh]
        q, k, v = (g.op("Gather", qkv, g.const(j, np.int64), axis=1) for j in range(3))  # [B, H, Dh]
        new_k.append(g.op("Unsqueeze", k, g.const([0], np.int64)))
        new_v.append(g.op("Unsqueeze", v, g.const([0], np.int64)))
        past_k = g.op("Cast", g.op("Gather", "past_k", g.const(layer, np.int64), axis=1), to=TensorProto.FLOAT)
        past_v = g.op("Cast", g.op("Gather", "past_v", g.const(layer, np.int64), axis=1), to=TensorProto.FLOAT)
        keys = g.op("Transpose", g.op("Concat", past_k, new_k[-1], axis=0), perm=[1, 2, 3, 0])  # [B, H, Dh, pos+1]
        values = g.op("Transpose", g.op("Concat", past_v, new_v[-1], axis=0), perm=[1, 2, 0, 3])  # [B, H, pos+1, Dh]
        scores = g.op("MatMul", g.op("Unsqueeze", q, g.const([2], np.int64)), keys)  # [B, H, 1, pos+1]
        bias = g.op("Gather", m.param(f"l{layer}.pos_bias"), dist, axis=1)  # [H, pos+1]
        scores = g.op("Add", scores, g.op("Unsqueeze", bias, g.const([0, 2], np.int64)))
        o = g.shift_floor(g.op("MatMul", m.attention_probs(scores), values), PROB_BITS)  # [B, H, 1, Dh]
        o = g.op("Reshape", o, g.const([0, 1, d], np.int64))
        r = m.feed_forward(m.attention_output(r, o, layer), layer)
    freqs = g.op("Reshape", m.frequencies(r), g.const([0, N_SYMBOLS], np.int64))
    g.nodes.append(helper.make_node("Identity", [freqs], ["freqs"]))
    for name, parts in (("new_k", new_k), ("new_v", new_v)):
        stacked = g.op("Concat", *parts, axis=0) if n_layers > 1 else parts[0]
        g.nodes.append(helper.make_node("Cast", [stacked], [name], to=TensorProto.INT8))
    cache_shape = ["pos", n_layers, "B", h, dh]
    inputs = [
        helper.make_tensor_value_info("token", TensorProto.INT64, ["B"]),
        helper.make_tensor_value_info("pos", TensorProto.INT64, []),
        helper.make_tensor_value_info("past_k", TensorProto.INT8, cache_shape),
        helper.make_tensor_value_info("past_v", TensorProto.INT8, cache_shape),
    ]
    outputs = [
        helper.make_tensor_value_info("freqs", TensorProto.INT32, ["B", N_SYMBOLS]),
        helper.make_tensor_value_info("new_k", TensorProto.INT8, [n_layers, "B", h, dh]),
        helper.make_tensor_value_info("new_v", TensorProto.INT8, [n_layers, "B", h, dh]),
    ]
    return _finish(g, "lmcodec_step", inputs, outputs, weights)
