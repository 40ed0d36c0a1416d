"""Bit-exactness of every evaluation path against the int64 numpy reference (docs/model.md).

Paths: the numpy reference (the definition), the PyTorch integer forward (QAT model,
``exact=True``), the ONNX full-sequence graph and the ONNX step graph with its KV cache; a
float32 evaluation that sums every reduction in a random order; CUDA when present. Batch sizes
1, 3 and 64; onnxruntime intra-op threads 1 and 2; graph optimisations on and off. Inputs:
random, all-equal and alternating bytes, real bytes (matplotlib's EEG sample, a float64 array,
as byte planes), on random, extreme and *saturated* weights (every accumulator at its worst-case
bound). Comparisons are exact equality, never a tolerance. The graphs are tested through
``register_model``/``build_*_graph`` and :class:`OnnxFrequencyModel` only, never exporter internals.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest

from lmcodec.frequency_model import N_KINDS, N_SYMBOLS, TOTAL, start_token
from lmcodec.model import tables as lmcodec_tables
from lmcodec.model.export import build_full_graph, build_step_graph
from lmcodec.model.reference import forward, frequencies
from lmcodec.model.spec import (
    ACT_MAX,
    ATT_LUT_SIZE,
    FLOAT32_EXACT,
    HID_MAX,
    MASK_VALUE,
    NORM_SHIFT,
    OUT_LUT_SIZE,
    POS_BIAS_MAX,
    PROB_BITS,
    RES_MAX,
    ModelConfig,
    attention_exp_table,
    check_bounds,
    gelu_table,
    inverse_norm_table,
    output_exp_table,
)
from lmcodec.model.weights import IntegerWeights
from lmcodec.models import load_model, model_dirs, read_manifest, register_model
from lmcodec.preprocess import split_planes
from lmcodec.runtime import OnnxFrequencyModel, available_devices

CFG = ModelConfig.create(d_model=64, n_layers=2, n_heads=4, d_ff=256, context_length=48)
N = CFG.context_length
MAX_FREQ = TOTAL - (N_SYMBOLS - 1)
WEIGHTS = ["random", "random_full_range", "extreme_pos", "extreme_neg", "saturated"]
INPUTS = ["random", "equal", "alternating", "real"]
CASES = [(i, b) for i in INPUTS for b in (1, 3, 64) if b < 64 or i in ("random", "real")]
"""(inputs, batch): batch 64 only for the inputs whose rows differ beyond their start token."""


def saturated(cfg: ModelConfig, seed: int = 0) -> IntegerWeights:
    """Weights that drive accumulators to their worst-case bounds: every weight and bias at
    ``+bound`` (terms never cancel), embeddings ``+-2**14`` per token (the absmax norm maps them
    to exactly ``+-127`` with ``r * INV[m] = 127 * 2**15``), position biases ``+POS_BIAS_MAX`` in
    head 0 (equal scores: every key gets the top weight) and ``+-POS_BIAS_MAX`` at random in the
    other heads, output columns of alternating sign and output biases of random sign (the logit
    spread approaches twice the logit bound)."""
    rng = np.random.default_rng(seed)
    t = {k: np.abs(v) for k, v in IntegerWeights.extreme(cfg).tensors.items()}
    t["embed"] = (rng.choice([-1, 1], (cfg.vocab_size, 1)) * np.full((1, cfg.d_model), 1 << 14)).astype(np.int32)
    for i in range(cfg.n_layers):
        t[f"l{i}.pos_bias"][1:] *= rng.choice([-1, 1], (cfg.n_heads - 1, cfg.context_length)).astype(np.int32)
    t["w_out"][:, 1::2] *= -1
    t["b_out"] *= rng.choice([-1, 1], N_SYMBOLS).astype(np.int32)
    return IntegerWeights(cfg, t)


@functools.cache
def _weights(name: str) -> IntegerWeights:
    return {
        "random": lambda: IntegerWeights.random(CFG, seed=1, scale=0.3),
        "random_full_range": lambda: IntegerWeights.random(CFG, seed=2, scale=1.0),
        "extreme_pos": lambda: IntegerWeights.extreme(CFG, 1),
        "extreme_neg": lambda: IntegerWeights.extreme(CFG, -1),
        "saturated": lambda: saturated(CFG),
    }[name]()


@functools.cache
def _eeg_planes() -> tuple[tuple[np.ndarray, int], ...]:
    """matplotlib's EEG sample (float64 little-endian) as 8 byte planes with their kinds."""
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("eeg.dat") as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8)
    return tuple(split_planes(raw, np.dtype("<f8")))


def _real_tokens(batch: int, n: int) -> np.ndarray:
    """Row i: start token of plane i % 8's kind, then that plane's bytes at offset (i // 8) * n."""
    planes = _eeg_planes()
    rows = []
    for i in range(batch):
        data, kind = planes[i % len(planes)]
        start = (i // len(planes)) * n
        rows.append(np.concatenate([[start_token(kind)], data[start:start + n - 1]]))
    return np.stack(rows).astype(np.int64)


def _tokens(kind: str, batch: int, n: int = N) -> np.ndarray:
    if kind == "real":
        return _real_tokens(batch, n)
    rng = np.random.default_rng(batch)
    if kind == "random":
        t = rng.integers(0, 256, (batch, n))
    elif kind == "equal":
        t = np.full((batch, n), 7)
    else:  # alternating extremes
        t = np.tile(np.array([0, 255]), (batch, (n + 1) // 2))[:, :n]
    t[:, 0] = [start_token(k % N_KINDS) for k in range(batch)]
    return t.astype(np.int64)


@functools.cache
def _expected(weights: str, inputs: str, batch: int) -> np.ndarray:
    out = forward(_weights(weights), _tokens(inputs, batch))
    out.flags.writeable = False
    return out


def _check_contract(freqs: np.ndarray) -> None:
    assert freqs.dtype == np.int32
    assert (freqs >= 1).all() and (freqs <= MAX_FREQ).all()
    assert (freqs.astype(np.int64).sum(-1) == TOTAL).all()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, tuple[IntegerWeights, dict, object]]:
    out = {}
    for name in WEIGHTS:
        directory = tmp_path_factory.mktemp(name)
        entry = register_model(_weights(name), name, training={}, directory=directory)
        out[name] = (_weights(name), entry, directory)
    return out


def _runtime(exported_item, **kwargs) -> OnnxFrequencyModel:
    w, entry, directory = exported_item
    return OnnxFrequencyModel(directory / entry["files"]["full"]["path"], directory / entry["files"]["step"]["path"],
                              w.config, bytes.fromhex(entry["model_id"]), **kwargs)


def _stepwise(model, tokens: np.ndarray) -> np.ndarray:
    dec = model.decoder(tokens.shape[0])
    return np.stack([dec.step(tokens[:, i]) for i in range(tokens.shape[1])], axis=1)


# -- the PyTorch integer forward ----------------------------------------------------------------

@pytest.fixture
def one_torch_thread():
    """Single-threaded torch: on a loaded machine its spinning worker threads and onnxruntime's
    slow these tests down many times over (exactness does not depend on it either way)."""
    if importlib.util.find_spec("torch") is None:
        yield
        return
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _qat_model(weights: IntegerWeights, device: str = "cpu"):
    """A QATModel whose integer weights are exactly ``weights`` (float = int / power-of-two scale,
    which float32 holds exactly)."""
    torch = pytest.importorskip("torch")
    from lmcodec.model.qat import QATModel

    model = QATModel(weights.config)

    def put(param, name: str, scale: float) -> None:
        param.copy_(torch.from_numpy(weights[name].astype(np.float64) / scale))

    with torch.no_grad():
        put(model.embed, "embed", 2.0**8)
        for i, block in enumerate(model.blocks):
            put(block.pos_bias, f"l{i}.pos_bias", block.pos_scale)
            put(block.qkv.weight, f"l{i}.wqkv", block.qkv.scale)
            put(block.out.weight, f"l{i}.wo", block.out.scale)
            put(block.ff_in.weight, f"l{i}.w1", block.ff_in.scale)
            put(block.ff_in.bias, f"l{i}.b1", block.ff_in.bias_scale)
            put(block.ff_out.weight, f"l{i}.w2", block.ff_out.scale)
        put(model.head.weight, "w_out", model.head.scale)
        put(model.head.bias, "b_out", model.head.bias_scale)
    assert model.to_integer_weights().digest() == weights.digest()
    return model.to(device)


def _torch_freqs(model, tokens: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Frequencies from the QAT model's exact forward (integer logits -> reference tables)."""
    import torch

    with torch.no_grad():
        logits = model(torch.from_numpy(tokens).to(device), exact=True).cpu().numpy()
    assert logits.dtype == np.float32 and np.array_equal(logits, np.floor(logits))
    return frequencies(logits.astype(np.int64), model.cfg.shift_logits)


# -- a float32 evaluation in scrambled summation order ------------------------------------------

_INV = inverse_norm_table()
_ATT_EXP = attention_exp_table()
_OUT_EXP = output_exp_table()
_GELU = gelu_table()


class Float32AnyOrder:
    """The integer semantics in float32 arithmetic (what the graphs compute with), but with every
    sum accumulated one term at a time in a random order of its terms. Records the largest
    |partial sum| (or value) of each quantity under the names of :func:`check_bounds`."""

    def __init__(self, weights: IntegerWeights, seed: int) -> None:
        self.cfg = weights.config
        self.w = {k: v.astype(np.float32) for k, v in weights.tensors.items()}
        self.rng = np.random.default_rng(seed)
        self.peak: dict[str, int] = {}

    def note(self, name: str, x: np.ndarray) -> None:
        self.peak[name] = max(self.peak.get(name, 0), int(np.abs(x).max()))

    def dot(self, name: str, a: np.ndarray, b: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
        """``start + a @ b`` over the last axis of ``a``, one float32 addition per term."""
        acc = np.zeros(np.broadcast_shapes(a.shape[:-1] + (1,), b.shape[:-2] + (1, b.shape[-1])), np.float32)
        if start is not None:
            acc += start
        for k in self.rng.permutation(a.shape[-1]):
            acc += a[..., k:k + 1] * b[..., k:k + 1, :]
            self.note(name, acc)
        return acc

    def total(self, name: str, x: np.ndarray) -> np.ndarray:
        acc = np.zeros(x.shape[:-1] + (1,), np.float32)
        for k in self.rng.permutation(x.shape[-1]):
            acc += x[..., k:k + 1]
            self.note(name, acc)
        return acc

    def norm(self, r: np.ndarray) -> np.ndarray:
        m = np.maximum(np.abs(r).max(-1, keepdims=True), np.float32(1))
        product = r * _INV[m.astype(np.int64)]
        self.note("norm_product", product)
        return np.floor(product * np.float32(2.0**-NORM_SHIFT))

    @staticmethod
    def rescale(x: np.ndarray, shift: int, bound: int) -> np.ndarray:
        return np.clip(np.floor(x * np.float32(2.0**-shift)), -bound, bound)

    def residual(self, r: np.ndarray, delta: np.ndarray) -> np.ndarray:
        self.note("residual_sum", r + delta)
        return np.clip(r + delta, -RES_MAX, RES_MAX)

    def __call__(self, tokens: np.ndarray) -> np.ndarray:
        cfg, w = self.cfg, self.w
        b, n = tokens.shape
        h, dh, d = cfg.n_heads, cfg.head_dim, cfg.d_model
        pos = np.arange(n)
        dist = pos[:, None] - pos[None, :]
        r = w["embed"][tokens]
        for i in range(cfg.n_layers):
            qkv = self.rescale(self.dot("qkv_acc", self.norm(r), w[f"l{i}.wqkv"]), cfg.shift_qkv, ACT_MAX)
            q, k, v = (qkv[..., j * d:(j + 1) * d].reshape(b, n, h, dh).transpose(0, 2, 1, 3) for j in range(3))
            bias = w[f"l{i}.pos_bias"][:, np.maximum(dist, 0)]
            scores = self.dot("scores", q, k.transpose(0, 1, 3, 2), start=bias)
            scores = np.where(dist >= 0, scores, np.float32(MASK_VALUE))
            z = scores.max(-1, keepdims=True) - scores
            self.note("scores_shifted", z)
            e = _ATT_EXP[np.minimum(np.floor(z * np.float32(2.0**-cfg.shift_att)), ATT_LUT_SIZE - 1).astype(np.int64)]
            numerator = e * np.float32(2 << PROB_BITS) + np.float32(1)
            self.note("prob_numerator", numerator)
            p = np.floor(numerator / (np.float32(2) * self.total("exp_sum", e)))
            o = np.floor(self.dot("attn_acc", p, v) * np.float32(2.0**-PROB_BITS))
            o = o.transpose(0, 2, 1, 3).reshape(b, n, d)
            r = self.residual(r, self.rescale(self.dot("attn_out_acc", o, w[f"l{i}.wo"]), cfg.shift_attn_out, RES_MAX))
            hid = self.dot("ff_in_acc", self.norm(r), w[f"l{i}.w1"], start=w[f"l{i}.b1"])
            g = _GELU[(self.rescale(hid, cfg.shift_ff_in, HID_MAX) + HID_MAX).astype(np.int64)]
            r = self.residual(r, self.rescale(self.dot("ff_out_acc", g, w[f"l{i}.w2"]), cfg.shift_ff_out, RES_MAX))
        logits = self.dot("logits", self.norm(r), w["w_out"], start=w["b_out"])
        z = logits.max(-1, keepdims=True) - logits
        self.note("logits_shifted", z)
        e = _OUT_EXP[np.minimum(np.floor(z * np.float32(2.0**-cfg.shift_logits)), OUT_LUT_SIZE - 1).astype(np.int64)]
        self.total("out_exp_sum", e)
        assert all(x.dtype == np.float32 for x in (r, logits, e))
        return frequencies(logits.astype(np.int64), cfg.shift_logits)


# == bounds, tables, graphs ======================================================================

def _shipped() -> dict[str, tuple[object, dict]]:
    """name -> (directory, manifest entry) of every installed model."""
    out: dict[str, tuple[object, dict]] = {}
    for directory in model_dirs():
        for name, entry in read_manifest(directory)["models"].items():
            out.setdefault(name, (directory, entry))
    return out


def _shipped_weights(name: str) -> IntegerWeights:
    directory, entry = _shipped()[name]
    return IntegerWeights.from_bytes((directory / entry["files"]["weights"]["path"]).read_bytes())


SHIPPED = sorted(_shipped())


def test_bounds_hold_for_presets_and_shipped_configs():
    from lmcodec.train import PRESETS

    configs = [ModelConfig.create(**p) for p in PRESETS.values()]
    configs += [ModelConfig.from_dict(entry["config"]) for _, entry in _shipped().values()]
    for cfg in configs:
        bounds = check_bounds(cfg)
        assert max(bounds.values()) < FLOAT32_EXACT
        assert bounds["ff_out_acc"] == cfg.d_ff * ACT_MAX * ACT_MAX


def test_check_bounds_rejects_configs_that_would_not_be_exact():
    with pytest.raises(ValueError, match="ff_out_acc"):
        ModelConfig.create(d_model=128, n_layers=1, n_heads=4, d_ff=2048, context_length=64)
    with pytest.raises(ValueError, match="exp_sum"):
        ModelConfig.create(d_model=64, n_layers=1, n_heads=4, d_ff=256, context_length=1 << 16)
    with pytest.raises(ValueError, match="mask"):  # masked scores must land on the zero table entry
        dataclasses.replace(CFG, shift_att=20)


def test_lookup_tables_are_frozen():
    """The tables are part of every model's semantics but not of its id (the digest covers the
    config and weights only): they must come out the same on every platform, so they are integer
    literals (lmcodec/model/tables.py), not computed with float exp/tanh. The GELU table has
    entries that were decided by the last bit of np.tanh when it was frozen (h = 454, 462, ...:
    16 * gelu(h / 64) is within an ulp of, or exactly, k + 1/2); these sha256 pin them."""
    tables = {
        "inverse_norm": (inverse_norm_table(), "40b1576131a791e814aa2ad6da2ca1d822b1ba843ded1f7a1bca7bbb9c66f0db"),
        "attention_exp": (attention_exp_table(), "f25020e99ec074f54ba82ea3778bb9f18e360627814f16d1e2a2e7d2fa5474cd"),
        "output_exp": (output_exp_table(), "5112a1ebda04c97953d9d75f7bfa7b0e3f071540e766f3dd3716be536fda2d52"),
        "gelu": (gelu_table(), "7adb2a9ed7d974830c90e8e58b32c188c4f1c232e655aa6bfe734145d93700d7"),
    }
    for name, (table, sha) in tables.items():
        assert table.dtype == np.float32 and np.array_equal(table, np.round(table)), name
        assert hashlib.sha256(np.ascontiguousarray(table, "<f4").tobytes()).hexdigest() == sha, name
    att, out, gelu = attention_exp_table(), output_exp_table(), gelu_table()
    assert att[0] == 256 and att[-1] == 0 and (np.diff(att) <= 0).all()
    assert out[0] == 4096 and out[-1] == 0 and (np.diff(out) <= 0).all()
    assert gelu.min() == -3 and gelu.max() == ACT_MAX and gelu[HID_MAX] == 0
    # the entries that hinge on the rounding of exact or near ties
    assert [int(gelu[HID_MAX + h]) for h in (450, 454, 458, 462, 466)] == [112, 113, 114, 116, 116]


def _make_tables_script():
    """scripts/make_tables.py, the one-off generator of lmcodec/model/tables.py."""
    path = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "make_tables.py"
    module_spec = importlib.util.spec_from_file_location("make_tables", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_frozen_tables_match_their_generator():
    """The literals are what the generator's float64 formulas give. Float math is used here, in
    the test only, to check the literals' origin; the runtime never evaluates it. Entries within
    1e-9 of a rounding tie (GELU h = 458, 462, ... are exact float64 ties) depend on the last bit
    of this platform's tanh, so for them only the two neighbours of the value are accepted: the
    sha256 in test_lookup_tables_are_frozen pins which one."""
    gen = _make_tables_script()
    frozen = {"ATTENTION_EXP": attention_exp_table(), "OUTPUT_EXP": output_exp_table(), "GELU": gelu_table()}
    assert frozen.keys() == gen.float_tables().keys()
    for name, expected in gen.float_tables().items():
        table = frozen[name].astype(np.int64)
        assert np.array_equal(table, getattr(lmcodec_tables, name)), name
        safe = gen.margins(name) > 1e-9
        assert safe.mean() > 0.95, name
        assert np.array_equal(table[safe], expected[safe]), name
        value = gen.unrounded()[name]
        value = np.clip(value, -ACT_MAX, ACT_MAX) if name == "GELU" else value
        assert (np.abs(table - value)[~safe] <= 0.5 + 1e-9).all(), name


def test_frozen_tables_against_exact_arithmetic():
    """Platform-independent (60-digit mpmath): every entry is the correctly rounded real value,
    except six GELU entries at exact float64 ties that numpy rounded half to even, upwards; the
    smallest tie margins are those docs/model.md quotes."""
    pytest.importorskip("mpmath")
    import mpmath

    gen = _make_tables_script()
    half = mpmath.mpf(1) / 2
    frozen = {"ATTENTION_EXP": attention_exp_table(), "OUTPUT_EXP": output_exp_table(), "GELU": gelu_table()}
    least = {}
    for name, table in frozen.items():
        exact = gen.exact_values(name)
        correct = np.array([int(mpmath.floor(e + half)) for e in exact])
        bound = ACT_MAX if name == "GELU" else 1 << 12  # GELU entries are clipped to +-127
        correct = np.clip(correct, -bound, bound)
        off = np.nonzero(correct != table.astype(np.int64))[0]
        if name == "GELU":
            assert (off - HID_MAX).tolist() == [462, 470, 478, 486, 494, 502]
            assert (table[off] - correct[off] == 1).all()
        else:
            assert off.size == 0, name
        # a tie matters only if its two neighbours survive the clip differently: |e| < bound
        counted = [abs(e - mpmath.floor(e) - half) for e in exact if abs(e) < bound]
        least[name] = float(min(counted))
    assert 0.0058 < least["ATTENTION_EXP"] < 0.0059
    assert 0.00107 < least["OUTPUT_EXP"] < 0.00108
    assert 1e-19 < least["GELU"] < 1e-18


def test_runtime_tables_use_no_float_math():
    """Importing the model modules, building the tables and exporting a graph never calls a float
    exp/tanh/erf: a fresh interpreter where those raise still gets the frozen tables."""
    code = textwrap.dedent(
        """
        import math
        import numpy as np
        import onnx  # before the patch: its dependencies use np.exp at import time
        from onnx import numpy_helper

        def boom(*args, **kwargs):
            raise AssertionError("float math used to build a table")

        for name in ("exp", "tanh", "erf", "expm1"):
            if hasattr(np, name):
                setattr(np, name, boom)
            setattr(math, name, boom)

        from lmcodec.model import tables
        from lmcodec.model.export import build_step_graph
        from lmcodec.model.reference import _ATT_EXP, _GELU, _OUT_EXP
        from lmcodec.model.spec import ModelConfig
        from lmcodec.model.weights import IntegerWeights

        assert _ATT_EXP.tolist() == list(tables.ATTENTION_EXP)
        assert _OUT_EXP.tolist() == list(tables.OUTPUT_EXP)
        assert _GELU.tolist() == list(tables.GELU)
        cfg = ModelConfig.create(d_model=32, n_layers=1, n_heads=2, d_ff=64, context_length=16)
        graph = build_step_graph(IntegerWeights.random(cfg, seed=0)).graph
        init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        assert init["lut_gelu"].tolist() == list(tables.GELU)
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
    # and the formulas are gone from the runtime sources
    for module in ("spec", "reference", "export", "tables"):
        source = (pathlib.Path(lmcodec_tables.__file__).parent / f"{module}.py").read_text()
        for call in ("np.exp(", "np.tanh(", "math.exp(", "math.tanh(", "erf(", "gelu_float"):
            assert call not in source, (module, call)


_INEXACT_OPS = {
    "Softmax", "LogSoftmax", "Exp", "Log", "Erf", "Tanh", "Sigmoid", "Sqrt", "Reciprocal", "Pow",
    "LayerNormalization", "Gelu", "FastGelu", "BiasGelu", "Attention", "MultiHeadAttention",
    "MatMulInteger", "QLinearMatMul", "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
    "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QGemm",
}
_LOW_PRECISION = {onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}


def _assert_exact_ops(model: onnx.ModelProto) -> None:
    graph = model.graph
    ops = {(n.domain or "", n.op_type) for n in graph.node}
    assert all(domain in ("", "ai.onnx") for domain, _ in ops), ops
    assert not {op for _, op in ops} & _INEXACT_OPS, ops
    assert not {t.data_type for t in graph.initializer} & _LOW_PRECISION
    for node in graph.node:
        for attr in node.attribute:
            if attr.name == "to":
                assert attr.i not in _LOW_PRECISION, node


def test_graphs_use_only_exact_operations():
    w = _weights("random")
    _assert_exact_ops(build_full_graph(w))
    _assert_exact_ops(build_step_graph(w))
    for name in SHIPPED:
        directory, entry = _shipped()[name]
        for role in ("full", "step"):
            _assert_exact_ops(onnx.load(str(directory / entry["files"][role]["path"])))


# == the model id ================================================================================

def test_digest_identifies_the_integer_weights():
    w = _weights("random")
    digest = w.digest()
    assert len(digest) == 32
    assert IntegerWeights.from_bytes(w.to_bytes()).digest() == digest
    assert IntegerWeights.from_bytes(IntegerWeights.from_bytes(w.to_bytes()).to_bytes()).digest() == digest
    same = IntegerWeights(w.config, {k: np.asfortranarray(w[k]) for k in reversed(list(w.tensors))})
    assert same.digest() == digest  # independent of memory layout and tensor order
    assert IntegerWeights(w.config, {k: v[::-1].copy()[::-1] for k, v in w.tensors.items()}).digest() == digest
    assert _weights("random_full_range").digest() != digest
    other_config = dataclasses.replace(w.config, shift_logits=w.config.shift_logits + 1)
    assert IntegerWeights(other_config, w.tensors).digest() != digest


def test_digest_changes_with_every_single_value():
    """Every single changed value of every tensor gives a new digest (tiny config: all of them)."""
    cfg = ModelConfig.create(d_model=8, n_layers=1, n_heads=2, d_ff=8, context_length=4)
    w = IntegerWeights.random(cfg, seed=5)
    original = w.digest()
    seen = {original}
    count = 0
    for name in sorted(w.tensors):
        flat = w.tensors[name].reshape(-1)  # a view: mutate in place, then restore
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old - 1 if old > 0 else old + 1
            seen.add(w.digest())
            flat[i] = old
            count += 1
    assert count == w.n_parameters and len(seen) == count + 1
    assert w.digest() == original


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_id_is_the_weights_digest(name):
    _, entry = _shipped()[name]
    weights = _shipped_weights(name)
    assert weights.digest()[:8].hex() == entry["model_id"]
    assert weights.config == ModelConfig.from_dict(entry["config"])
    assert weights.n_parameters == entry["n_parameters"]


# == reference, ONNX, PyTorch, float32-any-order on small configs ===============================

@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("inputs", INPUTS)
def test_reference_tables_are_valid(weights, inputs):
    _check_contract(_expected(weights, inputs, 3))


@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("inputs, batch", CASES)
def test_onnx_full_and_step_equal_reference(exported, weights, inputs, batch):
    tokens = _tokens(inputs, batch)
    expected = _expected(weights, inputs, batch)
    model = _runtime(exported[weights], device="cpu")
    assert np.array_equal(model.full_freqs(tokens), expected)
    if batch != 64 or inputs == "random":  # keep the step loop count modest
        assert np.array_equal(_stepwise(model, tokens), expected)


@pytest.mark.parametrize("weights", ["random", "saturated"])
def test_graphs_with_tables_in_graph_still_load(exported, weights, tmp_path):
    """Graphs that output the tables themselves (how models were exported before ``gaps``) give
    the same tables through the runtime, full and step graph."""
    w, entry, _ = exported[weights]
    paths = {}
    for role, build in (("full", build_full_graph), ("step", build_step_graph)):
        paths[role] = tmp_path / f"{role}_freqs.onnx"
        paths[role].write_bytes(build(w, output="freqs").SerializeToString())
        with pytest.raises(ValueError):
            build(w, output="logits")
    model = OnnxFrequencyModel(paths["full"], paths["step"], w.config, bytes.fromhex(entry["model_id"]), device="cpu")
    tokens, expected = _tokens("random", 3), _expected(weights, "random", 3)
    assert np.array_equal(model.full_freqs(tokens), expected)
    assert np.array_equal(_stepwise(model, tokens), expected)
    assert model._full_output == "freqs"


@pytest.mark.parametrize("seed", range(6))
def test_tables_from_gaps_equal_reference(seed):
    """The runtime's compiled tail (gaps -> tables) equals the reference on logits with ties,
    flat rows and gaps far beyond the table (clamped to its last entry, 0)."""
    from lmcodec.model.reference import frequencies
    from lmcodec.runtime import tables_from_gaps

    rng = np.random.default_rng(seed)
    shift = int(rng.integers(0, 10))
    logits = rng.integers(-(1 << 20), 1 << 20, (40, N_SYMBOLS))
    logits[0] = 5  # one flat row: every entry ties for the maximum
    logits[1, ::7] = logits[1].max()  # many ties for the maximum
    logits[2] = rng.integers(0, 3, N_SYMBOLS) << shift  # gaps 0..2 only
    gaps = ((logits.max(-1, keepdims=True) - logits) >> shift).astype(np.int32)  # unclamped
    assert gaps.max() > 511
    assert np.array_equal(tables_from_gaps(gaps.copy()), frequencies(logits, shift))
    negative = np.minimum(gaps, 511)
    negative[negative == 0] = -5  # clamped to 0 like the gap it replaces
    assert np.array_equal(tables_from_gaps(negative), frequencies(logits, shift))
    with pytest.raises(ValueError, match="no zero gap"):
        tables_from_gaps(np.full((2, N_SYMBOLS), 511, dtype=np.int32))
    for bad in (gaps.astype(np.int64), gaps[:, ::-1], gaps[:, :255].copy()):  # never a silent copy
        with pytest.raises(ValueError):
            tables_from_gaps(bad)


@pytest.mark.parametrize("weights", ["random_full_range", "extreme_neg", "saturated"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("optimize", [True, False])
def test_session_settings_do_not_change_output(exported, weights, threads, optimize):
    model = _runtime(exported[weights], device="cpu", threads=threads, optimize=optimize)
    assert np.array_equal(model.full_freqs(_tokens("random", 64)), _expected(weights, "random", 64))
    assert np.array_equal(_stepwise(model, _tokens("real", 3)), _expected(weights, "real", 3))


def test_prefix_lengths_and_batch_split_agree(exported):
    """A row's tables do not depend on its batch mates or on later positions, nor on how the
    runtime cuts a large batch into mini-batches (192 rows of 48 tokens take two runs)."""
    tokens = _tokens("random", 6)
    model = _runtime(exported["random"], device="cpu")
    whole = model.full_freqs(tokens)
    for n in (1, 2, N // 2 + 1):
        assert np.array_equal(model.full_freqs(tokens[:, :n]), whole[:, :n])
    assert np.array_equal(np.concatenate([model.full_freqs(tokens[i:i + 1]) for i in range(6)]), whole)
    parts = [("random", 64), ("real", 64), ("random", 64)]
    big = np.concatenate([_tokens(i, b) for i, b in parts])
    assert np.array_equal(model.full_freqs(big), np.concatenate([_expected("random", i, b) for i, b in parts]))


@pytest.mark.parametrize("weights", ["random_full_range", "saturated"])
def test_step_cache_block_size_does_not_change_output(exported, weights):
    """The step decoder's KV cache layout (positions per block) is a runtime choice."""
    from lmcodec.runtime import OnnxStepDecoder

    model = _runtime(exported[weights], device="cpu")
    tokens, expected = _tokens("real", 3), _expected(weights, "real", 3)
    for block in (1, 5, N, 4 * N):
        dec = OnnxStepDecoder(model, 3, block=block)
        assert np.array_equal(np.stack([dec.step(tokens[:, i]) for i in range(N)], axis=1), expected), block


@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("inputs", INPUTS)
@pytest.mark.usefixtures("one_torch_thread")
def test_torch_integer_forward_equals_reference(weights, inputs):
    model = _qat_model(_weights(weights))
    for batch in (b for i, b in CASES if i == inputs):
        assert np.array_equal(_torch_freqs(model, _tokens(inputs, batch)), _expected(weights, inputs, batch))


@pytest.mark.usefixtures("one_torch_thread")
def test_torch_initialised_model_equals_reference():
    """A freshly initialised QAT model (float weights on no integer grid) and its export."""
    torch = pytest.importorskip("torch")
    from lmcodec.model.qat import QATModel

    torch.manual_seed(0)
    model = QATModel(CFG)
    tokens = _tokens("random", 3)
    assert np.array_equal(_torch_freqs(model, tokens), forward(model.to_integer_weights(), tokens))


@pytest.mark.parametrize("weights", ["random_full_range", "extreme_pos", "saturated"])
def test_float32_in_any_summation_order_equals_reference(weights):
    """The exactness claim itself: float32 arithmetic with every sum taken in a random order gives
    the reference integers, and no partial sum exceeds its check_bounds value (< 2**24)."""
    bounds = check_bounds(CFG)
    peaks: dict[str, int] = {}
    for seed, inputs in enumerate(["random", "real", "equal"]):
        sim = Float32AnyOrder(_weights(weights), seed)
        assert np.array_equal(sim(_tokens(inputs, 3)), _expected(weights, inputs, 3))
        for name, peak in sim.peak.items():
            assert peak <= bounds[name], (name, peak, bounds[name])
            peaks[name] = max(peaks.get(name, 0), peak)
    if weights == "saturated":  # the adversarial weights reach the worst cases the proof allows ...
        attained = {k: peaks[k] for k in bounds if k not in ("logits", "logits_shifted", "out_exp_sum", "argmax_key")}
        assert attained == {k: bounds[k] for k in attained}
        # ... but for the logits: the last residual saturates at 32767, which normalises to 126
        assert peaks["logits"] == bounds["logits"] - CFG.d_model * ACT_MAX


def test_float32_any_order_harness_would_see_order_dependence():
    """Control: the scrambled-order sums really are float32, so beyond 2**24 the order shows."""
    a = np.array([[2.0**24, 1.0, 1.0, -(2.0**24)]], dtype=np.float32)
    results = set()
    for seed in range(20):
        results.add(float(Float32AnyOrder(_weights("random"), seed).dot("x", a, np.ones((4, 1), np.float32))[0, 0]))
    assert results > {2.0} and len(results) > 1


@pytest.mark.skipif("cuda" not in available_devices(), reason="no CUDA execution provider")
def test_cuda_equals_reference(exported):
    for name in ("random_full_range", "extreme_pos", "saturated"):
        for inputs, batch in (("random", 8), ("real", 64)):
            tokens = _tokens(inputs, batch)
            model = _runtime(exported[name], device="cuda")
            expected = _expected(name, inputs, batch)
            assert np.array_equal(model.full_freqs(tokens), expected)
            assert np.array_equal(_stepwise(model, tokens), expected)


def test_torch_cuda_integer_forward_equals_reference():
    """The training forward on a GPU (cuBLAS matmuls, TF32 off) gives the reference integers."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device for torch")
    torch.backends.cuda.matmul.allow_tf32 = False
    for name in ("random_full_range", "saturated"):
        model = _qat_model(_weights(name), device="cuda")
        for batch in (1, 3, 64):
            tokens = _tokens("random", batch)
            assert np.array_equal(_torch_freqs(model, tokens, "cuda"), _expected(name, "random", batch))


# == the shipped models on real data ============================================================

def _shipped_inputs(n: int) -> np.ndarray:
    """The 8 EEG planes, then all-equal and alternating bytes after a start token."""
    equal = np.concatenate([[start_token(0)], np.full(n - 1, 63)])
    alternating = np.concatenate([[start_token(17)], np.tile([0, 255], n)[:n - 1]])
    return np.concatenate([_real_tokens(8, n), np.stack([equal, alternating])]).astype(np.int64)


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.usefixtures("one_torch_thread")
def test_shipped_model_paths_agree_on_real_data(name):
    """Reference, PyTorch, full graph and step graph of a shipped model, bit for bit; the full
    and step graphs also under every session setting."""
    model = load_model(name, device="cpu")  # checks every file's sha256
    weights = _shipped_weights(name)
    assert weights.digest()[:8] == model.model_id
    tokens = _shipped_inputs(64)
    expected = forward(weights, tokens)
    _check_contract(expected)
    assert np.array_equal(model.full_freqs(tokens), expected)
    assert np.array_equal(_stepwise(model, tokens), expected)
    if importlib.util.find_spec("torch") is not None:
        assert np.array_equal(_torch_freqs(_qat_model(weights), tokens), expected)
    short = tokens[[0, 7, 9], :24]
    for threads in (1, 2):
        for optimize in (True, False):
            other = OnnxFrequencyModel(model.full_path, model.step_path, model.config, model.model_id,
                                       device="cpu", threads=threads, optimize=optimize)
            assert np.array_equal(other.full_freqs(tokens), expected)
            assert np.array_equal(_stepwise(other, short), expected[[0, 7, 9], :24])


def test_shipped_default_model_at_full_context_length():
    """One whole context (T = 1024 positions) of real bytes: the longest attention sums and the
    step graph at its largest cache."""
    model = load_model(device="cpu")
    name = next(n for n in SHIPPED if _shipped()[n][1]["model_id"] == model.model_id.hex())
    weights = _shipped_weights(name)
    t = weights.config.context_length
    data, kind = _eeg_planes()[7]
    tokens = np.concatenate([[start_token(kind)], data[:t - 1]])[None].astype(np.int64)
    expected = forward(weights, tokens)
    assert np.array_equal(model.full_freqs(tokens), expected)
    assert np.array_equal(_stepwise(model, tokens), expected)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_graphs_are_what_the_exporter_builds(name):
    """The shipped graphs are reproducible from the shipped weights. (If the exporter changes,
    re-export the shipped models: the ids stay, the semantics must too, see the tests above.)"""
    directory, entry = _shipped()[name]
    weights = _shipped_weights(name)
    assert build_full_graph(weights).SerializeToString() == (directory / entry["files"]["full"]["path"]).read_bytes()
    assert build_step_graph(weights).SerializeToString() == (directory / entry["files"]["step"]["path"]).read_bytes()
