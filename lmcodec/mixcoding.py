"""Stream layer of mode ``lm_mix``: the Transformer's tables mixed with adaptive statistics.

Where :mod:`lmcoding` codes every segment on its own, this layer cuts each byte plane into a few
long *streams* (``segments_per_stream`` segments each; the last stream of a plane may be
shorter). A stream is one rANS lane and one :class:`~lmcodec.mixing.AdaptiveMixer` lane: the
model restarts at every segment of the stream (token sequence ``[start_token(kind), b[0], ...]``
per segment, exactly as in :mod:`lmcoding`), while the mixer's counts, match model and weights
carry on across the whole stream, which is how repeats far beyond one segment are found. With
mixer version 2 (format version 3) the streams of one plane are one mixer group and share their
counts and match tables, so a stream also learns from (and matches into) the bytes its plane's
other streams have coded so far, while all of them still advance together. Mixer version 3
(format version 4, written now) adds hashed order-4 and order-6 contexts and weight sets for
longer matches. Format version 5 adds the decimal step (:mod:`lmcodec.decimals`, written for
float chunks of short decimals) and lets a body carry any mixer version.
The mixer turns the model's table at each position into the table that is coded
(docs/format.md §4.4 and :mod:`lmcodec.mixing` give the rules; :data:`MIXER_RULES` pins them per
mixer version).

A stream that would not get smaller is stored raw (one bit in the body), so no stream costs more
than 8 bits per byte plus its share of the bitmap (with mixer versions 2 and 3 its bytes still feed
its group's statistics, on both sides).

Streams of all chunks of one call are processed in batches of about ``group`` lanes, a plane's
streams (a mixer group) never split (any batching gives the same bytes: groups never interact).
Inside a batch, *round* ``k`` runs segment ``k`` of every stream that has one: the encoder gets
the model's tables for a block of rounds in one full-sequence call and runs the mixer through
them (:meth:`AdaptiveMixer.code`, mixer groups spread over the model's worker threads); the
decoder advances the model's step graph, the mixer and the rANS decoder together, one byte of
every stream per step, and with several CPU workers decodes one batch per worker concurrently.

Body layout (after the chunk header; ``n`` streams in plane order, then stream order)::

    u8        mixer version: 1 in format version 2, 2 in format version 3, 3 (MIXER_VERSION) in
              format version 4, any of them in format version 5
    u8        element transform applied before the byte shuffle (lmcodec.transforms):
              0 none, 1 delta, 2 up, 3 delta_zz, 4 up_zz (3 and 4 with mixer version >= 2;
              up and up_zz need r >= 1); in format version 5 bit 3 (0x08) set = a decimal
              step section follows the varints
    varint    segments per stream m, 1 <= m, m * segment_length <= MAX_STREAM_LENGTH
    varint    record length r, 0 <= r <= MAX_RECORD_LENGTH (0: the mixer detects it)
    [step]    with a decimal step only: its section (lmcodec.decimals; the header's dtype is then
              the integers' dtype or plain bytes)
    ceil(n/8) raw bitmap: bit i (least significant bit first) of byte i // 8 set = stream i
              is stored raw; the unused high bits of the last byte are 0
    c x       word count varint, one per coded (not raw) stream, each <= the stream's length
    c x       final state uint32, each in [2**16, 2**32)
    words     uint16, coded streams one after another (as in lmcoding)
    raw       the raw streams' bytes, one after another

The body length is exactly the sum of these parts; anything else is a corrupt chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from .decimals import DecimalStep, pack_step, read_step, read_step_dtype
from .errors import CorruptChunkError
from .format import WRITE_VERSION, Mode
from .frequency_model import N_SYMBOLS, FrequencyModel, start_token
from .lmcoding import encode_varint, read_varint
from .mixing import DEFAULT_CONFIG, AdaptiveMixer, MixerConfig
from .preprocess import Plane
from .rans import STATE_LOWER, RansLaneDecoder, encode_intervals
from .transforms import Transform

MIXER_VERSION = 3
"""Mixer rules the encoder writes by default (:data:`MIXER_RULES`)."""
_MIXER_V2 = replace(DEFAULT_CONFIG, o2_bits=14, hash_bits=18)
MIXER_RULES: dict[int, tuple[MixerConfig, bool]] = {
    1: (DEFAULT_CONFIG, False),
    2: (_MIXER_V2, True),
    3: (replace(_MIXER_V2, components=DEFAULT_CONFIG.components + ("o4", "o6"), o4_bits=16, o6_bits=16,
                set_len_edges=(1, 8), scale_tables=True), True),
}
"""Frozen per mixer version: ``(config, shared)``. ``shared``: the streams of one plane of one
chunk are one group of :class:`AdaptiveMixer` lanes sharing their statistics; otherwise every
stream is a group of its own."""
DECIMAL_FORMAT = 5
"""The chunk format version that added the decimal step (:mod:`lmcodec.decimals`): its bodies
may carry any mixer version, and a body with a decimal step needs it."""
MIXERS_OF_FORMAT = {2: frozenset({1}), 3: frozenset({2}), 4: frozenset({3}), DECIMAL_FORMAT: frozenset({1, 2, 3})}
"""The mixer versions an ``lm_mix`` body may have, by its chunk's format version."""
FORMAT_OF_MIXER = {1: 2, 2: 3, 3: 4}
"""The chunk format version an encoder writes for each mixer version without a decimal step (the
lowest that defines it; every one stays readable, so an encoder may write an older, faster mixer
version: ``LMCodec(mixer_version=...)``)."""
assert FORMAT_OF_MIXER[MIXER_VERSION] == WRITE_VERSION[Mode.LM_MIX]
assert all(mixer in MIXERS_OF_FORMAT[fmt] for mixer, fmt in FORMAT_OF_MIXER.items())
DEFAULT_STREAM_LENGTH = 16384
"""Bytes per stream unless configured (a multiple of every shipped context length)."""
MAX_STREAM_LENGTH = 1 << 24
"""Largest stream, bytes (bounds the mixer's per-lane counters and the encoder's buffers)."""
MAX_RECORD_LENGTH = (1 << DEFAULT_CONFIG.history_bits) - 1
"""Largest explicit record length, bytes (65535: the mixer looks back through a 64 KiB history)."""
DEFAULT_GROUP = 64
"""Streams processed together (memory: about 1 MB of mixer state per stream, and since mixer
version 3 up to 2-4 rows of 256 bytes per coded byte in each of the o2/o4/o6 tables of a plane,
at most 4 + 2 x 16 MiB per plane, touched only where written; plus the model's
tables of one block of rounds while encoding: ``ENCODE_TABLE_BYTES``, or one round of
``group * segment_length * 1 KiB`` when that is more, e.g. 64 MiB for lm-small-v1)."""
MIN_CONCURRENT_CACHE_BYTES = 1 << 20
"""Decoding splits its streams over several CPU workers only while each worker's batch reads at
least this much KV cache per step (``lanes x model.cache_bytes_per_lane()``). Below that a step's
model work is small against its fixed costs, and two threads that hand the GIL to each other
several times per step decode more slowly than one (measured on a 2-core VM, fast preset, one
chunk per call: 64 KiB 25.9 against 20.5 KB/s, 1 MiB 118.9 against 165.2; lm-small-v1 at 64 KiB
9.3 against 10.5, docs/performance.md)."""
ENCODE_TABLE_BYTES = 16 << 20
"""The encoder's budget for one block of model tables (1 KiB per byte): a group takes as many
rounds per model call as fit, and at least one (16 MiB measured faster than 64 MiB: the tables
stay in the cache between the model writing and the mixer reading them). Two blocks are held at
once: the one the mixer codes and the next one the model computes."""

_STATE_BYTES = 4
_WORD_BYTES = 2
_ALL_TRANSFORMS = frozenset(int(t) for t in Transform)
_DECIMAL_FLAG = 0x08
"""Format version 5: this bit of the transform byte says a decimal step section follows the
varints (the transform id is in bits 0..2; bits 4..7 are zero)."""
MIXER_TRANSFORMS = {1: frozenset(range(3)), 2: _ALL_TRANSFORMS, 3: _ALL_TRANSFORMS}
"""Transform ids each mixer version's bodies may carry in format versions 2 to 4 (zigzag ones came
with mixer version 2); format version 5 bodies may carry every transform with any mixer version."""


def written_format(mixer_version: int, decimal: bool) -> int:
    """The chunk format version an ``lm_mix`` body is written with: :data:`DECIMAL_FORMAT` with a
    decimal step, else the lowest that defines ``mixer_version`` (:data:`FORMAT_OF_MIXER`)."""
    return DECIMAL_FORMAT if decimal else FORMAT_OF_MIXER[mixer_version]


def body_transforms(format_version: int, mixer_version: int) -> frozenset[int]:
    """The transform ids a body of ``format_version`` with ``mixer_version`` may carry."""
    return _ALL_TRANSFORMS if format_version >= DECIMAL_FORMAT else MIXER_TRANSFORMS[mixer_version]


@dataclass(frozen=True)
class _Stream:
    chunk: int
    plane: int
    start: int  # offset in the plane
    length: int
    kind: int


@dataclass(frozen=True)
class StreamParams:
    """Per-chunk parameters stored at the start of the body."""

    segments_per_stream: int
    record_length: int = 0
    transform: int = 0
    """:class:`lmcodec.transforms.Transform` id; the caller applies it (and inverts it)."""
    decimal: DecimalStep | None = None
    """The decimal step (format version 5; the caller applies it before the transform and
    inverts it after)."""

    def stream_length(self, segment_length: int) -> int:
        return self.segments_per_stream * segment_length


def streams_of(
    layout: Sequence[tuple[int, int]], stream_length: int, chunk: int = 0
) -> list[_Stream]:
    """The streams of one chunk's plane layout ``[(length, kind), ...]``, in body order."""
    out = []
    for p, (length, kind) in enumerate(layout):
        for start in range(0, int(length), stream_length):
            out.append(_Stream(chunk, p, start, min(stream_length, int(length) - start), int(kind)))
    return out


def _count_streams(layout: Sequence[tuple[int, int]], stream_length: int) -> int:
    """Number of streams, by arithmetic only (a corrupt layout may declare huge lengths)."""
    return sum(-(-int(length) // stream_length) for length, _ in layout)


def encode_chunks(
    model: FrequencyModel,
    chunks: Sequence[Sequence[Plane]],
    segment_length: int,
    params: Sequence[StreamParams],
    *,
    group: int = DEFAULT_GROUP,
    mixer_version: int = MIXER_VERSION,
) -> list[bytes]:
    """Code every chunk's planes; return one ``lm_mix`` body per chunk (module docstring).

    ``params[c]`` are chunk ``c``'s stream parameters; ``mixer_version`` picks the rules
    (:data:`MIXER_RULES`; the chunk header must then carry ``FORMAT_OF_MIXER[mixer_version]``).
    Raises ``ValueError`` for an unknown mixer version, parameters outside the format's bounds
    (or a transform that mixer version lacks) or planes that are not 1-D uint8.
    """
    if len(params) != len(chunks):
        raise ValueError(f"{len(params)} parameter sets for {len(chunks)} chunks")
    if mixer_version not in MIXER_RULES:
        raise ValueError(f"unknown mixer version {mixer_version!r}; known: {sorted(MIXER_RULES)}")
    if not 1 <= segment_length <= model.context_length:
        raise ValueError(f"segment_length {segment_length} not in [1, {model.context_length}]")
    streams: list[_Stream] = []
    data: list[list[np.ndarray]] = []
    for c, (planes, prm) in enumerate(zip(chunks, params)):
        fmt = written_format(mixer_version, prm.decimal is not None)
        _check_params(prm, segment_length, ValueError, body_transforms(fmt, mixer_version))
        arrays = []
        for plane, _ in planes:
            a = np.asarray(plane)
            if a.ndim != 1 or a.dtype != np.uint8:
                raise ValueError(f"a plane must be 1-D uint8, got {a.dtype}{a.shape}")
            arrays.append(a)
        data.append(arrays)
        layout = [(len(a), kind) for a, (_, kind) in zip(arrays, planes)]
        streams += streams_of(layout, prm.stream_length(segment_length), c)

    config, shared = MIXER_RULES[mixer_version]
    coded: list[tuple[int, int, np.ndarray] | None] = [None] * len(streams)  # (state, count, words)
    for batch, groups in _batches(_units(streams, shared), group):
        members = [streams[i] for i in batch]
        symbols = [data[s.chunk][s.plane][s.start : s.start + s.length] for s in members]
        records = [params[s.chunk].record_length for s in members]
        lengths = np.array([s.length for s in members], dtype=np.int64)
        mixer = _new_mixer(records, lengths, config, groups)
        cums, freqs = _mixed_intervals(model, mixer, symbols, [s.kind for s in members], segment_length)
        states, words, counts = encode_intervals(cums, freqs, lengths)
        ends = np.cumsum(counts)
        for k, i in enumerate(batch):
            coded[i] = (int(states[k]), int(counts[k]), words[ends[k] - counts[k] : ends[k]])

    bodies = []
    for c, prm in enumerate(params):
        idx = [i for i, s in enumerate(streams) if s.chunk == c]
        raw = [_coded_size(coded[i][1]) >= streams[i].length for i in idx]  # type: ignore[index]
        body = bytearray([mixer_version, _transform_byte(prm)])
        body += encode_varint(prm.segments_per_stream) + encode_varint(prm.record_length)
        if prm.decimal is not None:
            body += pack_step(prm.decimal)
        bitmap = np.zeros(-(-len(idx) // 8) * 8, dtype=np.uint8)
        bitmap[: len(idx)] = raw
        body += np.packbits(bitmap, bitorder="little").tobytes()
        kept = [i for i, r in zip(idx, raw) if not r]
        for i in kept:
            body += encode_varint(coded[i][1])  # type: ignore[index]
        body += np.array([coded[i][0] for i in kept], dtype="<u4").tobytes()  # type: ignore[index]
        for i in kept:
            body += coded[i][2].astype("<u2").tobytes()  # type: ignore[index]
        for i, r in zip(idx, raw):
            if r:
                s = streams[i]
                body += data[c][s.plane][s.start : s.start + s.length].tobytes()
        bodies.append(bytes(body))
    return bodies


def _units(streams: Sequence[_Stream], shared: bool) -> list[list[int]]:
    """Indices of the streams that share one mixer group: a chunk's plane when ``shared``,
    else each stream alone."""
    units: list[list[int]] = []
    for i, s in enumerate(streams):
        prev = streams[i - 1] if i else None
        if shared and units and prev is not None and (prev.chunk, prev.plane) == (s.chunk, s.plane):
            units[-1].append(i)
        else:
            units.append([i])
    return units


def _batches(units: list[list[int]], size: int) -> list[tuple[list[int], np.ndarray]]:
    """Consecutive units packed into batches of at most ``size`` streams (a larger unit is a
    batch of its own), each with the mixer group of every member (0, 1, ... per unit)."""
    out: list[tuple[list[int], list[int]]] = []
    for unit in units:
        if not out or len(out[-1][0]) + len(unit) > size:
            out.append(([], []))
        members, groups = out[-1]
        groups += [groups[-1] + 1 if groups else 0] * len(unit)
        members += unit
    return [(members, np.array(groups, dtype=np.int64)) for members, groups in out]


def _coded_size(word_count: int) -> int:
    """Body bytes of one coded stream: its word count varint, final state and words."""
    return len(encode_varint(word_count)) + _STATE_BYTES + _WORD_BYTES * word_count


def _mixed_intervals(
    model: FrequencyModel,
    mixer: AdaptiveMixer,
    symbols: list[np.ndarray],
    kinds: list[int],
    segment_length: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The coded symbol's ``(cum, freq)`` at every position of every stream of a batch (one
    ``mixer`` lane each).

    Rounds are taken ``rounds`` at a time (as many as keep the model's tables within
    ``ENCODE_TABLE_BYTES``): one model call gives the tables of every segment of those rounds, then
    the mixer runs through all of them lane by lane, so a lane's state is loaded into the cache
    once per block of rounds rather than once per segment. The model computes the next block's
    tables on a helper thread while the mixer runs through the current block (both release the
    GIL), so a batch whose mixer work is one group (one core) leaves the other core to the
    model. The intervals depend on neither.
    """
    n = len(symbols)
    lengths = np.array([len(s) for s in symbols], dtype=np.int64)
    width = int(lengths.max())
    cums = np.zeros((n, width), dtype=np.int32)
    freqs = np.ones((n, width), dtype=np.int32)
    rounds = max(1, ENCODE_TABLE_BYTES // (n * segment_length * N_SYMBOLS * 4))
    blocks = _encode_blocks(symbols, kinds, lengths, segment_length, rounds)
    with ThreadPoolExecutor(1, thread_name_prefix="lmcodec-tables") as ahead:
        block = next(blocks, None)
        tables = ahead.submit(_block_tables, model, block) if block is not None else None
        while block is not None:
            lm = tables.result()
            following = next(blocks, None)
            if following is not None:
                tables = ahead.submit(_block_tables, model, following)
            cum, freq = mixer.code(lm, block.symbols, block.active, block.count, getattr(model, "parallel", None))
            for j, i in enumerate(block.active):
                cums[i, block.lo : block.lo + int(block.count[j])] = cum[j, : block.count[j]]
                freqs[i, block.lo : block.lo + int(block.count[j])] = freq[j, : block.count[j]]
            block = following
    return cums, freqs


@dataclass(frozen=True)
class _Block:
    """Rounds ``[lo, lo + count)`` of the ``active`` lanes: the model's input ``tokens [lanes,
    rounds, row]`` (``used``: rows that hold a real segment) and the bytes to code."""

    lo: int
    active: np.ndarray
    count: np.ndarray
    tokens: np.ndarray
    used: np.ndarray
    symbols: np.ndarray


def _encode_blocks(symbols: list[np.ndarray], kinds: list[int], lengths: np.ndarray, seg: int, rounds: int):
    """The encoder's blocks of ``rounds`` segments of every lane (see :func:`_mixed_intervals`)."""
    block = rounds * seg
    for lo in range(0, int(lengths.max()), block):
        active = np.flatnonzero(lengths > lo)
        count = np.minimum(lengths[active] - lo, block)  # bytes of each active lane in this block, >= 1
        n_seg = -(-count // seg)  # segments of each active lane in this block
        used_rounds = int(n_seg.max())
        # rows are whole segments, or only as long as the longest lane when no lane has a second one
        row = seg if used_rounds > 1 else int(count.max())
        tokens = np.zeros((len(active), used_rounds, row), dtype=np.int64)
        block_syms = np.zeros((len(active), used_rounds * row), dtype=np.uint8)
        for j, i in enumerate(active):
            part = symbols[i][lo : lo + int(count[j])]
            block_syms[j, : len(part)] = part
            for r in range(int(n_seg[j])):
                piece = part[r * seg : (r + 1) * seg]
                tokens[j, r, 0] = start_token(kinds[i])
                tokens[j, r, 1 : len(piece)] = piece[:-1]
        used = np.arange(used_rounds)[None, :] < n_seg[:, None]
        yield _Block(lo, active, count, tokens, used, block_syms)


def _block_tables(model: FrequencyModel, block: _Block) -> np.ndarray:
    """The model's tables ``[lanes, rounds * row, 256]`` of one block; rows past a lane's end are
    never read, so any valid table stands there."""
    lanes, used_rounds, row = block.tokens.shape
    if block.used.all():
        lm = model.full_freqs(block.tokens.reshape(-1, row))
    else:
        lm = np.ones((lanes, used_rounds, row, N_SYMBOLS), dtype=np.int32)
        lm[block.used] = model.full_freqs(block.tokens[block.used])
    return lm.reshape(lanes, used_rounds * row, N_SYMBOLS)


def _new_mixer(records: list[int], lengths: np.ndarray, config: MixerConfig, groups: np.ndarray) -> AdaptiveMixer:
    """The mixer of one batch: lane ``i`` codes ``lengths[i]`` bytes with record length
    ``records[i]`` (0: detected) in group ``groups[i]`` (a group's tables are sized to the bytes
    of all its lanes where the config says so)."""
    group_bytes = np.bincount(groups, weights=lengths, minlength=int(groups[-1]) + 1).astype(np.int64)
    mixer = AdaptiveMixer(len(records), config, groups=groups, group_bytes=group_bytes)
    rec = np.array(records, dtype=np.int64)
    if np.any(rec > 0):
        mixer.set_record_length(rec, rec > 0)
    return mixer


def _transform_byte(prm: StreamParams) -> int:
    """The body's transform byte: the transform id, with :data:`_DECIMAL_FLAG` for a decimal step."""
    return prm.transform | (0 if prm.decimal is None else _DECIMAL_FLAG)


def _check_params(prm: StreamParams, segment_length: int, error: type[Exception], transforms: frozenset[int]) -> None:
    """Bounds of a body's parameters; ``transforms``: the ids the body may carry (:func:`body_transforms`)."""
    m, r = prm.segments_per_stream, prm.record_length
    if prm.transform not in transforms:
        raise error(f"unknown transform {prm.transform} (this body may carry {sorted(transforms)})")
    if Transform(prm.transform).base == Transform.UP and r < 1:
        raise error(f"transform {Transform(prm.transform).name.lower()!r} without a record length")
    if not (1 <= m and m * segment_length <= MAX_STREAM_LENGTH):
        raise error(f"segments per stream {m} x segment length {segment_length} outside "
                    f"1..{MAX_STREAM_LENGTH} bytes")
    if not 0 <= r <= MAX_RECORD_LENGTH:
        raise error(f"record length {r} outside 0..{MAX_RECORD_LENGTH}")


@dataclass
class _Parsed:
    mixer_version: int
    streams: list[_Stream]
    params: StreamParams
    raw: np.ndarray  # bool per stream
    states: np.ndarray
    counts: np.ndarray
    words: np.ndarray
    raw_bytes: memoryview


BODY_HEAD_BYTES = 11
"""Bytes at the start of a body that name its decimal step's floats (:func:`decimal_floats`):
mixer version, transform byte, varints ``m`` (at most 4 bytes: ``m <= 2**24``) and ``r`` (at most
3: ``r <= 65535``), then the step section's dtype code and flags."""


def _parse_head(view: memoryview, segment_length: int, format_version: int) -> tuple[int, int, bool, int, int, int]:
    """``(mixer version, transform id, has a decimal step, m, r, position after r)`` of a body
    (of a chunk with ``format_version``); raises :class:`CorruptChunkError` as the decoder does."""
    if format_version not in MIXERS_OF_FORMAT:
        raise CorruptChunkError(f"format version {format_version} has no lm_mix mode")
    if len(view) < 2:
        raise CorruptChunkError("lm_mix body too short")
    mixer_version = view[0]
    if mixer_version not in MIXERS_OF_FORMAT[format_version]:
        raise CorruptChunkError(f"mixer version {mixer_version} in a chunk of format version {format_version}, "
                                f"which needs {' or '.join(map(str, sorted(MIXERS_OF_FORMAT[format_version])))}")
    transform, decimal = view[1], False
    if format_version >= DECIMAL_FORMAT:
        transform, decimal = view[1] & ~_DECIMAL_FLAG, bool(view[1] & _DECIMAL_FLAG)
    m, pos = read_varint(view, 2, MAX_STREAM_LENGTH // segment_length, "segments per stream")
    r, pos = read_varint(view, pos, MAX_RECORD_LENGTH, "record length")
    return mixer_version, transform, decimal, m, r, pos


def _parse_body(
    body: bytes, layout: Sequence[tuple[int, int]], segment_length: int, chunk: int, format_version: int,
    dtype: np.dtype | None = None,
) -> _Parsed:
    """Validate one body (of a chunk with ``format_version`` and header ``dtype``) against its
    layout, allocating nothing sized by untrusted numbers before the body is known to hold them."""
    view = memoryview(body).cast("B")
    mixer_version, transform, decimal, m, r, pos = _parse_head(view, segment_length, format_version)
    step = None
    if decimal:
        step, pos = read_step(view, pos, sum(length for length, _ in layout))
        if dtype is not None and dtype != step.integers:
            raise CorruptChunkError(f"decimal step on {step.dtype.str} floats in a chunk of dtype {dtype.str}; "
                                    f"it needs {step.integers.str} or plain bytes")
    prm = StreamParams(m, r, transform, step)
    _check_params(prm, segment_length, CorruptChunkError, body_transforms(format_version, mixer_version))
    stream_length = prm.stream_length(segment_length)
    n = _count_streams(layout, stream_length)
    n_bitmap = -(-n // 8)
    if len(view) < pos + n_bitmap:
        raise CorruptChunkError(f"body too short for the raw bitmap of {n} streams")
    bits = np.unpackbits(np.frombuffer(view, np.uint8, n_bitmap, pos), bitorder="little")
    if bits[n:].any():
        raise CorruptChunkError("padding bits of the raw bitmap are set")
    raw = bits[:n].astype(bool)
    pos += n_bitmap
    streams = streams_of(layout, stream_length, chunk)
    coded = [s for s, is_raw in zip(streams, raw) if not is_raw]
    if len(view) < pos + (1 + _STATE_BYTES) * len(coded):
        raise CorruptChunkError(f"body too short for {len(coded)} coded streams")
    counts = []
    for s in coded:
        count, pos = read_varint(view, pos, s.length)
        counts.append(count)
    raw_total = sum(s.length for s, is_raw in zip(streams, raw) if is_raw)
    expected = pos + _STATE_BYTES * len(coded) + _WORD_BYTES * sum(counts) + raw_total
    if len(view) != expected:
        raise CorruptChunkError(f"lm_mix body is {len(view)} bytes, expected {expected}")
    states = np.frombuffer(view, "<u4", len(coded), pos)
    pos += _STATE_BYTES * len(coded)
    words = np.frombuffer(view, "<u2", sum(counts), pos)
    pos += _WORD_BYTES * sum(counts)
    return _Parsed(mixer_version, streams, prm, raw, states, np.array(counts, dtype=np.int64), words, view[pos:])


def decimal_floats(head: bytes, segment_length: int, format_version: int) -> np.dtype | None:
    """The float dtype of a body's decimal step, None without one, from the body's first
    :data:`BODY_HEAD_BYTES` bytes (or the whole of a shorter body): for reports that should not
    read whole bodies. Raises :class:`CorruptChunkError` where the head itself is corrupt (an
    unknown mixer version or step dtype, a truncated or out-of-bounds varint); the rest of the body
    is not checked."""
    view = memoryview(head).cast("B")
    _, _, decimal, _, _, pos = _parse_head(view, segment_length, format_version)
    return read_step_dtype(view, pos) if decimal else None


@dataclass(frozen=True)
class BodyReport:
    """What a report needs from a valid body (:func:`body_report`)."""

    params: StreamParams
    plane_costs: list[int]
    """Body bytes spent on each plane: its streams' word count varints, final states and words
    (or raw bytes); the shared prefix (version, varints, decimal step section, bitmap) is left
    out."""


def body_report(body: bytes, layout: Sequence[tuple[int, int]], segment_length: int,
                format_version: int | None = None, dtype: np.dtype | None = None) -> BodyReport:
    """The stream parameters and per-plane costs of a valid body, from one parse (for reports:
    bits per byte per plane, transforms used); raises :class:`CorruptChunkError` like the
    decoder. ``format_version``: the chunk header's (default: :data:`WRITE_VERSION`'s)."""
    version = WRITE_VERSION[Mode.LM_MIX] if format_version is None else format_version
    prs = _parse_body(body, layout, segment_length, 0, version, dtype)
    costs = [0] * len(layout)
    j = 0
    for s, is_raw in zip(prs.streams, prs.raw):
        if is_raw:
            costs[s.plane] += s.length
        else:
            costs[s.plane] += _coded_size(int(prs.counts[j]))
            j += 1
    return BodyReport(prs.params, costs)


def decode_chunks(
    model: FrequencyModel,
    bodies: Sequence[bytes],
    layouts: Sequence[Sequence[tuple[int, int]]],
    segment_length: int,
    format_versions: Sequence[int] | None = None,
    dtypes: Sequence[np.dtype | None] | None = None,
    *,
    group: int = DEFAULT_GROUP,
) -> list[tuple[list[np.ndarray], StreamParams]]:
    """Inverse of :func:`encode_chunks`; returns every chunk's planes (uint8 arrays) and its
    stream parameters (the caller inverts ``params.transform``, then ``params.decimal``).
    ``format_versions``: each chunk's header version (it bounds the mixer version,
    :data:`MIXERS_OF_FORMAT`); default: :data:`WRITE_VERSION`'s. ``dtypes``: each chunk's header
    dtype (a decimal step needs int32 or int64); default: None each.

    Raises :class:`CorruptChunkError` for a body that does not fit its layout or fails to decode.
    """
    if format_versions is None:
        format_versions = [WRITE_VERSION[Mode.LM_MIX]] * len(bodies)
    if not len(bodies) == len(layouts) == len(format_versions):
        raise ValueError(f"{len(bodies)} bodies, {len(layouts)} layouts, {len(format_versions)} versions")
    if not 1 <= segment_length <= model.context_length:
        raise CorruptChunkError(f"segment length {segment_length} not in [1, {model.context_length}]")
    if dtypes is None:
        dtypes = [None] * len(bodies)
    parsed = [_parse_body(b, lay, segment_length, c, v, dt)
              for c, (b, lay, v, dt) in enumerate(zip(bodies, layouts, format_versions, dtypes))]
    out = [[np.zeros(length, dtype=np.uint8) for length, _ in layout] for layout in layouts]

    # stream, state, word count, words, record length, bytes if stored raw (shared groups only)
    todo: list[tuple[_Stream, int, int, np.ndarray, int, np.ndarray | None]] = []
    units: dict[int, list[list[int]]] = {}  # by mixer version
    for c, prs in enumerate(parsed):
        shared = MIXER_RULES[prs.mixer_version][1]
        ends = np.cumsum(prs.counts)
        raw_pos = 0
        j = 0
        items = []
        for s, is_raw in zip(prs.streams, prs.raw):
            if is_raw:
                stored = np.frombuffer(prs.raw_bytes, np.uint8, s.length, raw_pos)
                out[c][s.plane][s.start : s.start + s.length] = stored
                raw_pos += s.length
                items.append((s, STATE_LOWER, 0, prs.words[:0], prs.params.record_length, stored))
            else:
                words = prs.words[ends[j] - prs.counts[j] : ends[j]]
                items.append((s, int(prs.states[j]), int(prs.counts[j]), words, prs.params.record_length, None))
                j += 1
        for unit in _units(prs.streams, shared):
            kept = [items[k] for k in unit if shared or items[k][5] is None]  # a raw stream alone needs no mixer
            if kept:
                units.setdefault(prs.mixer_version, []).append(list(range(len(todo), len(todo) + len(kept))))
                todo += kept

    # A model with several CPU workers decodes one batch of streams per worker concurrently
    # (model step, mixer and rANS of a batch in one thread, which keeps every core busy), with
    # batches of at most ``group // workers`` streams (a shared group is never split) so the
    # caches in memory stay within ``group``; fewer workers when the batches would be small
    # (MIN_CONCURRENT_CACHE_BYTES).
    workers = decode_workers(model, len(todo))
    size = max(1, min(group // workers, -(-len(todo) // workers))) if workers > 1 else group
    batches = [(version, members, groups) for version, us in units.items()
               for members, groups in _batches([u for u in us if any(todo[i][5] is None for i in u)], size)]
    concurrent = workers > 1 and len(batches) > 1
    # threads of each batch's model step (only models with workers take the argument): one per
    # batch when batches run concurrently or keep to one worker; the model's own split (None)
    # when one batch has every worker
    step_workers = 1 if hasattr(model, "workers") and (concurrent or workers == 1) else None

    def run(version: int, members: list[int], groups: np.ndarray) -> None:
        items = [todo[i] for i in members]
        config = MIXER_RULES[version][0]
        decoded = _decode_group(model, items, segment_length, step_workers, config, groups)
        for (s, *_), d in zip(items, decoded):
            out[s.chunk][s.plane][s.start : s.start + s.length] = d

    if concurrent:
        with ThreadPoolExecutor(min(workers, len(batches)), thread_name_prefix="lmcodec-mix") as pool:
            for done in [pool.submit(run, *batch) for batch in batches]:
                done.result()
    else:
        for batch in batches:
            run(*batch)
    return [(planes, prs.params) for planes, prs in zip(out, parsed)]


def decode_workers(model: FrequencyModel, lanes: int) -> int:
    """CPU workers that decode ``lanes`` streams together: the model's ``workers`` (1 for models
    without), fewer when each would read less than :data:`MIN_CONCURRENT_CACHE_BYTES` of KV cache
    per step. Never changes the output, only which thread decodes which streams."""
    workers = max(1, int(getattr(model, "workers", 1)))
    if workers > 1 and hasattr(model, "cache_bytes_per_lane"):
        workers = max(1, min(workers, lanes * model.cache_bytes_per_lane() // MIN_CONCURRENT_CACHE_BYTES))
    return workers


def _decode_group(model: FrequencyModel, members, segment_length: int, workers: int | None,
                  config: MixerConfig, groups: np.ndarray) -> list[np.ndarray]:
    """Decode ``members`` together (one mixer lane each, in mixer ``groups``); ``workers``:
    threads of the model's step (None: its default; passed only to models that run several,
    i.e. have a ``workers`` attribute). A member stored raw is fed to the mixer as known bytes."""
    n = len(members)
    lengths = np.array([m[0].length for m in members], dtype=np.int64)
    coder = RansLaneDecoder(
        np.array([m[1] for m in members], dtype=np.uint32),
        np.concatenate([m[3] for m in members]).astype(np.uint16),
        np.array([m[2] for m in members], dtype=np.int64),
    )
    mixer = _new_mixer([m[4] for m in members], lengths, config, groups)
    kinds = [m[0].kind for m in members]
    width = int(lengths.max())
    decoded = np.zeros((n, width), dtype=np.uint8)
    stored = [i for i, m in enumerate(members) if m[5] is not None]
    known = np.zeros((n, width) if stored else (0, 0), dtype=np.int16)  # byte + 1 of streams stored raw, else 0
    for i in stored:
        known[i, : lengths[i]] = members[i][5].astype(np.int16) + 1
    lm_rows = np.ones((n, N_SYMBOLS), dtype=np.int32)
    for k in range(-(-width // segment_length)):
        lo = k * segment_length
        active = np.flatnonzero(lengths > lo)
        stepper = model.decoder(len(active)) if workers is None else model.decoder(len(active), workers=workers)
        tokens = np.array([start_token(kinds[i]) for i in active], dtype=np.int64)
        span = int(min(segment_length, lengths[active].max() - lo))
        for p in range(span):
            lm_rows[active] = stepper.step(tokens)
            live = lengths > lo + p
            sym = mixer.decode(lm_rows, coder, live, known[:, lo + p] if stored else None)
            decoded[:, lo + p] = sym
            tokens = sym[active].astype(np.int64)
    coder.finish()
    return [decoded[i, : lengths[i]] for i in range(n)]
