"""ONNX export: the full-sequence graph (encode path) and the incremental step graph with a KV
cache (decode path), both built from the same :class:`IntegerWeights`.

Only exact operations on integer values appear: float32 MatMul/Add/Sub/Max/Min/Clip/Floor,
ReduceMax/ReduceSum, Mul by powers of two, rank-1 GatherElements (lookup tables), Gather
(embedding rows, per-position norm factors, a layer's position biases), one float32 Div, Cast,
int64 shape arithmetic (Shape, Range, ReduceProd), and data movement (Slice, Split, Concat,
Reshape, Transpose); graphs built with ``output="freqs"`` add the table tail (a
float64 Div, ArgMin, ScatterElements). No int8 kernels (MatMulInteger/QLinear*), no
Softmax/Exp/Erf/Sqrt/LayerNormalization.
docs/performance.md explains the speed-related choices.

Graph interfaces (opset 17; ``L`` layers, ``H`` heads, ``Dh`` head width)::

    full:  tokens int64 [B, n]  ->  gaps int32 [B, n, 256]

    step:  token   int64   [B]                     ->  gaps int32    [B, 256]
           pos     int64   []                          new_k float32 [L, B, H, Dh]
           past_k{l} float32 [nb, B, H, Dh, blk]       new_v float32 [L, B, H, Dh]
           past_v{l} float32 [nb, B, H, blk, Dh]       (one past_k/past_v pair per layer l)

``gaps`` are the output-table indices ``min(floor((max - logit) / 2**shift_logits), 511)`` of
every entry: the runtime turns them into the frequency tables with exact integer arithmetic
(:func:`lmcodec.runtime.tables_from_gaps`, measured faster than the same dozen elementwise
operators in onnxruntime). Graphs exported before this change output the tables (``freqs``,
same shapes) instead; the runtime accepts both.

``pos`` is the index of ``token`` in its segment. The cache is *block-major*: position ``j``
lives in block ``j // blk`` at offset ``j % blk`` (keys stored transposed, ready for
``q @ K``), so a runtime keeps one pre-allocated buffer per layer and passes its first
``nb = pos // blk + 1`` blocks, a contiguous prefix, without any copy; it then writes ``new_*``
at position ``pos``. Cache slots at positions ``>= pos`` (not yet written, or left over from an
earlier segment) are masked, so their content only has to be finite values in the int8 range.
The block size ``blk`` is the runtime's choice (any value >= 1; it does not change the output).

Exactness argument, in short (docs/model.md has the bound proof of the integer semantics)
-------------------------------------------------------------------------------------------
Every tensor holds integers, or integers times a fixed power of two ``2**-k`` ("dyadic"
values). float32 represents ``m * 2**-k`` exactly for ``|m| < 2**24``, and a sum of such values
with the same ``k`` is exact whenever every partial sum's ``|m|`` stays below ``2**24`` — which
:func:`lmcodec.model.spec.check_bounds` proves for the integers, whatever the summation order.
So scaling a weight matrix by ``2**-s`` turns ``floor((x @ W) / 2**s)`` into
``Floor(MatMul(x, W * 2**-s))`` with the same bounds and no extra pass; the same folding is
used for the attention and output shifts. :func:`graph_bounds` checks the few bounds that are
specific to this graph (additive causal mask, lookup-table lengths, offset GELU index).

* float -> int ``Cast`` truncates toward zero (ONNX/onnxruntime ``static_cast`` semantics), so on
  a non-negative value it *is* ``floor``; it is only applied to non-negative values.
* ``floor(a / b)`` for integers ``0 <= a < 2**24`` and ``b >= 1`` is ``Floor(Div(a, b))`` in
  float32 with IEEE (correctly rounded) division: if ``a/b`` is an integer it is representable
  and returned exactly; otherwise it is at least ``1/b`` away from every integer while the
  rounding error is at most ``2**-24 * a/b < 1/b``. The same argument in float64 covers
  ``a < 2**53``.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lmcodec.frequency_model import N_SYMBOLS
from lmcodec.model.spec import (
    ACT_MAX,
    ATT_LUT_SIZE,
    BIAS_MAX,
    FLOAT32_EXACT,
    FREQ_SPREAD,
    HID_MAX,
    NORM_SHIFT,
    OUT_LUT_SIZE,
    POS_BIAS_MAX,
    PROB_BITS,
    RES_MAX,
    ModelConfig,
    attention_exp_table,
    gelu_table,
    inverse_norm_table,
    output_exp_table,
)
from lmcodec.model.weights import IntegerWeights

OPSET = 17

ADDITIVE_MASK = -float(1 << 23)
"""Added (instead of the position bias) to the scores of future / unwritten positions. Any
allowed score exceeds any masked one, so the row maximum is an allowed score, and a masked
score's distance to it indexes a zero entry of the attention table (see :func:`graph_bounds`)."""

MAX_LUT_ENTRIES = 1 << 16
"""Longest "wide" lookup table: a table that covers every reachable index needs no clamp."""


def graph_bounds(cfg: ModelConfig) -> dict[str, int]:
    """Bounds (beyond :func:`~lmcodec.model.spec.check_bounds`) that the graphs rely on.

    Returns the table lengths and worst magnitudes; raises ValueError if one is violated.
    """
    qk = cfg.head_dim * ACT_MAX * ACT_MAX  # |q . k|
    allowed_max = qk + POS_BIAS_MAX  # |allowed score|
    masked_max = qk - int(ADDITIVE_MASK)  # masked score lies in [-masked_max, qk + mask]
    logits = cfg.d_model * ACT_MAX * ACT_MAX + BIAS_MAX
    hid = cfg.d_model * ACT_MAX * ACT_MAX + BIAS_MAX
    out = {
        # z = rowmax - score over allowed and masked scores
        "attention_z": allowed_max + masked_max,
        # a masked score is at least this far below the (allowed) row maximum
        "attention_masked_gap": -int(ADDITIVE_MASK) - qk - allowed_max,
        "output_z": 2 * logits,
        # FFN pre-activation offset by HID_MAX * 2**shift so that the table index is >= 0
        "ffn_offset_acc": hid + (HID_MAX << cfg.shift_ff_in),
    }
    for name in ("attention_z", "output_z", "ffn_offset_acc"):
        if out[name] >= FLOAT32_EXACT:
            raise ValueError(f"model config breaks a graph bound: {name} can reach {out[name]} >= 2**24")
    if qk - int(-ADDITIVE_MASK) >= -allowed_max:
        raise ValueError("model config breaks a graph bound: masked scores can reach allowed ones")
    if out["attention_masked_gap"] >> cfg.shift_att < ATT_LUT_SIZE - 1:
        raise ValueError("model config breaks a graph bound: masked scores miss the zero table entry")
    out["attention_lut"] = (out["attention_z"] >> cfg.shift_att) + 1
    out["output_lut"] = (out["output_z"] >> cfg.shift_logits) + 1
    return out


def _wide_table(table: np.ndarray, length: int) -> np.ndarray:
    """``table[min(k, len(table) - 1)]`` for ``k < length``: a clamp baked into the table."""
    if length <= len(table):
        return table[:length].copy()
    return np.concatenate([table, np.full(length - len(table), table[-1], dtype=table.dtype)])


class _GraphBuilder:
    """Accumulates nodes and initializers; every helper returns the name of its output."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._consts: dict[tuple, str] = {}
        self._count = 0
        self._tensor_names: set[str] = set()

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def op(self, op_type: str, *inputs: str, hint: str | None = None, outputs: int = 1, **attrs):
        names = [self._name(hint or op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, **attrs))
        return names[0] if outputs == 1 else names

    def tensor(self, name: str, array: np.ndarray) -> str:
        """An initializer; adding the same name again reuses the first one."""
        if name not in self._tensor_names:
            self._tensor_names.add(name)
            self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def const(self, value, dtype=np.float32) -> str:
        array = np.asarray(value, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._consts:
            self._consts[key] = self.tensor(self._name("c"), array)
        return self._consts[key]

    def ints(self, *values: int) -> str:
        return self.const(list(values), np.int64)

    def scalar_index(self, value: int) -> str:
        """A 0-d int64 initializer: Gather with it drops the gathered axis (:meth:`const` stores
        scalars as 1-element vectors)."""
        name = self._name("index")
        self.initializers.append(numpy_helper.from_array(np.array(value, dtype=np.int64), name))
        return name

    # -- exact integer building blocks ------------------------------------------------------
    def scale(self, x: str, shift: int) -> str:
        """``x * 2**-shift``: exact for dyadic values (no rounding, the mantissa is kept)."""
        return self.op("Mul", x, self.const(2.0 ** -shift))

    def clip(self, x: str, low: float, high: float) -> str:
        return self.op("Clip", x, self.const(low), self.const(high))

    def lookup(self, table: str, index: str, shape: tuple[int, ...] | None = None) -> str:
        """``table[index]`` elementwise for an int32 index tensor of any shape.

        GatherElements on the flattened index: onnxruntime's rank-1 GatherElements is a plain
        loop (about 2 ns per element here) while Gather copies one element per memcpy (about
        12 ns); the two Reshapes are free. ``shape``: the index's shape as Reshape constants
        (at most one ``-1``) where the graph knows it, which saves a Shape node.
        """
        flat = self.op("GatherElements", table, self.op("Reshape", index, self.ints(-1)), axis=0)
        target = self.ints(*shape) if shape is not None else self.op("Shape", index)
        return self.op("Reshape", flat, target, allowzero=int(shape is None))  # empty pieces stay empty

    def floor_index(self, x: str) -> str:
        """int32 ``floor(x)`` of a non-negative float tensor (Cast truncates toward zero)."""
        return self.op("Cast", x, to=TensorProto.INT32)

    def reduce_max(self, x: str, axes=(-1,)) -> str:
        return self.op("ReduceMax", x, axes=list(axes), keepdims=1)

    def reduce_sum(self, x: str, axes=(-1,), keepdims: int = 1) -> str:
        return self.op("ReduceSum", x, self.ints(*axes), keepdims=keepdims)

    def dim(self, x: str, axis: int) -> str:
        """Length of ``x`` along ``axis`` as an int64 ``[1]`` tensor."""
        return self.op("Gather", self.op("Shape", x), self.ints(axis), axis=0)


class _ModelGraph:
    """The layers of the model, expressed once for both graphs.

    Full graph (``single_position=False``): activations ``[B, n, D]``, attention tensors
    ``[B, H, n, ...]``. Step graph (``single_position=True``): activations ``[B, D]``, per-head
    tensors ``[1, B, H, 1, Dh]`` (the layout of the cache's leading block axis, so that no
    Unsqueeze/Squeeze/Transpose is needed around the attention). A decode step pays a fixed cost
    per onnxruntime node (0.3-0.5 us here), so the step graph avoids every node it can.
    """

    def __init__(self, g: _GraphBuilder, weights: IntegerWeights, single_position: bool = False) -> None:
        self.g = g
        self.single = single_position
        self.w = weights
        self.cfg = cfg = weights.config
        self.bounds = graph_bounds(cfg)
        # INV[m] * 2**-15: the norm's product r * INV[m] < 2**22 is an integer, so the scaled
        # product is exact; INV[0] = INV[1] stands for max(m, 1).
        self.inv = g.tensor("lut_inverse_norm", inverse_norm_table() * np.float32(2.0 ** -NORM_SHIFT))
        att = attention_exp_table() * np.float32(1 << PROB_BITS)  # e * 2**10 <= 2**18
        self.att_clamp = self.bounds["attention_lut"] > MAX_LUT_ENTRIES
        self.att_exp = g.tensor("lut_attention_exp", att if self.att_clamp else _wide_table(att, self.bounds["attention_lut"]))
        out = output_exp_table().astype(np.float64) * FREQ_SPREAD  # e * 65280 < 2**28, exact in float64
        self.out_clamp = self.bounds["output_lut"] > MAX_LUT_ENTRIES
        self.out_exp = g.tensor("lut_output_exp", out if self.out_clamp else _wide_table(out, self.bounds["output_lut"]))
        self.gelu = g.tensor("lut_gelu", gelu_table())

    def param(self, name: str, shift: int = 0, offset: float = 0.0) -> str:
        """Weight ``(w + offset) * 2**-shift`` as float32 (exact: integers < 2**24, dyadic)."""
        value = (self.w[name].astype(np.float64) + offset) * 2.0 ** -shift
        return self.g.tensor(name, value.astype(np.float32))

    # -- blocks -------------------------------------------------------------------------------
    def absmax_norm(self, r: str) -> str:
        """``floor(r * INV[max|r|] / 2**15)`` in [-127, 127], one row per position."""
        g = self.g
        m = g.floor_index(g.reduce_max(g.op("Abs", r)))  # an integer already: the cast is exact
        return g.op("Floor", g.op("Mul", r, g.op("Gather", self.inv, m)))

    def affine(self, x: str, weight: str, bias: str, width: int) -> str:
        """``x @ W + b`` on ``[B, n, K]`` (flattened to 2-D) or ``[B, K]``, so that onnxruntime
        fuses the MatMul and the Add into one Gemm (the bias initialises the accumulator: the
        partial sums stay within the same bound ``|x @ W| + |b|``)."""
        g = self.g
        if self.single:
            return g.op("Add", g.op("MatMul", x, weight), bias)
        out_shape = g.op("Concat", g.op("Slice", g.op("Shape", x), g.ints(0), g.ints(2)), g.ints(-1), axis=0)  # [B, n, -1]
        acc = g.op("Add", g.op("MatMul", g.op("Reshape", x, g.ints(-1, width)), weight), bias)
        return g.op("Reshape", acc, out_shape)

    def linear(self, x: str, weight: str, shift: int, bound: float) -> str:
        """``clip(floor((x @ W) / 2**shift), -bound, bound)``."""
        g = self.g
        return g.clip(g.op("Floor", g.op("MatMul", x, self.param(weight, shift))), -bound, bound)

    def residual_add(self, r: str, delta: str) -> str:
        return self.g.clip(self.g.op("Add", r, delta), -RES_MAX, RES_MAX)

    def qkv(self, r: str, layer: int) -> tuple[str, str, str]:
        """Per-head q (scaled by ``2**-shift_att``), k, v: ``[B, H, n, Dh]`` each (step graph:
        ``[1, B, H, 1, Dh]``).

        The weight's columns are regrouped per head as (q | k | v) of head 0, then head 1, ...
        (taken from the (q | k | v, head-major) weight). For ``n`` positions,
        ``x [B, 1, n, D] @ W [H, D, 3 Dh]`` yields the heads directly (no Transpose); for a
        single position (step graph) one 2-D product ``[B, D] @ [D, H * 3 Dh]`` followed by a
        free Reshape avoids ``B * H`` tiny products.
        """
        g, cfg = self.g, self.cfg
        h, dh, d = cfg.n_heads, cfg.head_dim, cfg.d_model
        w = self.w[f"l{layer}.wqkv"].astype(np.float64).reshape(d, 3, h, dh).transpose(2, 0, 1, 3)  # [H, D, 3, Dh]
        w = (w.reshape(h, d, 3 * dh) * 2.0 ** -cfg.shift_qkv).astype(np.float32)
        x = self.absmax_norm(r)
        if self.single:
            weight = g.tensor(f"l{layer}.wqkv_heads", np.ascontiguousarray(w.transpose(1, 0, 2).reshape(d, h * 3 * dh)))
            acc = g.op("Reshape", g.op("MatMul", x, weight), g.ints(1, -1, h, 1, 3 * dh))
        else:
            weight = g.tensor(f"l{layer}.wqkv_heads", w)
            acc = g.op("MatMul", g.op("Unsqueeze", x, g.ints(1)), weight)
        qkv = g.clip(g.op("Floor", acc), -ACT_MAX, ACT_MAX)  # [B, H, n, 3 Dh]
        q, k, v = g.op("Split", qkv, g.ints(dh, dh, dh), axis=-1, outputs=3)
        if self.single:
            # a Dh-wide constant, not a scalar: onnxruntime would fuse a scalar Mul into the
            # q @ K MatMul as FusedMatMul, measured 2x slower on these batched products
            return g.op("Mul", q, g.const(np.full(dh, 2.0 ** -cfg.shift_att))), k, v
        return g.scale(q, cfg.shift_att), k, v

    def exp_numerators(self, z: str, shape: tuple[int, ...] | None = None) -> str:
        """``E[floor(z)] * 2**10`` for scaled score gaps ``z = (max - s) * 2**-shift_att >= 0``
        (``shape``: as for :meth:`_GraphBuilder.lookup`)."""
        g = self.g
        index = g.floor_index(z)
        if self.att_clamp:
            index = g.op("Min", index, g.const(ATT_LUT_SIZE - 1, np.int32))
        return g.lookup(self.att_exp, index, shape)

    def exp_sum(self, sums: str) -> str:
        """``sum(e)`` from ``sums = sum(e * 2**10)`` (multiples of 2**10 with
        ``sum(e) <= T * 256 < 2**24``, so the power-of-two scaling is exact)."""
        return self.g.scale(sums, PROB_BITS)

    def divide(self, numerators: str, exp_sum: str) -> str:
        """``floor(e * 2**10 / sum(e))`` for numerators ``e * 2**10 <= 2**18 < 2**24`` and
        ``exp_sum`` from :meth:`exp_sum`: the IEEE quotient of integers below 2**24 floors
        correctly."""
        g = self.g
        return g.op("Floor", g.op("Div", numerators, exp_sum))

    def attention_output(self, r: str, o: str, layer: int) -> str:
        """``o``: ``[B, H, n, Dh]`` (step graph: ``[1, B, H, 1, Dh]``, heads already adjacent)
        sums ``p @ v`` (``|.| <= 2**10 * 127``) -> residual update."""
        g, cfg = self.g, self.cfg
        o = g.op("Floor", g.scale(o, PROB_BITS))
        if self.single:
            o = g.op("Reshape", o, g.ints(-1, cfg.d_model))
        else:
            o = g.op("Reshape", g.op("Transpose", o, perm=[0, 2, 1, 3]), g.ints(0, 0, cfg.d_model))
        return self.residual_add(r, self.linear(o, f"l{layer}.wo", cfg.shift_attn_out, RES_MAX))

    def feed_forward(self, r: str, layer: int) -> str:
        """GELU table index ``clip(floor((x @ W1 + b1) / 2**s), -511, 511) + 511`` computed as
        ``Cast(Clip(x @ (W1 * 2**-s) + (b1 + 511 * 2**s) * 2**-s, 0, 1022))``: the offset keeps
        the accumulator below 2**24 (:func:`graph_bounds`), clipping to integer bounds commutes
        with floor, and the clipped value is non-negative so the Cast floors it."""
        g, cfg = self.g, self.cfg
        s = cfg.shift_ff_in
        acc = self.affine(self.absmax_norm(r), self.param(f"l{layer}.w1", s),
                          self.param(f"l{layer}.b1", s, offset=float(HID_MAX << s)), cfg.d_model)
        shape = (-1, cfg.d_ff) if self.single else None
        act = g.lookup(self.gelu, g.floor_index(g.clip(acc, 0.0, 2.0 * HID_MAX)), shape)
        return self.residual_add(r, self.linear(act, f"l{layer}.w2", cfg.shift_ff_out, RES_MAX))

    def logit_gaps(self, r: str, clamp: bool) -> str:
        """Final norm, logits and each entry's output-table index ``floor((max - logit) *
        2**-shift_logits)`` (int32, weights pre-scaled), clamped to the table when ``clamp``."""
        g, cfg = self.g, self.cfg
        s = cfg.shift_logits
        logits = self.affine(self.absmax_norm(r), self.param("w_out", s), self.param("b_out", s), cfg.d_model)
        index = g.floor_index(g.op("Sub", g.reduce_max(logits), logits))
        if clamp:
            index = g.op("Min", index, g.const(OUT_LUT_SIZE - 1, np.int32))
        return index

    def output(self, r: str, output: str) -> str:
        """The graph's result for the final residual ``r``: ``"gaps"`` (:meth:`logit_gaps`, clamped)
        or ``"freqs"`` (:meth:`frequencies`)."""
        if output == "gaps":
            return self.logit_gaps(r, clamp=True)
        if output == "freqs":
            return self.frequencies(r)
        raise ValueError(f"output must be 'gaps' or 'freqs', got {output!r}")

    def frequencies(self, r: str) -> str:
        """Final norm, logits and the int32 frequency table (rows sum to 2**16).

        * ``z = (max - logits) * 2**-shift_logits`` (weights pre-scaled), ``idx = floor(z)``;
        * ``A = E[idx] * 65280`` from a float64 table (< 2**28), ``sum(A) = 65280 * sum(E)``
          (< 2**37, exact), so ``sum(E)`` is an exact float64 quotient and
          ``floor(A / sum(E))`` an exact float64 Div (numerator < 2**53) floored by the Cast;
        * the remainder ``65280 - sum(floor)`` goes to the first index with ``idx = 0``, which
          is the reference's first maximal ``E`` (``E[0]`` is the unique largest entry).
        """
        g = self.g
        index = self.logit_gaps(r, clamp=self.out_clamp)
        a = g.lookup(self.out_exp, index)
        total = g.op("Div", g.reduce_sum(a), g.const(float(FREQ_SPREAD), np.float64))
        share = g.floor_index(g.op("Div", a, total))  # int32 floor(e * 65280 / sum(e))
        # sum of the shares (<= 65280, exact) in float32: onnxruntime's int32 ReduceSum is scalar
        shares_sum = g.reduce_sum(g.op("Cast", share, to=TensorProto.FLOAT))
        remainder = g.op("Cast", g.op("Sub", g.const(float(FREQ_SPREAD)), shares_sum), to=TensorProto.INT32)
        freqs = g.op("Add", share, g.const(1, np.int32))
        top = g.op("ArgMin", index, axis=-1, keepdims=1)
        return g.op("ScatterElements", freqs, top, remainder, axis=-1, reduction="add")


def _finish(g: _GraphBuilder, name: str, inputs: list, outputs: list, weights: IntegerWeights) -> onnx.ModelProto:
    used = {x for node in g.nodes for x in node.input}
    initializers = [t for t in g.initializers if t.name in used]  # e.g. the full graph has no output table
    graph = helper.make_graph(g.nodes, name, inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="lmcodec")
    model.ir_version = 8
    helper.set_model_props(model, {"lmcodec_config": weights.config.to_json(), "lmcodec_graph": name})
    onnx.checker.check_model(model)
    return model


def _bias_index(g: _GraphBuilder, cfg: ModelConfig, distance: str) -> str:
    """Flat int32 index ``h * (T + 1) + distance`` into a ``[H, T + 1]`` bias table for a
    ``[rows, keys]`` distance, shape ``[H, rows, keys]`` (distance ``T`` selects the mask column);
    shared by all layers."""
    offsets = (np.arange(cfg.n_heads) * (cfg.context_length + 1)).astype(np.int32)
    distance = g.op("Unsqueeze", g.op("Cast", distance, to=TensorProto.INT32), g.ints(0))
    return g.op("Add", distance, g.const(offsets.reshape(cfg.n_heads, 1, 1), np.int32))


def _position_bias(m: _ModelGraph, layer: int, index: str) -> str:
    """``pos_bias[h, distance] * 2**-shift_att`` (:data:`ADDITIVE_MASK` at distance ``T``) for a
    flat index from :func:`_bias_index`."""
    cfg = m.cfg
    table = np.concatenate([m.w[f"l{layer}.pos_bias"].astype(np.float64),
                            np.full((cfg.n_heads, 1), ADDITIVE_MASK)], axis=1) * 2.0 ** -cfg.shift_att
    return m.g.lookup(m.g.tensor(f"l{layer}.pos_bias_masked", table.astype(np.float32).reshape(-1)), index)


def query_pieces(cfg: ModelConfig) -> int:
    """How many query pieces the full graph's attention is cut into (see :func:`build_full_graph`):
    one per 32 positions of context, at least 2 and at most 16 (measured: 16 pieces take the
    small model's encode from 46 to 28 us per byte; more pieces add nodes and slices for
    little)."""
    return max(2, min(16, cfg.context_length // 32))


def build_full_graph(weights: IntegerWeights, pieces: int | None = None, output: str = "gaps") -> onnx.ModelProto:
    """All positions of a batch of segments at once (causal), for encoding.

    ``output``: ``"gaps"`` (the output-table indices, the default) or ``"freqs"`` (the tables
    computed in the graph, as the full graphs of models exported before gaps did; tests use it
    to keep the runtime able to load such models).

    Causal attention skips the keys after each query: the ``n`` queries are cut into ``pieces``
    consecutive pieces of ``ceil(n / pieces)`` positions (the last ones may be shorter or
    empty), and piece ``p`` only scores the keys up to its own end. With P pieces this computes
    ``(P + 1) / (2 P)`` of the full ``n x n`` score matrix (53 % for 16). Masking inside each piece
    is the same additive mask as everywhere, so the integers are unchanged.
    """
    g = _GraphBuilder()
    m = _ModelGraph(g, weights)
    cfg = weights.config
    pieces = query_pieces(cfg) if pieces is None else pieces
    n = g.dim("tokens", 1)  # [1]
    size = g.op("Div", g.op("Add", n, g.ints(pieces - 1)), g.ints(pieces))  # ceil(n / pieces)
    spans = []
    for piece in range(pieces):
        start = g.op("Min", g.op("Mul", size, g.ints(piece)), n)
        end = g.op("Min", g.op("Mul", size, g.ints(piece + 1)), n)
        rows = g.op("Range", g.op("Squeeze", start, g.ints(0)), g.op("Squeeze", end, g.ints(0)), g.const(1, np.int64))
        keys = g.op("Range", g.const(0, np.int64), g.op("Squeeze", end, g.ints(0)), g.const(1, np.int64))
        dist = g.op("Sub", g.op("Unsqueeze", rows, g.ints(1)), g.op("Unsqueeze", keys, g.ints(0)))
        # [rows, keys]: i - j on and below the diagonal, T (the mask column) above it
        dist = g.op("Where", g.op("GreaterOrEqual", dist, g.const(0, np.int64)), dist, g.const(cfg.context_length, np.int64))
        spans.append((start, end, _bias_index(g, cfg, dist)))  # bias index [H, rows, keys]
    axis = g.ints(2)
    r = g.op("Gather", m.param("embed"), "tokens")  # [B, n, D]
    for layer in range(cfg.n_layers):
        q, k, v = m.qkv(r, layer)  # [B, H, n, Dh]
        outputs = []
        for start, end, bias_index in spans:
            q_piece = g.op("Slice", q, start, end, axis)
            k_piece = g.op("Slice", k, g.ints(0), end, axis)
            v_piece = g.op("Slice", v, g.ints(0), end, axis)
            scores = g.op("MatMul", q_piece, g.op("Transpose", k_piece, perm=[0, 1, 3, 2]))  # scaled
            scores = g.op("Add", scores, _position_bias(m, layer, bias_index))  # + [H, rows, keys]
            e = m.exp_numerators(g.op("Sub", g.reduce_max(scores), scores))
            outputs.append(g.op("MatMul", m.divide(e, m.exp_sum(g.reduce_sum(e))), v_piece))
        o = g.op("Concat", *outputs, axis=2) if pieces > 1 else outputs[0]
        r = m.feed_forward(m.attention_output(r, o, layer), layer)
    g.nodes.append(helper.make_node("Identity", [m.output(r, output)], [output]))
    inputs = [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["B", "n"])]
    outputs = [helper.make_tensor_value_info(output, TensorProto.INT32, ["B", "n", N_SYMBOLS])]
    return _finish(g, "lmcodec_full", inputs, outputs, weights)


def _step_position_biases(m: _ModelGraph) -> list[str]:
    """Per layer, the position bias (scaled by ``2**-shift_att``) of every cached slot,
    ``[nb, 1, H, 1, blk]``, for ``0 <= pos < T``: ``pos_bias[h, pos - j]`` at slot ``j < pos`` and
    :data:`ADDITIVE_MASK` at ``j >= pos`` (not yet written, or stale).

    The bias depends on ``pos - j`` only, so one constant per layer holds it for every position:
    ``G[h, y] = bias at distance T - y`` (masked for ``y >= T``), and slots ``j = 0 .. S - 1``
    (``S = nb * blk < T + blk <= 2 T``) read the contiguous run ``G[h, T - pos + j]``, inside the
    ``3 T`` columns of ``G``. One Slice of the layers' stacked constants ``[L, H, 3 T]`` and a
    reshape into cache blocks serve all layers: ~10 nodes instead of ~20 per step.
    """
    g, cfg = m.g, m.cfg
    t, h = cfg.context_length, cfg.n_heads
    y = np.arange(3 * t)
    distance = t - y  # 1 .. T - 1 in use; <= 0 (and T, never sliced) are masked
    allowed = (distance >= 1) & (distance <= t - 1)
    stacked = np.full((cfg.n_layers, h, 3 * t), ADDITIVE_MASK)
    for layer in range(cfg.n_layers):
        stacked[layer][:, allowed] = m.w[f"l{layer}.pos_bias"].astype(np.float64)[:, distance[allowed]]
    table = g.tensor("pos_bias_by_offset", (stacked * 2.0 ** -cfg.shift_att).astype(np.float32))
    nb_blk = g.op("Gather", g.op("Shape", "past_k0"), g.ints(0, 4), axis=0)  # [nb, blk]
    start = g.op("Sub", g.ints(t), "pos")  # [1]
    end = g.op("Add", start, g.op("ReduceProd", nb_blk, keepdims=1))
    run = g.op("Slice", table, start, end, g.ints(2))  # [L, H, S]
    run = g.op("Reshape", run, g.op("Concat", g.ints(cfg.n_layers, h), nb_blk, axis=0))  # [L, H, nb, blk]
    blocks = g.op("Unsqueeze", g.op("Transpose", run, perm=[0, 2, 1, 3]), g.ints(2, 4))  # [L, nb, 1, H, 1, blk]
    return [g.op("Gather", blocks, g.scalar_index(layer), axis=0) for layer in range(cfg.n_layers)]


def build_step_graph(weights: IntegerWeights, output: str = "gaps") -> onnx.ModelProto:
    """One position for every lane, attending to a block-major KV cache of earlier positions.

    ``output``: as for :func:`build_full_graph` (``"gaps"`` by default). ``pos`` must lie in
    ``[0, T)`` (the runtime's decoder refuses later steps).

    Scores are computed in two parts that share one softmax: the cached positions
    ``[nb, B, H, 1, blk]`` (a batched ``q @ K`` with no copy of the cache) and the current
    position ``[1, B, H, 1, 1]``, whose key and value are not in the cache yet.
    """
    g = _GraphBuilder()
    m = _ModelGraph(g, weights, single_position=True)
    cfg = weights.config
    h, dh, n_layers = cfg.n_heads, cfg.head_dim, cfg.n_layers
    biases = _step_position_biases(m)
    r = g.op("Gather", m.param("embed"), "token")  # [B, D]
    new_k, new_v = [], []
    for layer in range(n_layers):
        q, k, v = m.qkv(r, layer)  # [1, B, H, 1, Dh]
        new_k.append(k)
        new_v.append(v)
        past = g.op("Add", g.op("MatMul", q, f"past_k{layer}"), biases[layer])  # [nb, B, H, 1, blk]
        own_bias = g.const((m.w[f"l{layer}.pos_bias"][:, :1].astype(np.float64) * 2.0 ** -cfg.shift_att)
                           .reshape(1, 1, h, 1, 1), np.float32)
        own = g.op("Add", g.reduce_sum(g.op("Mul", q, k)), own_bias)  # [1, B, H, 1, 1]
        top = g.op("Max", g.reduce_max(past, axes=(0, 4)), own)
        e_past = m.exp_numerators(g.op("Sub", top, past))
        e_own = m.exp_numerators(g.op("Sub", top, own), shape=(1, -1, h, 1, 1))
        total = m.exp_sum(g.op("Add", g.reduce_sum(e_past, axes=(0, 4)), e_own))
        o = g.reduce_sum(g.op("MatMul", m.divide(e_past, total), f"past_v{layer}"), axes=(0,))
        o = g.op("Add", o, g.op("Mul", m.divide(e_own, total), v))  # [1, B, H, 1, Dh]
        r = m.feed_forward(m.attention_output(r, o, layer), layer)
    g.nodes.append(helper.make_node("Identity", [m.output(r, output)], [output]))  # [B, 256]
    for name, parts in (("new_k", new_k), ("new_v", new_v)):
        stacked = g.op("Concat", *parts, axis=0) if n_layers > 1 else parts[0]  # [L, B, H, 1, Dh]
        g.nodes.append(helper.make_node("Reshape", [stacked, g.ints(n_layers, -1, h, dh)], [name]))
    inputs = [
        helper.make_tensor_value_info("token", TensorProto.INT64, ["B"]),
        helper.make_tensor_value_info("pos", TensorProto.INT64, []),
    ]
    for layer in range(n_layers):
        inputs.append(helper.make_tensor_value_info(f"past_k{layer}", TensorProto.FLOAT, ["nb", "B", h, dh, "blk"]))
        inputs.append(helper.make_tensor_value_info(f"past_v{layer}", TensorProto.FLOAT, ["nb", "B", h, "blk", dh]))
    outputs = [
        helper.make_tensor_value_info(output, TensorProto.INT32, ["B", N_SYMBOLS]),
        helper.make_tensor_value_info("new_k", TensorProto.FLOAT, [n_layers, "B", h, dh]),
        helper.make_tensor_value_info("new_v", TensorProto.FLOAT, [n_layers, "B", h, dh]),
    ]
    return _finish(g, "lmcodec_step", inputs, outputs, weights)
