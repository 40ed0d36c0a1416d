"""Shared fixtures: a small, exact stand-in FrequencyModel and codec wiring that uses it.

The stand-in is an adaptive order-1 count model (context = start token, or the previous byte's
high nibble), evaluated independently per lane in numpy with integer arithmetic only. Its tables
follow the FrequencyModel contract (entries in [1, 2**16 - 255], rows summing to 2**16), and
``full_freqs`` is defined through the same step function as ``decoder().step``, so the two agree
bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

from lmcodec.frequency_model import N_SYMBOLS, TOTAL, VOCAB_SIZE

_N_CTX = 17  # 16 high-nibble contexts + 1 "after a start token"
_PRIOR = np.where(np.arange(N_SYMBOLS) < 16, 32, 1).astype(np.int64)  # small values are likely


def _context(tokens: np.ndarray) -> np.ndarray:
    return np.where(tokens >= N_SYMBOLS, 16, tokens >> 4)


class _FakeStep:
    def __init__(self, model: FakeModel, batch: int):
        self._model = model
        self._counts = np.broadcast_to(_PRIOR, (batch, _N_CTX, N_SYMBOLS)).copy()
        self._prev_ctx: np.ndarray | None = None
        self._pos = 0

    def step(self, tokens: np.ndarray) -> np.ndarray:
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.shape != (self._counts.shape[0],):
            raise ValueError(f"expected {self._counts.shape[0]} tokens, got {tokens.shape}")
        if np.any((tokens < 0) | (tokens >= VOCAB_SIZE)):
            raise ValueError("token out of range")
        if self._pos >= self._model.context_length:
            raise ValueError("context length exceeded")
        lanes = np.arange(tokens.shape[0])
        if self._prev_ctx is not None:
            # the token just fed is the byte that followed the previous context: learn it
            byte = np.minimum(tokens, N_SYMBOLS - 1)
            learn = tokens < N_SYMBOLS
            self._counts[lanes[learn], self._prev_ctx[learn], byte[learn]] += self._model.increment
        ctx = _context(tokens)
        self._prev_ctx = ctx
        self._pos += 1
        return _quantise(self._counts[lanes, ctx])


def _quantise(counts: np.ndarray) -> np.ndarray:
    """Integer counts [B, 256] -> exact tables: entries >= 1, <= 2**16 - 255, rows sum 2**16."""
    spare = TOTAL - N_SYMBOLS
    total = counts.sum(axis=-1, keepdims=True)
    f = 1 + (counts * spare) // total
    rem = TOTAL - f.sum(axis=-1, keepdims=True)  # 0 <= rem < 256
    f += np.arange(N_SYMBOLS)[None, :] < rem
    return f.astype(np.int32)


class FakeModel:
    """Stand-in FrequencyModel (see module docstring)."""

    def __init__(
        self, context_length: int = 64, model_id: bytes = b"FAKEMDL1", increment: int = 32
    ):
        self.increment = increment
        self.context_length = context_length
        self.model_id = model_id
        self.name = "fake-" + model_id.decode()

    def decoder(self, batch: int) -> _FakeStep:
        return _FakeStep(self, batch)

    def full_freqs(self, tokens: np.ndarray) -> np.ndarray:
        tokens = np.asarray(tokens, dtype=np.int64)
        b, n = tokens.shape
        if n > self.context_length:
            raise ValueError("context length exceeded")
        dec = self.decoder(b)
        out = np.empty((b, n, N_SYMBOLS), dtype=np.int32)
        for i in range(n):
            out[:, i] = dec.step(tokens[:, i])
        return out


FAKE = FakeModel(context_length=256, increment=128)
FAKE_OTHER = FakeModel(context_length=128, model_id=b"FAKEMDL2")


def lm_friendly(n: int, seed: int = 0) -> bytes:
    """Bytes that the stand-in model codes smaller than zstd (i.i.d., skewed to small values)."""
    rng = np.random.default_rng(seed)
    return np.minimum(rng.geometric(0.3, n), 255).astype(np.uint8).tobytes()
FAKE_MODELS = {FAKE.name: FAKE, FAKE_OTHER.name: FAKE_OTHER}


@pytest.fixture
def fake_model() -> FakeModel:
    return FAKE


def install_fake_models(monkeypatch, models=None):
    """Route lmcodec.codec's model resolution to the stand-in models."""
    import lmcodec.codec as codec_mod
    from lmcodec.errors import ModelNotFoundError

    models = FAKE_MODELS if models is None else models

    def load(name, device="auto"):
        name = FAKE.name if name is None else name
        if name not in models:
            raise ModelNotFoundError(f"no model named {name!r}; installed: {sorted(models)}")
        return models[name]

    def load_by_id(model_id, device="auto"):
        for m in models.values():
            if m.model_id == bytes(model_id):
                return m
        raise ModelNotFoundError(
            f"chunk was coded with model id {bytes(model_id).hex()}, which is not installed; "
            f"installed: {sorted(models)}"
        )

    monkeypatch.setattr(codec_mod, "_default_model_name", lambda: FAKE.name)
    monkeypatch.setattr(codec_mod, "_load_model", load)
    monkeypatch.setattr(codec_mod, "_load_model_by_id", load_by_id)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "real_models: use the installed models, not the stand-in, in lmcodec.codec"
    )


@pytest.fixture(autouse=True)
def _fake_models(request, monkeypatch):
    """Every test codes with the stand-in models unless marked ``@pytest.mark.real_models``."""
    if request.node.get_closest_marker("real_models") is None:
        install_fake_models(monkeypatch)
