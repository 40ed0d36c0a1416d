"""Bit-exactness of every evaluation path against the int64 numpy reference.

Paths: PyTorch integer forward (QAT model), ONNX full-sequence graph, ONNX step graph with KV
cache; batch sizes 1, 3, 64; onnxruntime intra-op threads 1 and 2; graph optimisations on and
off; CUDA when present. Comparisons are exact equality, never a tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest

from lmcodec.frequency_model import TOTAL, start_token
from lmcodec.model.reference import forward
from lmcodec.model.spec import ModelConfig, check_bounds
from lmcodec.model.weights import IntegerWeights
from lmcodec.models import load_model, register_model
from lmcodec.runtime import OnnxFrequencyModel, available_devices

CFG = ModelConfig.create(d_model=64, n_layers=2, n_heads=4, d_ff=256, context_length=48)
N = CFG.context_length


def _weights() -> dict[str, IntegerWeights]:
    return {
        "random": IntegerWeights.random(CFG, seed=1, scale=0.3),
        "random_full_range": IntegerWeights.random(CFG, seed=2, scale=1.0),
        "extreme_pos": IntegerWeights.extreme(CFG, 1),
        "extreme_neg": IntegerWeights.extreme(CFG, -1),
    }


def _tokens(kind: str, batch: int) -> np.ndarray:
    rng = np.random.default_rng(batch)
    if kind == "random":
        t = rng.integers(0, 256, (batch, N))
    elif kind == "equal":
        t = np.full((batch, N), 7)
    else:  # alternating extremes
        t = np.tile(np.array([0, 255]), (batch, N // 2))
    t[:, 0] = [start_token(k % 29) for k in range(batch)]
    return t.astype(np.int64)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, tuple[IntegerWeights, dict]]:
    out = {}
    for name, w in _weights().items():
        directory = tmp_path_factory.mktemp(name)
        entry = register_model(w, name, training={}, directory=directory)
        out[name] = (w, entry, directory)
    return out


def _runtime(exported_item, **kwargs) -> OnnxFrequencyModel:
    w, entry, directory = exported_item
    return OnnxFrequencyModel(directory / entry["files"]["full"]["path"], directory / entry["files"]["step"]["path"],
                              w.config, bytes.fromhex(entry["model_id"]), **kwargs)


def _stepwise(model, tokens: np.ndarray) -> np.ndarray:
    dec = model.decoder(tokens.shape[0])
    return np.stack([dec.step(tokens[:, i]) for i in range(tokens.shape[1])], axis=1)


def test_bounds_hold_for_presets():
    from lmcodec.train import PRESETS

    for preset in PRESETS.values():
        bounds = check_bounds(ModelConfig.create(**preset))
        assert max(bounds.values()) < 2**24


def test_reference_tables_are_valid():
    f = forward(_weights()["random"], _tokens("random", 3))
    assert f.dtype == np.int32
    assert (f >= 1).all() and (f.sum(-1) == TOTAL).all()


@pytest.mark.parametrize("weights", list(_weights()))
@pytest.mark.parametrize("inputs", ["random", "equal", "alternating"])
@pytest.mark.parametrize("batch", [1, 3, 64])
def test_onnx_full_and_step_equal_reference(exported, weights, inputs, batch):
    tokens = _tokens(inputs, batch)
    expected = forward(exported[weights][0], tokens)
    model = _runtime(exported[weights], device="cpu")
    assert np.array_equal(model.full_freqs(tokens), expected)
    if batch != 64 or inputs == "random":  # keep the step loop count modest
        assert np.array_equal(_stepwise(model, tokens), expected)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("optimize", [True, False])
def test_session_settings_do_not_change_output(exported, threads, optimize):
    tokens = _tokens("random", 5)
    expected = forward(exported["random_full_range"][0], tokens)
    model = _runtime(exported["random_full_range"], device="cpu", threads=threads, optimize=optimize)
    assert np.array_equal(model.full_freqs(tokens), expected)
    assert np.array_equal(_stepwise(model, tokens), expected)


def test_prefix_lengths_and_batch_split_agree(exported):
    """A row's tables do not depend on its batch mates or on later positions."""
    tokens = _tokens("random", 6)
    model = _runtime(exported["random"], device="cpu")
    whole = model.full_freqs(tokens)
    for n in (1, 2, N // 2 + 1):
        assert np.array_equal(model.full_freqs(tokens[:, :n]), whole[:, :n])
    assert np.array_equal(np.concatenate([model.full_freqs(tokens[i:i + 1]) for i in range(6)]), whole)


@pytest.mark.skipif("cuda" not in available_devices(), reason="no CUDA execution provider")
def test_cuda_equals_reference(exported):
    for name in ("random_full_range", "extreme_pos"):
        tokens = _tokens("random", 8)
        model = _runtime(exported[name], device="cuda")
        expected = forward(exported[name][0], tokens)
        assert np.array_equal(model.full_freqs(tokens), expected)
        assert np.array_equal(_stepwise(model, tokens), expected)


def test_torch_integer_forward_equals_reference():
    torch = pytest.importorskip("torch")
    from lmcodec.model.qat import QATModel
    from lmcodec.model.reference import frequencies

    torch.manual_seed(0)
    model = QATModel(CFG)
    tokens = _tokens("random", 3)
    with torch.no_grad():
        logits = model(torch.from_numpy(tokens), exact=True).numpy().astype(np.int64)
    assert np.array_equal(frequencies(logits, CFG.shift_logits), forward(model.to_integer_weights(), tokens))


def test_torch_cuda_integer_forward_equals_reference():
    """The training forward on a GPU (cuBLAS matmuls, TF32 off) gives the reference integers."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device for torch")
    from lmcodec.model.qat import QATModel
    from lmcodec.model.reference import frequencies

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    model = QATModel(CFG).cuda()
    for batch in (1, 3, 64):
        tokens = _tokens("random", batch)
        with torch.no_grad():
            logits = model(torch.from_numpy(tokens).cuda(), exact=True).cpu().numpy().astype(np.int64)
        assert np.array_equal(frequencies(logits, CFG.shift_logits), forward(model.to_integer_weights(), tokens))


def test_shipped_default_model_paths_agree():
    """The shipped model on real bytes (matplotlib's bundled EEG sample): reference, full graph,
    step graph. Its id is the digest of its shipped integer weights, and its graphs are exactly
    what the exporter builds from them."""
    try:
        model = load_model(device="cpu")
    except LookupError:
        pytest.skip("no default model installed")
    from lmcodec.model.export import build_full_graph, build_step_graph
    from lmcodec.models import _find

    directory, _, entry = _find(None)
    weights = IntegerWeights.from_bytes((directory / entry["files"]["weights"]["path"]).read_bytes())
    assert weights.digest()[:8] == model.model_id
    assert build_full_graph(weights).SerializeToString() == (directory / entry["files"]["full"]["path"]).read_bytes()
    assert build_step_graph(weights).SerializeToString() == (directory / entry["files"]["step"]["path"]).read_bytes()
    import matplotlib.cbook

    raw = np.frombuffer(matplotlib.cbook.get_sample_data("eeg.dat").read(), dtype=np.uint8)
    n = 96
    tokens = np.stack([np.concatenate([[start_token(0)], raw[i * n:(i + 1) * n - 1]]) for i in range(3)]).astype(np.int64)
    expected = forward(weights, tokens)
    assert np.array_equal(model.full_freqs(tokens), expected)
    assert np.array_equal(_stepwise(model, tokens), expected)
