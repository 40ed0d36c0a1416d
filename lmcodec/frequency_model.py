"""The contract between a probability model and the entropy coder.

A frequency model predicts the next byte of a *segment* as an integer frequency table:
``PRECISION_BITS = 16``, every entry is an integer in ``[1, 2**16 - 255]`` and each row sums to
exactly ``TOTAL = 2**16``. Nothing about floating point crosses this boundary, so the coder is
exact by construction; the model side proves its own exactness (docs/model.md).

Token alphabet: ``0..255`` are byte values; ``256 + kind`` is the start token that opens a segment
and tells the model what kind of bytes follow (see :func:`kind_id`). A segment of ``n`` bytes
``b[0..n-1]`` is fed as tokens ``[start, b[0], ..., b[n-2]]`` and the table at position ``i``
is the model's prediction for ``b[i]``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

PRECISION_BITS = 16
TOTAL = 1 << PRECISION_BITS
N_SYMBOLS = 256

# Start-token kinds: one for plain bytes, then one per byte plane of each numeric dtype
# (plane 0 = least significant byte). Order is frozen: it is part of every shipped model.
_KIND_BASE: dict[tuple[str, int], int] = {
    ("b", 1): 0,  # bytes, text, uint8/int8 and anything without a known numeric layout
    ("i", 2): 1,  # int16/uint16 planes 0..1  -> kinds 1..2
    ("i", 4): 3,  # int32/uint32 planes 0..3  -> kinds 3..6
    ("i", 8): 7,  # int64/uint64 planes 0..7  -> kinds 7..14
    ("f", 2): 15,  # float16 planes 0..1      -> kinds 15..16
    ("f", 4): 17,  # float32 planes 0..3      -> kinds 17..20
    ("f", 8): 21,  # float64 planes 0..7      -> kinds 21..28
}
N_KINDS = 29
VOCAB_SIZE = N_SYMBOLS + N_KINDS


def kind_id(dtype_kind: str, itemsize: int, plane: int) -> int:
    """Start-token kind for byte ``plane`` (0 = least significant) of a numeric element.

    ``dtype_kind`` is numpy's ``dtype.kind``; 'u' and 'i' share kinds, 'f' has its own, every
    other layout (and itemsize 1) is kind 0.
    """
    family = "f" if dtype_kind == "f" else ("i" if dtype_kind in "iu" else "b")
    base = _KIND_BASE.get((family, itemsize))
    if base is None or itemsize == 1:
        return 0
    if not 0 <= plane < itemsize:
        raise ValueError(f"plane {plane} out of range for itemsize {itemsize}")
    return base + plane


def start_token(kind: int) -> int:
    """Token id of the start token for ``kind``."""
    if not 0 <= kind < N_KINDS:
        raise ValueError(f"kind {kind} out of range 0..{N_KINDS - 1}")
    return N_SYMBOLS + kind


class StepDecoder(Protocol):
    """Incremental evaluation: all lanes advance one position per call."""

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """Feed ``tokens`` (int64 ``[B]``) at the current position of every lane.

        Returns the int32 ``[B, 256]`` frequency tables for the next position.
        """
        ...


class FrequencyModel(Protocol):
    """What the entropy-coding layer needs from a model (ONNX runtime or a test stand-in)."""

    context_length: int
    """Maximum tokens per segment ``T``; a segment holds at most ``T`` bytes."""

    model_id: bytes
    """8-byte identifier stored in each chunk header; decoders refuse other models."""

    def full_freqs(self, tokens: np.ndarray) -> np.ndarray:
        """Frequencies for every position of a batch at once.

        ``tokens``: int64 ``[B, n]`` with ``n <= context_length``; returns int32 ``[B, n, 256]``.
        Must equal, bit for bit, what ``decoder(B).step`` yields position by position.
        """
        ...

    def decoder(self, batch: int) -> StepDecoder:
        """A fresh incremental evaluator for ``batch`` lanes, positioned at token 0."""
        ...
