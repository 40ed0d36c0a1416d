"""Lane-parallel rANS (range asymmetric numeral systems) coder.

Many independent *lanes* (one per segment) are coded side by side: the Python loop runs over
positions only and every lane is advanced by vectorised numpy operations at each position.
:func:`encode_intervals` (the mixed mode's encoder, given each symbol's interval) instead runs a
compiled (numba) loop per lane; tests require the same bitstream as :func:`encode_lanes`.

Parameters (frozen; they define the bitstream):

* probabilities are 16-bit frequencies: each table has 256 integer entries in
  ``[1, 2**16 - 255]`` summing to exactly ``M = 2**16`` (see :mod:`lmcodec.frequency_model`);
* each lane has one 32-bit state ``x``; between symbols ``L = 2**16 <= x < 2**32``;
* renormalisation moves 16-bit words, so coding one symbol writes or reads at most one word.

Encoding (in reverse position order, because rANS is last-in first-out), for a symbol with
frequency ``f`` and cumulative frequency ``c`` (sum of the entries before it)::

    if x >= f << 16:  emit x & 0xFFFF;  x >>= 16      # now f <= x < f << 16
    x = ((x // f) << 16) + (x % f) + c                # back in [L, 2**32)

Every lane starts at ``x = L``. Its final state is stored as a uint32 and its words are handed
out in the order the decoder reads them (the word emitted last comes first). Decoding, in
forward order::

    slot = x & 0xFFFF;  s = the symbol with c[s] <= slot < c[s] + f[s]
    x = f * (x >> 16) + slot - c                      # now f <= x < f << 16
    if x < L:  x = (x << 16) | next word of the lane  # back in [L, 2**32)

A correct stream ends every lane at exactly ``x = L`` with all its words consumed; anything else
(and any impossible input along the way) raises :class:`~lmcodec.errors.CorruptChunkError`.
Arithmetic is done in uint64 so that no intermediate value can overflow.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .errors import CorruptChunkError
from .frequency_model import N_SYMBOLS, PRECISION_BITS, TOTAL

STATE_LOWER = 1 << 16
"""``L``: lower bound of a lane's state between symbols, and every lane's initial state."""
STATE_UPPER = 1 << 32
"""Exclusive upper bound of a lane's state between symbols."""
WORD_BITS = 16
"""Bits per renormalisation word."""
MAX_FREQ = TOTAL - (N_SYMBOLS - 1)
"""Largest legal table entry (every other entry is at least 1)."""

_WORD_MASK = np.uint64((1 << WORD_BITS) - 1)
_WORD_SHIFT = np.uint64(WORD_BITS)
_PREC_SHIFT = np.uint64(PRECISION_BITS)
_SLOT_MASK = np.uint64(TOTAL - 1)

assert PRECISION_BITS == WORD_BITS == 16  # the one-word-per-symbol bound relies on this


def check_freqs(freqs: np.ndarray, *, error: type[Exception] = ValueError) -> np.ndarray:
    """Validate frequency tables ``[..., 256]`` and return them as int32 (no copy if already).

    Each table must have integer entries in ``[1, MAX_FREQ]`` summing to exactly ``TOTAL``.
    Raises ``error`` otherwise: the encoder uses ValueError (a broken model), the decoder
    :class:`CorruptChunkError`.
    """
    return _cumulative(freqs, error)[0]


def _cumulative(freqs: np.ndarray, error: type[Exception]) -> tuple[np.ndarray, np.ndarray]:
    """Validate tables ``[..., 256]``; return them and their inclusive prefix sums, both int32."""
    a = np.asarray(freqs)
    if a.ndim < 1 or a.shape[-1] != N_SYMBOLS or (a.size and a.dtype.kind not in "iu"):
        raise error(f"frequency tables must be integer [..., {N_SYMBOLS}], got {a.dtype}{a.shape}")
    if a.size and (a.min() < 1 or a.max() > MAX_FREQ):
        raise error(f"frequency table entry outside [1, {MAX_FREQ}]")
    a = a.astype(np.int32, copy=False)
    cs = np.cumsum(a, axis=-1, dtype=np.int32)  # 256 * MAX_FREQ < 2**31: cannot overflow
    if a.size and not np.all(cs[..., -1] == TOTAL):
        raise error(f"frequency table does not sum to {TOTAL}")
    return a, cs


def _find_symbols(cs: np.ndarray, slot: np.ndarray) -> np.ndarray:
    """Per row of inclusive prefix sums ``cs [A, 256]``, the symbol ``s`` whose interval
    ``[cs[s] - f[s], cs[s])`` holds ``slot``, i.e. the number of entries ``cs[k] <= slot``.

    Valid tables make ``cs`` strictly increasing with ``cs[255] = TOTAL > slot``, so the
    answer is unique and in 0..255. Binary search, all rows at once: eight vectorised gathers.
    """
    flat = cs.ravel()
    base = np.arange(len(slot), dtype=np.intp) * N_SYMBOLS - 1
    s = np.zeros(len(slot), dtype=np.intp)
    step = N_SYMBOLS // 2
    while step:
        s += np.where(flat[base + s + step] <= slot, step, 0)
        step //= 2
    return s


def encode_lanes(
    symbols: np.ndarray, lengths: np.ndarray, freqs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encode ``B`` lanes at once.

    Args:
        symbols: uint8 ``[B, n]``; lane ``i`` codes ``symbols[i, :lengths[i]]``.
        lengths: integer ``[B]``, each in ``[0, n]``.
        freqs: integer ``[B, n, 256]``; ``freqs[i, p]`` is the table for ``symbols[i, p]``.
            Only tables at positions ``p < lengths[i]`` are read (and must be valid).

    Returns:
        ``(final_states, words, word_counts)``: uint32 ``[B]`` states, each in ``[L, 2**32)``;
        uint16 words of all lanes concatenated, lane after lane, each lane's in decoding
        order; int64 ``[B]`` number of words per lane (never more than the lane's length).

    Raises:
        ValueError: bad shapes, dtypes, lengths or frequency tables.
    """
    symbols = np.asarray(symbols)
    if symbols.ndim != 2 or symbols.dtype != np.uint8:
        raise ValueError(f"symbols must be uint8 [B, n], got {symbols.dtype}{symbols.shape}")
    n_lanes, n = symbols.shape
    lengths = _lengths(lengths, n_lanes, n)
    freqs = np.asarray(freqs)
    if freqs.shape != (n_lanes, n, N_SYMBOLS):
        raise ValueError(f"freqs must be [{n_lanes}, {n}, {N_SYMBOLS}], got {freqs.shape}")

    def interval(p: int, lanes) -> tuple[np.ndarray, np.ndarray]:
        table, cs = _cumulative(freqs[lanes, p], ValueError)
        rows = np.arange(table.shape[0])
        s = symbols[lanes, p].astype(np.intp)
        f = table[rows, s]
        return cs[rows, s] - f, f

    return _encode_reverse(lengths, n, interval)


def encode_intervals(
    cums: np.ndarray, freqs: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encode ``B`` lanes given only each coded symbol's interval (same bitstream as
    :func:`encode_lanes`).

    For adaptive models whose full tables are produced one position at a time and cannot all be
    kept: ``cums[i, p]`` and ``freqs[i, p]`` are the cumulative frequency ``c`` and frequency
    ``f`` of lane ``i``'s symbol at position ``p`` in that position's table.

    Args:
        cums: integer ``[B, n]``, ``0 <= c`` and ``c + f <= TOTAL`` where read.
        freqs: integer ``[B, n]``, ``1 <= f <= MAX_FREQ`` where read.
        lengths: integer ``[B]``; only positions ``p < lengths[i]`` are read.

    Returns:
        ``(final_states, words, word_counts)`` exactly as :func:`encode_lanes`.

    Raises:
        ValueError: bad shapes, lengths or intervals.
    """
    cums = np.asarray(cums)
    freqs = np.asarray(freqs)
    if cums.ndim != 2 or cums.shape != freqs.shape or any(a.dtype.kind not in "iu" for a in (cums, freqs)):
        raise ValueError(f"cums and freqs must be integer [B, n], got {cums.shape} and {freqs.shape}")
    n_lanes, n = cums.shape
    lengths = _lengths(lengths, n_lanes, n)
    used = np.arange(n)[None, :] < lengths[:, None]
    c_used, f_used = cums[used].astype(np.int64), freqs[used].astype(np.int64)
    if c_used.size and (f_used.min() < 1 or f_used.max() > MAX_FREQ or c_used.min() < 0
                        or (c_used + f_used).max() > TOTAL):
        raise ValueError("symbol interval outside the 16-bit frequency range")

    states = np.empty(n_lanes, dtype=np.int64)
    words = np.empty((n_lanes, n), dtype=np.uint16)
    counts = np.empty(n_lanes, dtype=np.int64)
    _encode_interval_lanes(np.ascontiguousarray(cums, dtype=np.int64), np.ascontiguousarray(freqs, dtype=np.int64),
                           lengths.astype(np.int64), states, words, counts)
    flat = words[np.arange(n)[None, :] < counts[:, None]]
    return states.astype(np.uint32), flat, counts


@njit(cache=True, nogil=True)
def _encode_interval_lanes(cums, freqs, lengths, states, words, counts):
    """Compiled per-lane form of :func:`_encode_reverse` (same rule, same output): lane ``i``
    is encoded backwards over its ``lengths[i]`` intervals; its words go to ``words[i,
    :counts[i]]`` in decoding order and its final state to ``states[i]``. All values are int64:
    ``x < 2**32`` and ``f <= 2**16`` keep every intermediate below ``2**48``."""
    for i in range(len(lengths)):
        x = STATE_LOWER
        k = 0
        row = words[i]
        for p in range(lengths[i] - 1, -1, -1):
            f = freqs[i, p]
            if x >= f << PRECISION_BITS:
                row[k] = x & ((1 << WORD_BITS) - 1)
                k += 1
                x >>= WORD_BITS
            x = ((x // f) << PRECISION_BITS) + x % f + cums[i, p]
        row[:k] = row[:k][::-1].copy()
        states[i] = x
        counts[i] = k


def _encode_reverse(lengths: np.ndarray, n: int, interval) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encode every lane backwards from position ``n - 1``; ``interval(p, lanes)`` gives the
    ``(c, f)`` of the active lanes' symbols at ``p``. Returns what :func:`encode_lanes` does."""
    n_lanes = len(lengths)
    x = np.full(n_lanes, STATE_LOWER, dtype=np.uint64)
    words = np.zeros((n, n_lanes), dtype=np.uint16)
    emitted = np.zeros((n, n_lanes), dtype=bool)
    for p in range(n - 1, -1, -1):
        lanes = _active_lanes(lengths > p)
        if lanes is None:
            continue
        c, f = interval(p, lanes)
        x[lanes] = _encode_one(x, lanes, c, f, words[p], emitted[p])
    # The decoder reads lane i's words in increasing position order: row-major over [B, n].
    flat = words.T[emitted.T]
    counts = emitted.sum(axis=0, dtype=np.int64)
    return x.astype(np.uint32), flat, counts


def _encode_one(x, lanes, c, f, words_row, emitted_row) -> np.ndarray:
    """One rANS encoding step (module docstring) for ``lanes``; writes the emitted words into
    ``words_row``/``emitted_row`` and returns the lanes' new states."""
    f = np.asarray(f).astype(np.uint64)
    c = np.asarray(c).astype(np.uint64)
    xa = x[lanes]
    emit = xa >= (f << _PREC_SHIFT)
    words_row[lanes] = (xa & _WORD_MASK).astype(np.uint16)
    emitted_row[lanes] = emit
    xa = np.where(emit, xa >> _WORD_SHIFT, xa)
    q, r = np.divmod(xa, f)
    return (q << _PREC_SHIFT) + r + c


class RansLaneDecoder:
    """Step-by-step decoder for ``B`` lanes, so a model can be driven one position at a time.

    Call :meth:`decode_step` once per position with the tables for that position, then
    :meth:`finish` to check that every lane consumed exactly its words and ended at state ``L``.
    All inconsistencies raise :class:`CorruptChunkError`.
    """

    def __init__(self, final_states: np.ndarray, words: np.ndarray, word_counts: np.ndarray):
        """``final_states`` uint32-valued ``[B]``; ``words`` uint16 (all lanes, lane after
        lane); ``word_counts`` ``[B]`` non-negative, summing to ``len(words)``."""
        states = np.asarray(final_states)
        counts = np.asarray(word_counts)
        words = np.asarray(words)
        if (
            states.ndim != 1
            or counts.shape != states.shape
            or words.ndim != 1
            or any(a.size and a.dtype.kind not in "iu" for a in (states, counts, words))
        ):
            raise CorruptChunkError("inconsistent rANS lane arrays")
        if words.size and (words.min() < 0 or words.max() > 0xFFFF):
            raise CorruptChunkError("rANS word out of range")
        if states.size and (states.min() < STATE_LOWER or states.max() >= STATE_UPPER):
            raise CorruptChunkError("rANS state out of range")
        if counts.size and (counts.min() < 0 or counts.max() > words.size):
            raise CorruptChunkError("rANS word count out of range")
        ends = np.cumsum(counts, dtype=np.int64)
        if (ends[-1] if ends.size else 0) != words.size:
            raise CorruptChunkError("rANS word counts do not match the number of words")
        self._x = states.astype(np.uint64)
        self._words = words.astype(np.uint16, copy=False)
        self._end = ends
        self._pos = ends - counts

    @property
    def lanes(self) -> int:
        """Number of lanes ``B``."""
        return len(self._x)

    def decode_step(self, freqs: np.ndarray, active: int | np.ndarray | None = None) -> np.ndarray:
        """Decode the next symbol of every active lane.

        Args:
            freqs: integer ``[B, 256]`` tables for this position; rows of inactive lanes are
                ignored (not even validated).
            active: ``None`` (all lanes), a count ``k`` (lanes ``0..k-1``) or a bool mask ``[B]``.

        Returns:
            uint8 ``[B]`` decoded symbols, 0 for inactive lanes.
        """
        n_lanes = len(self._x)
        freqs = np.asarray(freqs)
        if freqs.shape != (n_lanes, N_SYMBOLS):
            raise ValueError(f"freqs must be [{n_lanes}, {N_SYMBOLS}], got {freqs.shape}")
        if active is None:
            mask = np.ones(n_lanes, dtype=bool)
        elif isinstance(active, (int, np.integer)):
            if not 0 <= active <= n_lanes:
                raise ValueError(f"active count {active} out of range 0..{n_lanes}")
            mask = np.arange(n_lanes) < active
        else:
            mask = np.asarray(active, dtype=bool)
            if mask.shape != (n_lanes,):
                raise ValueError(f"active mask must be [{n_lanes}], got {mask.shape}")
        out = np.zeros(n_lanes, dtype=np.uint8)
        lanes = _active_lanes(mask)
        if lanes is None:
            return out

        table, cs = _cumulative(freqs[lanes], CorruptChunkError)
        xa = self._x[lanes]
        slot = (xa & _SLOT_MASK).astype(np.int32)
        s = _find_symbols(cs, slot)
        rows = np.arange(len(s))
        f = table[rows, s]
        c = cs[rows, s] - f
        xa = f.astype(np.uint64) * (xa >> _PREC_SHIFT) + (slot - c).astype(np.uint64)
        need = np.flatnonzero(xa < STATE_LOWER)
        if need.size:
            lane_ids = np.arange(n_lanes)[lanes][need]
            pos = self._pos[lane_ids]
            if np.any(pos >= self._end[lane_ids]):
                raise CorruptChunkError("rANS lane ran out of words")
            xa[need] = (xa[need] << _WORD_SHIFT) | self._words[pos].astype(np.uint64)
            self._pos[lane_ids] = pos + 1
        self._x[lanes] = xa
        out[lanes] = s
        return out

    def lane_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(states uint64 [B], words uint16, next word int64 [B], end int64 [B])``, the decoder's
        own arrays, for a compiled caller that advances lanes itself by exactly the rule of
        :meth:`decode_step` (:func:`lmcodec.mixing_kernels.decode_lanes`); :meth:`finish` checks
        the result as usual."""
        return self._x, self._words, self._pos, self._end

    def finish(self) -> None:
        """Check every lane consumed all of its words and ended at state ``L``."""
        if np.any(self._pos != self._end):
            raise CorruptChunkError("rANS lane has unread words")
        if np.any(self._x != STATE_LOWER):
            raise CorruptChunkError("rANS lane did not end at the initial state")


def decode_lanes(
    final_states: np.ndarray,
    words: np.ndarray,
    word_counts: np.ndarray,
    freqs: np.ndarray,
    lengths: np.ndarray,
) -> np.ndarray:
    """Decode ``B`` lanes whose tables are all known up front (static models, tests).

    ``freqs`` is ``[B, n, 256]``, ``lengths`` ``[B]`` in ``[0, n]``; returns uint8 ``[B, n]``
    (zeros past each lane's length). Raises :class:`CorruptChunkError` on a corrupt stream.
    """
    freqs = np.asarray(freqs)
    if freqs.ndim != 3:
        raise ValueError(f"freqs must be [B, n, {N_SYMBOLS}], got {freqs.shape}")
    n_lanes, n = freqs.shape[:2]
    lengths = _lengths(lengths, n_lanes, n)
    dec = RansLaneDecoder(final_states, words, word_counts)
    if dec.lanes != n_lanes:
        raise ValueError("freqs and final_states disagree on the number of lanes")
    out = np.zeros((n_lanes, n), dtype=np.uint8)
    for p in range(n):
        out[:, p] = dec.decode_step(freqs[:, p], lengths > p)
    dec.finish()
    return out


def _lengths(lengths: np.ndarray, n_lanes: int, n: int) -> np.ndarray:
    a = np.asarray(lengths)
    if a.shape != (n_lanes,) or (a.size and a.dtype.kind not in "iu"):
        raise ValueError(f"lengths must be integer [{n_lanes}], got {a.dtype}{a.shape}")
    a = a.astype(np.int64)
    if a.size and (a.min() < 0 or a.max() > n):
        raise ValueError(f"lengths must lie in [0, {n}]")
    return a


def _active_lanes(mask: np.ndarray) -> slice | np.ndarray | None:
    """Index selecting the lanes in ``mask``: a full slice when all are, None when none are."""
    count = int(np.count_nonzero(mask))
    if count == 0:
        return None
    if count == len(mask):
        return slice(None)
    return np.flatnonzero(mask)
