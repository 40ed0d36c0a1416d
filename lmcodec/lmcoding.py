"""Segment layer: turns byte planes into rANS lanes driven by a :class:`FrequencyModel`.

A chunk is a sequence of *planes*: ``(bytes, kind)`` with ``kind`` from
:func:`lmcodec.frequency_model.kind_id`. Each plane is cut into segments of ``segment_length``
bytes (the last one may be shorter; an empty plane has none), and every segment is one rANS
lane (:mod:`lmcodec.rans`) coded with the model's predictions for the token sequence
``[start_token(kind), b[0], ..., b[n-2]]``. Segments are independent: the model state is reset
at every segment.

All segments of all chunks passed in one call are pooled and run through the model together,
in mini-batches of at most ``max_batch`` lanes (in chunk, plane, segment order; by default the
model's ``lane_batch(segment_length, "encode" | "decode")`` if it has one, else
:data:`DEFAULT_MAX_BATCH`). Because the model is causal and treats each lane independently, the
output does not depend on ``max_batch``.

Body layout of one chunk (``n`` = number of lanes, in plane order then segment order; plane
lengths and kinds are not stored, they come from the caller's layout)::

    n x  word count    unsigned LEB128 varint (7 bits per byte, least significant group
                       first, high bit = more bytes follow); minimal encoding only; a lane's
                       count never exceeds its segment length
    n x  final state   uint32 little-endian, each in [2**16, 2**32)
    all lanes' words   uint16 little-endian, lane after lane, each lane's words in the order
                       the decoder reads them

Nothing else: the body length is exactly ``sum(varint sizes) + 4*n + 2*sum(counts)``. A chunk
with no bytes at all has an empty body.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import CorruptChunkError
from .frequency_model import FrequencyModel, start_token
from .rans import RansLaneDecoder, encode_lanes

Plane = tuple[np.ndarray, int]
"""``(uint8 1-D array of bytes, kind id from frequency_model.kind_id)``."""

DEFAULT_MAX_BATCH = 64
"""Lanes per model call for models without ``lane_batch``; bounds the encoder's memory at
``max_batch * segment_length * 256 * 4`` bytes."""

_STATE_BYTES = 4
_WORD_BYTES = 2
_MIN_LANE_BYTES = 1 + _STATE_BYTES  # a one-byte varint and a state


@dataclass(frozen=True)
class _Lane:
    chunk: int
    plane: int
    start: int  # offset of the segment inside its plane
    length: int
    kind: int


def encode_planes(
    model: FrequencyModel,
    chunks: Sequence[Sequence[Plane]],
    segment_length: int,
    *,
    max_batch: int | None = None,
) -> list[bytes]:
    """Code every chunk's planes; return one body per chunk (layout in the module docstring).

    Raises:
        ValueError: ``segment_length`` not in ``[1, model.context_length]``, ``max_batch < 1``,
            a plane that is not 1-D uint8, a kind out of range, or a model that returns bad
            frequency tables.
    """
    _check_params(model, segment_length, max_batch, ValueError)
    max_batch = _lane_batch(model, segment_length, "encode", max_batch)
    data: list[list[np.ndarray]] = []
    layouts: list[list[tuple[int, int]]] = []
    for planes in chunks:
        arrays, layout = [], []
        for plane, kind in planes:
            array = np.asarray(plane)
            if array.ndim != 1 or array.dtype != np.uint8:
                raise ValueError(f"a plane must be 1-D uint8, got {array.dtype}{array.shape}")
            arrays.append(array)
            layout.append((len(array), kind))
        data.append(arrays)
        layouts.append(layout)
    lanes = _lanes(layouts, segment_length, ValueError)

    states = np.zeros(len(lanes), dtype=np.uint32)
    counts = np.zeros(len(lanes), dtype=np.int64)
    words: list[np.ndarray] = [np.zeros(0, dtype=np.uint16)] * len(lanes)
    for first in range(0, len(lanes), max_batch):
        batch = lanes[first : first + max_batch]
        lengths = np.array([lane.length for lane in batch], dtype=np.int64)
        width = int(lengths.max())
        symbols = np.zeros((len(batch), width), dtype=np.uint8)
        tokens = np.zeros((len(batch), width), dtype=np.int64)  # padded with token 0
        for i, lane in enumerate(batch):
            segment = data[lane.chunk][lane.plane][lane.start : lane.start + lane.length]
            symbols[i, : lane.length] = segment
            tokens[i, 0] = start_token(lane.kind)
            tokens[i, 1 : lane.length] = segment[:-1]
        freqs = model.full_freqs(tokens)
        batch_states, batch_words, batch_counts = encode_lanes(symbols, lengths, freqs)
        states[first : first + len(batch)] = batch_states
        counts[first : first + len(batch)] = batch_counts
        ends = np.cumsum(batch_counts)
        for i, end in enumerate(ends):
            words[first + i] = batch_words[end - batch_counts[i] : end]

    bodies: list[bytearray] = [bytearray() for _ in layouts]
    for i, lane in enumerate(lanes):
        bodies[lane.chunk] += encode_varint(int(counts[i]))
    chunk_of = np.array([lane.chunk for lane in lanes], dtype=np.int64)
    for c, body in enumerate(bodies):
        body += states[chunk_of == c].astype("<u4").tobytes()
    for i, lane in enumerate(lanes):
        bodies[lane.chunk] += words[i].astype("<u2").tobytes()
    return [bytes(body) for body in bodies]


def decode_planes(
    model: FrequencyModel,
    bodies: Sequence[bytes],
    layouts: Sequence[Sequence[tuple[int, int]]],
    segment_length: int,
    *,
    max_batch: int | None = None,
) -> list[list[np.ndarray]]:
    """Inverse of :func:`encode_planes`: ``layouts[c]`` lists chunk ``c``'s ``(length, kind)``.

    Returns, per chunk, its planes as uint8 arrays.

    Raises:
        CorruptChunkError: a body that does not match its layout or fails to decode (also for
            an impossible layout or segment length, which can only come from a bad header).
        ValueError: ``len(bodies) != len(layouts)`` or ``max_batch < 1``.
    """
    if len(bodies) != len(layouts):
        raise ValueError(f"{len(bodies)} bodies but {len(layouts)} layouts")
    _check_params(model, segment_length, max_batch, CorruptChunkError)
    max_batch = _lane_batch(model, segment_length, "decode", max_batch)

    # Validate every body against its layout before allocating anything sized by the layout.
    lanes: list[_Lane] = []
    states: list[np.ndarray] = []
    counts: list[list[int]] = []
    words: list[np.ndarray] = []
    for c, (body, layout) in enumerate(zip(bodies, layouts, strict=True)):
        view = memoryview(body).cast("B")
        n_lanes = _count_lanes(layout, segment_length)
        if len(view) < _MIN_LANE_BYTES * n_lanes:
            raise CorruptChunkError(f"chunk {c}: body too short for {n_lanes} segments")
        chunk_lanes = _lanes([layout], segment_length, CorruptChunkError)
        chunk_counts, pos = [], 0
        for lane in chunk_lanes:
            count, pos = read_varint(view, pos, lane.length)
            chunk_counts.append(count)
        expected = pos + _STATE_BYTES * n_lanes + _WORD_BYTES * sum(chunk_counts)
        if len(view) != expected:
            raise CorruptChunkError(f"chunk {c}: body is {len(view)} bytes, expected {expected}")
        states.append(np.frombuffer(view, dtype="<u4", count=n_lanes, offset=pos))
        words.append(
            np.frombuffer(
                view, dtype="<u2", count=sum(chunk_counts), offset=pos + _STATE_BYTES * n_lanes
            )
        )
        counts.append(chunk_counts)
        lanes += [_Lane(c, lane.plane, lane.start, lane.length, lane.kind) for lane in chunk_lanes]

    all_states = np.concatenate(states) if states else np.zeros(0, dtype=np.uint32)
    all_counts = np.array([n for chunk in counts for n in chunk], dtype=np.int64)
    word_ends = np.cumsum(all_counts)
    all_words = np.concatenate(words) if words else np.zeros(0, dtype=np.uint16)
    out = [[np.zeros(length, dtype=np.uint8) for length, _ in layout] for layout in layouts]

    for first in range(0, len(lanes), max_batch):
        batch = lanes[first : first + max_batch]
        last = first + len(batch)
        lengths = np.array([lane.length for lane in batch], dtype=np.int64)
        word_lo = int(word_ends[first - 1]) if first else 0
        coder = RansLaneDecoder(
            all_states[first:last].astype(np.uint32),
            all_words[word_lo : int(word_ends[last - 1])].astype(np.uint16),
            all_counts[first:last],
        )
        stepper = model.decoder(len(batch))
        tokens = np.array([start_token(lane.kind) for lane in batch], dtype=np.int64)
        decoded = np.zeros((len(batch), int(lengths.max())), dtype=np.uint8)
        for p in range(decoded.shape[1]):
            symbols = coder.decode_step(stepper.step(tokens), lengths > p)
            decoded[:, p] = symbols
            tokens = symbols.astype(np.int64)  # finished lanes get 0
        coder.finish()
        for i, lane in enumerate(batch):
            out[lane.chunk][lane.plane][lane.start : lane.start + lane.length] = decoded[
                i, : lane.length
            ]
    return out


def _check_params(
    model: FrequencyModel, segment_length: int, max_batch: int | None, error: type[Exception]
) -> None:
    if not isinstance(segment_length, (int, np.integer)) or not (
        1 <= segment_length <= model.context_length
    ):
        raise error(f"segment_length {segment_length} not in [1, {model.context_length}]")
    if max_batch is not None and max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")


def _lane_batch(model: FrequencyModel, segment_length: int, purpose: str, max_batch: int | None) -> int:
    """``max_batch`` if given, else the model's preferred lanes per batch (speed/memory only)."""
    if max_batch is not None:
        return max_batch
    pick = getattr(model, "lane_batch", None)
    return max(1, int(pick(segment_length, purpose))) if pick is not None else DEFAULT_MAX_BATCH


def _count_lanes(layout: Sequence[tuple[int, int]], segment_length: int) -> int:
    """Number of segments in a layout, by arithmetic only (a corrupt length may be huge)."""
    total = 0
    for length, _ in layout:
        if not isinstance(length, (int, np.integer)) or length < 0:
            raise CorruptChunkError(f"invalid plane length {length!r}")
        total += -(-int(length) // segment_length)
    return total


def _lanes(
    layouts: Sequence[Sequence[tuple[int, int]]], segment_length: int, error: type[Exception]
) -> list[_Lane]:
    """Every segment of every chunk, in chunk, plane, segment order."""
    lanes = []
    for c, layout in enumerate(layouts):
        for p, (length, kind) in enumerate(layout):
            try:
                start_token(int(kind))
            except (TypeError, ValueError):
                raise error(f"invalid kind {kind!r}") from None
            for start in range(0, int(length), segment_length):
                size = min(segment_length, int(length) - start)
                lanes.append(_Lane(c, p, start, size, int(kind)))
    return lanes


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_varint(view: memoryview, pos: int, cap: int, what: str = "word count") -> tuple[int, int]:
    """Read a minimal unsigned LEB128 value ``<= cap`` at ``pos``; return ``(value, new pos)``.

    Raises :class:`CorruptChunkError` (naming ``what``) for a truncated, non-minimal or too
    large value; never reads more than ``cap.bit_length() // 7 + 1`` bytes.
    """
    value, shift = 0, 0
    while True:
        if pos >= len(view):
            raise CorruptChunkError(f"truncated {what}")
        byte = view[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if value > cap:
            raise CorruptChunkError(f"{what} {value} exceeds its bound {cap}")
        if byte < 0x80:
            if byte == 0 and shift:
                raise CorruptChunkError(f"non-minimal {what} encoding")
            return value, pos
        shift += 7
