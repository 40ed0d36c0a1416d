"""Speed settings never change bytes: batching of chunks and lanes, the step decoder's cache
block size, and the onnxruntime behaviour the fast graphs rely on.

(Bit-exactness of the graphs against the reference for batch sizes, thread counts and
optimisation levels is in tests/test_model_exact.py.)
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from lmcodec import LMCodec, mixcoding
from lmcodec.format import Mode, parse_header
from lmcodec.frequency_model import start_token
from lmcodec.lmcoding import decode_planes, encode_planes
from lmcodec.model.export import build_full_graph, build_step_graph, graph_bounds
from lmcodec.model.reference import forward
from lmcodec.model.spec import ModelConfig
from lmcodec.model.weights import IntegerWeights
from lmcodec.models import load_model, register_model
from lmcodec.runtime import OnnxFrequencyModel, OnnxStepDecoder

CFG = ModelConfig.create(d_model=32, n_layers=2, n_heads=2, d_ff=64, context_length=40)


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> tuple[IntegerWeights, OnnxFrequencyModel]:
    weights = IntegerWeights.random(CFG, seed=3, scale=0.5)
    directory = tmp_path_factory.mktemp("model")
    entry = register_model(weights, "inv", training={}, directory=directory)
    model = OnnxFrequencyModel(directory / entry["files"]["full"]["path"], directory / entry["files"]["step"]["path"],
                               CFG, bytes.fromhex(entry["model_id"]), device="cpu")
    return weights, model


def _signal(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (np.cumsum(rng.integers(-3, 4, n)) + 100).astype(np.uint8)


def test_lane_batching_does_not_change_bytes(small_model):
    _, model = small_model
    chunks = [[(_signal(n, i), kind) for kind, n in ((0, 97), (3, 40), (4, 1))] for i in range(3)]
    layouts = [[(len(p), k) for p, k in chunk] for chunk in chunks]
    reference = encode_planes(model, chunks, 33, max_batch=1)
    for max_batch in (2, 5, None):  # None: the runtime's lane_batch
        assert encode_planes(model, chunks, 33, max_batch=max_batch) == reference
        decoded = decode_planes(model, reference, layouts, 33, max_batch=max_batch)
        assert all(np.array_equal(d, p) for dc, c in zip(decoded, chunks) for d, (p, _) in zip(dc, c))
    # each chunk alone gives the same body as in the pooled call
    assert [encode_planes(model, [c], 33)[0] for c in chunks] == reference


@pytest.mark.parametrize("mixer_version", [1, 3])
def test_decode_workers_do_not_change_bytes(small_model, mixer_version):
    """mixcoding decodes few streams on one worker (its step in one thread) and many on two
    (mixer version 1: two concurrent batches; 3: the plane's streams share statistics, so one
    batch whose steps the model splits): the same bytes every way, and as a one-thread model."""
    _, model = small_model
    assert model.cache_bytes_per_lane() == 32 << 10
    one = OnnxFrequencyModel(model.full_path, model.step_path, CFG, model.model_id, device="cpu", threads=1)
    two = OnnxFrequencyModel(model.full_path, model.step_path, CFG, model.model_id, device="cpu", threads=2)
    seg = CFG.context_length
    version = mixcoding.FORMAT_OF_MIXER[mixer_version]
    for streams, workers in ((4, 1), (31, 1), (64, 2)):
        assert mixcoding.decode_workers(one, streams) == 1
        assert mixcoding.decode_workers(two, streams) == workers
        plane = ((np.arange(streams * seg - 7) % 7) * 3).astype(np.uint8)  # coded, not stored raw
        params = [mixcoding.StreamParams(1, 0)]  # one segment per stream
        (body,) = mixcoding.encode_chunks(one, [[(plane, 0)]], seg, params, mixer_version=mixer_version)
        assert mixcoding.encode_chunks(two, [[(plane, 0)]], seg, params, mixer_version=mixer_version) == [body]
        for m in (one, two):
            ((decoded, _),) = mixcoding.decode_chunks(m, [body], [[(len(plane), 0)]], seg, [version])
            assert decoded[0].tobytes() == plane.tobytes()
        assert len(body) < len(plane)  # streams coded, not stored raw (those need no decoding)


@pytest.mark.parametrize("block", [1, 7, 32, 64])
def test_cache_block_size_does_not_change_tables(small_model, block):
    weights, model = small_model
    rng = np.random.default_rng(block)
    tokens = rng.integers(0, 256, (5, CFG.context_length)).astype(np.int64)
    tokens[:, 0] = start_token(2)
    expected = forward(weights, tokens)
    decoder = OnnxStepDecoder(model, 5, block=block)
    stepped = np.stack([decoder.step(tokens[:, i]) for i in range(tokens.shape[1])], axis=1)
    assert np.array_equal(stepped, expected)


def test_stale_cache_slots_are_masked(small_model):
    """A decoder's cache keeps the previous segment's keys/values; a new one must not see them."""
    weights, model = small_model
    tokens = np.full((2, 20), 9, dtype=np.int64)
    tokens[:, 0] = start_token(0)
    decoder = OnnxStepDecoder(model, 2, block=8)
    for i in range(20):
        decoder.step(np.full(2, 200 + i % 50))  # fill the cache with another segment
    decoder.pos = 0
    stepped = np.stack([decoder.step(tokens[:, i]) for i in range(20)], axis=1)
    assert np.array_equal(stepped, forward(weights, tokens))


@pytest.mark.real_models
def test_codec_batches_equal_single_chunks_with_the_shipped_model():
    """LMCodec with a real model: encode_batch/decode_batch are byte-identical to one-at-a-time."""
    try:
        load_model("lm-tiny-v1", device="cpu")
    except LookupError:
        pytest.skip("lm-tiny-v1 not installed")
    rng = np.random.default_rng(0)
    arrays = [np.cumsum(rng.integers(-20, 21, 700 + 600 * i)).astype("<i2") for i in range(3)]  # random walks
    codec = LMCodec(model="lm-tiny-v1", segment_length=64, device="cpu")
    single = [codec.encode(a) for a in arrays]
    assert codec.encode_batch(arrays) == single
    assert any(parse_header(np.frombuffer(e, np.uint8)).mode.uses_model for e in single)
    assert codec.decode_batch(single) == [codec.decode(e) for e in single] == [a.tobytes() for a in arrays]


def test_graph_bounds_hold_for_presets():
    from lmcodec.train import PRESETS

    for preset in PRESETS.values():
        bounds = graph_bounds(ModelConfig.create(**preset))
        assert bounds["attention_z"] < 2**24 and bounds["output_z"] < 2**24 and bounds["ffn_offset_acc"] < 2**24


def test_graphs_contain_no_slow_or_inexact_lookups():
    """Lookup tables go through rank-1 GatherElements (Gather only for the embedding rows, the
    per-position norm factor and, in the step graph, a layer's slab of position biases), and no op
    outside the exact set appears."""
    weights = IntegerWeights.random(CFG, seed=0)
    allowed = {"Abs", "Add", "ArgMin", "Cast", "Clip", "Concat", "Div", "Floor", "Gather", "GatherElements",
               "ReduceProd",
               "GreaterOrEqual", "Greater", "Identity", "MatMul", "Max", "Min", "Mul", "Range", "ReduceMax",
               "ReduceSum", "Reshape", "ScatterElements", "Shape", "Slice", "Split", "Squeeze", "Sub", "Transpose",
               "Unsqueeze", "Where"}
    for graph in (build_full_graph(weights).graph, build_step_graph(weights).graph):
        ops = {node.op_type for node in graph.node}
        assert ops <= allowed, ops - allowed
        assert sum(node.op_type == "Gather" and node.input[0].startswith("lut_") for node in graph.node) == 2 * CFG.n_layers + 1  # the norms


def _run_single(op_nodes, inputs, outputs, feeds):
    graph = helper.make_graph(op_nodes, "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


@pytest.mark.parametrize("dtype", [TensorProto.FLOAT, TensorProto.DOUBLE])
def test_cast_to_int_truncates(dtype):
    """The graphs floor non-negative values by casting them to int32 (truncation toward zero)."""
    x = np.array([0.0, 0.5, 0.999, 1.0, 2.5, 3.5, 126.75, 20000.5, 65279.99], dtype=np.float32 if dtype == TensorProto.FLOAT else np.float64)
    y = _run_single([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.INT32)],
                    [helper.make_tensor_value_info("x", dtype, [None])],
                    [helper.make_tensor_value_info("y", TensorProto.INT32, [None])], {"x": x})
    assert np.array_equal(y, np.floor(x).astype(np.int32))
