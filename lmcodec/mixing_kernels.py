"""Compiled (numba) kernels of :class:`lmcodec.mixing.AdaptiveMixer`: the same rules, one lane
and one byte at a time.

:mod:`lmcodec.mixing` defines the mixer and is its reference implementation (numpy, vectorised
over lanes). The functions here compute exactly the same integers with scalar loops compiled by
numba, which removes numpy's per-call overhead (a step over 64 lanes of 256 symbols was ~60
small numpy calls, ~0.8 ms): tests/test_mixing.py runs both on the same inputs and requires
identical tables and states. Every quantity is an ``int64`` (``uint64`` with wrap-around only in
the hashes and the 8-byte history); the bounds of :mod:`lmcodec.mixing` keep every product and
sum below ``2**63``, so no result depends on the order of operations.

The state is the mixer's own numpy arrays (``MixerArrays``), changed in place. A lane's own state
(history, match, record detection, mixing weights, switch) is indexed by the lane ``j``; the
adaptive statistics (counts, match tables) by its *group* ``grp[j]``, shared by the lanes of the group (see
:class:`lmcodec.mixing.AdaptiveMixer`). A lane touches only its own rows and its group's, so
disjoint sets of groups can run concurrently (the kernels release the GIL).

Within a group, one *round* codes one byte of every listed lane, lane after lane in lane order
(table, then update); the group's entry points (:func:`code_lanes`, :func:`decode_lanes`) keep
that order, so a lane's table depends on earlier rounds and on the lanes before it in this one.

Entry points: :func:`step_lanes` / :func:`update_lanes` (one byte of many lanes, as
``AdaptiveMixer.step`` / ``update``), :func:`code_lanes` (the encoder: many bytes of each lane,
giving each coded byte's interval) and :func:`decode_lanes` (the decoder: table, rANS decode and
update of one byte of many lanes in one call). The helpers they call per byte are inlined
(``inline="always"``, at numba's IR level): a call that passes the ``MixerArrays`` tuple (38
arrays) costs more than many of the helpers' bodies (mixer version 1, one core: 4.1 -> 3.5 s
per MiB; compiling takes a few seconds longer, once per installation: numba caches it).

The kernels are compiled without numba's reference-counting runtime (``_nrt=False``, the
:data:`_KERNEL` options): they allocate nothing (the coded table goes to the scratch ``table``)
and every array they touch belongs to the caller for the whole call. With the runtime, each of
the dozens of array views taken per byte (``m.L[j]``, a count row, ...) was an atomic increment
and decrement: 35 % of the samples of a mixer-only run under ``perf`` were those two
instructions, and leaving them out took mixer version 1 from 3.24-3.29 to 1.91-2.05 s per MiB
(version 3: 4.42 to 2.95 s; one core, same output).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from .frequency_model import N_SYMBOLS, PRECISION_BITS, TOTAL
from .rans import STATE_LOWER, WORD_BITS

_KERNEL = {"cache": True, "nogil": True, "_nrt": False}
"""numba options of every kernel and helper here (module docstring: no reference counting)."""

__all__ = ["MixerArrays", "step_lanes", "update_lanes", "code_lanes", "decode_lanes"]

_U8 = np.uint64(8)
_BYTE = np.uint64(0xFF)
_POS_MASK = (1 << 32) - 1
_HASH_MUL = np.uint64(0x9E3779B97F4A7C15)  # = lmcodec.mixing._HASH_MUL (mixing imports this module, not the reverse)
_SPARE = TOTAL - N_SYMBOLS
_TOTAL = TOTAL
_SLOT_MASK = np.uint64(TOTAL - 1)
_PREC = np.uint64(PRECISION_BITS)
_STATE_LOWER = np.uint64(STATE_LOWER)
_WORD_SHIFT = np.uint64(WORD_BITS)


class MixerArrays(NamedTuple):
    """Everything the kernels read or write, for ``B`` lanes (``K`` = weight slots).

    State (persists across bytes), per group (``G`` groups): ``c0 [G, 256]`` (int32), ``c1 [G, 256, 256]``,
    ``c2``, ``c4``, ``c6 [G, rows, 256]`` (the hashed order-2/4/6 contexts), ``crec [G, 256, 256]`` (uint8),
    ``mtab``, ``mtab2 [G, 2**hash_bits]`` (int64: ``rank << 32 | position``, rank = the writing
    lane's index in its group), ``mhit``, ``mtot [G, 16]`` (int32); per lane: ``w [B, sets, K]``, ``vsw [B, 2]``,
    ``t [B]``, ``hist8 [B]`` (uint64), ``hist [B, ring]`` (uint8), ``rfixed``, ``rcand``,
    ``rvote``, ``rlen``, ``mptr``, ``mlen``, ``mlane [B]`` (lane whose history the match
    follows), ``rlast [B, 256, 2]`` (int64). ``grp [B]`` (a lane's group), ``gfirst [B]`` (the
    first lane of its group; a group is a run of consecutive lanes) and ``gbits [G, 4]`` (hash bits
    of the group's o2, o4, o6 and match tables) are fixed. An absent
    component's arrays have a zero-length last axis.

    Scratch (written by a step, read by the next update of the same lane): ``L [B, 7, 256]`` (the
    dense inputs lm, o0, o1, o2, rec, o4, o6), ``q [B, 256]``, ``x [B, 256]``, ``G [B, 256]``,
    ``S [B, 12]`` (scalars: Q, weight set, previous byte, o2 row, byte above, has record,
    predicted byte, match score, match bucket, has match, o4 row, o6 row), ``table [B, 256]``
    (int32: the coded table of the lane's byte in :func:`code_lanes` and :func:`decode_lanes`).

    Constants: ``cfg`` (int64, built by :meth:`lmcodec.mixing.AdaptiveMixer._kernel_arrays`),
    ``widx [8]`` (weight slot per entry of ``COMPONENTS``, -1 if absent), ``set_of_len``, and the
    look-up tables ``LG``, ``KT8`` (int32) and ``EXP`` (int64).
    """

    grp: np.ndarray
    gfirst: np.ndarray
    gbits: np.ndarray
    w: np.ndarray
    vsw: np.ndarray
    t: np.ndarray
    hist8: np.ndarray
    c0: np.ndarray
    c1: np.ndarray
    c2: np.ndarray
    c4: np.ndarray
    c6: np.ndarray
    crec: np.ndarray
    hist: np.ndarray
    rfixed: np.ndarray
    rcand: np.ndarray
    rvote: np.ndarray
    rlen: np.ndarray
    rlast: np.ndarray
    mtab: np.ndarray
    mtab2: np.ndarray
    mptr: np.ndarray
    mlen: np.ndarray
    mlane: np.ndarray
    mhit: np.ndarray
    mtot: np.ndarray
    L: np.ndarray
    q: np.ndarray
    x: np.ndarray
    G: np.ndarray
    S: np.ndarray
    cfg: np.ndarray
    widx: np.ndarray
    set_of_len: np.ndarray
    LG: np.ndarray
    KT8: np.ndarray
    EXP: np.ndarray
    table: np.ndarray


# cfg fields (int64 vector built by AdaptiveMixer._kernel_arrays; table sizes are per group, gbits)
_O0_LIMIT, _O1_LIMIT, _O2_LIMIT, _MATCH_MIN, _HISTORY_BITS = 0, 1, 2, 3, 4
_LR, _LR_BOOST, _LR_BOOST_STEPS, _REC_VOTES, _MATCH_LONG, _SWITCH_CLAMP = 5, 6, 7, 8, 9, 10
_W_MIN, _W_MAX, _HAS_REC_COMPONENT = 11, 12, 13
# S fields
_Q, _SEL, _PREV1, _H2, _ABOVE, _HAS_REC, _PRED, _MSCORE, _BUCKET, _HAS_MATCH, _H4, _H6 = range(12)
# widx slots (= the order of lmcodec.mixing.COMPONENTS)
_LM, _C0, _C1, _C2, _REC, _MATCH, _C4, _C6 = range(8)
_DENSE_SLOTS = np.array([_LM, _C0, _C1, _C2, _REC, _C4, _C6], dtype=np.int64)
"""The widx slot of each row of the dense inputs ``L`` (every component but the match)."""


@njit(**_KERNEL)
def _to_table(x, total, out):
    """``out = to_table(x)`` for one row (see :func:`lmcodec.mixing.to_table`), for ``0 <= x <
    2**52`` and ``0 < total < 2**47`` (here ``x < 2**34``, ``total < 2**38``).

    The quotient ``floor(x * 65280 / total)`` (< 2**16) is first estimated in float64 and then
    corrected with exact integer arithmetic: ``x`` and ``65280 / total`` carry relative errors
    below ``2**-52``, so the estimate is within one of the true floor whatever the rounding, and
    one comparison of the integer remainder ``x * 65280 - f * total`` with ``[0, total)`` fixes it.
    The result is exactly the integer floor on any IEEE machine (and on any machine whose
    float64 product is correct to a few ulps); unlike an integer divide, the loop vectorises.
    """
    inv = _SPARE / total
    s = 0
    for i in range(256):
        f = np.int64(x[i] * inv)
        r = x[i] * _SPARE - f * total
        f += (r >= total) - (r < 0) + 1
        out[i] = f
        s += f
    best = 0
    best_f = out[0]
    for i in range(1, 256):
        if out[i] > best_f:
            best_f = out[i]
            best = i
    out[best] += _TOTAL - s


@njit(inline="always", **_KERNEL)
def _hashed_input(present, h8, order, bits, table, g, S, field, out, KT8):
    """Scores of the hashed context of the last ``order`` bytes into ``out``; its row goes to
    ``S[field]``. An absent component scores 0 (its row of ``L`` stays as allocated)."""
    if not present:
        return
    row = _hash(h8, order, bits)
    S[field] = row
    counts = table[g, row]
    for s in range(256):
        out[s] = KT8[counts[s]]


@njit(inline="always", **_KERNEL)
def _step_lane(j, lm, use_lm, out, m):
    """The coded table of lane ``j``'s next byte into ``out`` (int32 [256]); fills the scratch."""
    cfg, widx, LG, KT8, EXP = m.cfg, m.widx, m.LG, m.KT8, m.EXP
    L = m.L[j]
    S = m.S[j]
    g = m.grp[j]
    hmask = (1 << cfg[_HISTORY_BITS]) - 1
    h8 = m.hist8[j]
    t = m.t[j]
    prev1 = np.int64(h8 & _BYTE)
    S[_PREV1] = prev1
    # dense inputs; an absent one is a row of zeros
    if widx[_LM] >= 0 and use_lm:
        for s in range(256):
            f = np.int64(lm[s])
            f = 0 if f < 0 else (_TOTAL if f > _TOTAL else f)
            L[0, s] = LG[f]
    else:
        L[0, :] = 0
    if widx[_C0] >= 0:
        c0 = m.c0[g]
        for s in range(256):
            L[1, s] = LG[2 * np.int64(c0[s]) + 1]
    else:
        L[1, :] = 0
    if widx[_C1] >= 0:
        c1 = m.c1[g, prev1]
        for s in range(256):
            L[2, s] = KT8[c1[s]]
    else:
        L[2, :] = 0
    gbits = m.gbits[g]
    _hashed_input(widx[_C2] >= 0, h8, 2, gbits[0], m.c2, g, S, _H2, L[3], KT8)
    _hashed_input(widx[_C4] >= 0, h8, 4, gbits[1], m.c4, g, S, _H4, L[5], KT8)
    _hashed_input(widx[_C6] >= 0, h8, 6, gbits[2], m.c6, g, S, _H6, L[6], KT8)
    if widx[_REC] >= 0:
        rfixed = m.rfixed[j]
        rl = rfixed if rfixed > 0 else m.rlen[j]
        has_rec = rl > 0 and t >= rl
        above = np.int64(m.hist[j, (t - rl) & hmask])
        S[_ABOVE] = above
        S[_HAS_REC] = 1 if has_rec else 0
        if has_rec:
            crec = m.crec[g, above]
            for s in range(256):
                L[4, s] = KT8[crec[s]]
        else:
            L[4, :] = 0
    else:
        L[4, :] = 0
    sel = 0
    pred = 0
    mscore = 0
    if widx[_MATCH] >= 0:
        ml = m.mlen[j]
        pred = np.int64(m.hist[m.mlane[j], m.mptr[j] & hmask])
        bucket = min(ml, 15)
        if ml > 0:
            h = np.int64(m.mhit[g, bucket])
            miss = np.int64(m.mtot[g, bucket]) - h
            mscore = np.int64(LG[2 * h + 1]) - LG[2 * miss + 1] + LG[255]
        set_of_len = m.set_of_len
        sel = set_of_len[min(ml, len(set_of_len) - 1)]
        S[_BUCKET] = bucket
        S[_HAS_MATCH] = 1 if ml > 0 else 0
    S[_SEL] = sel
    S[_PRED] = pred
    S[_MSCORE] = mscore
    # geometric mix: z(s) = (sum_i (w_i >> 4) * l_i(s)) >> 12, held in q until q = EXP[d]
    w = m.w[j, sel]
    w0 = w[widx[0]] >> 4 if widx[0] >= 0 else 0
    w1 = w[widx[1]] >> 4 if widx[1] >= 0 else 0
    w2 = w[widx[2]] >> 4 if widx[2] >= 0 else 0
    w3 = w[widx[3]] >> 4 if widx[3] >= 0 else 0
    w4 = w[widx[4]] >> 4 if widx[4] >= 0 else 0
    w5 = w[widx[_C4]] >> 4 if widx[_C4] >= 0 else 0
    w6 = w[widx[_C6]] >> 4 if widx[_C6] >= 0 else 0
    z = m.q[j]
    for s in range(256):
        z[s] = w0 * L[0, s] + w1 * L[1, s] + w2 * L[2, s] + w3 * L[3, s] + w4 * L[4, s]
    if widx[_C4] >= 0 or widx[_C6] >= 0:
        for s in range(256):
            z[s] += w5 * L[5, s] + w6 * L[6, s]
    if widx[_MATCH] >= 0:
        z[pred] += (w[widx[_MATCH]] >> 4) * mscore
    zmax = z[0] >> 12
    for s in range(256):
        z[s] >>= 12
        zmax = max(zmax, z[s])
    d_max = len(EXP) - 1
    q = z
    Q = 0
    for s in range(256):
        q[s] = EXP[min(zmax - z[s], d_max)]
        Q += q[s]
    S[_Q] = Q
    G = m.G[j]
    _to_table(q, Q, G)
    # safety switch with the uniform table
    vsw = m.vsw[j]
    w_g = EXP[-vsw[0]] >> 14
    w_u = EXP[-vsw[1]] >> 14
    x = m.x[j]
    for s in range(256):
        x[s] = w_g * G[s] + w_u * 256
    _to_table(x, (w_g + w_u) * _TOTAL, out)


@njit(inline="always", **_KERNEL)
def _verify(j, table, key, pos, m, hmask, ring):
    """(verified match length 0..16, candidate position, candidate lane) from ``table[grp[j],
    key]``: the number of bytes before the candidate (in its lane's history) that equal the
    bytes before ``pos`` in lane ``j``'s. (Every lane of a group is at the same position; a
    candidate's byte is known when lane ``j`` next needs it: a lane before ``j`` has coded it by
    then, a lane after ``j`` wrote the entry one round earlier.)"""
    v = np.int64(table[m.grp[j], key])
    cand = v & _POS_MASK
    lane = m.gfirst[j] + (v >> 32)
    if not (cand > 0 and pos - cand < ring - 16 - 1):
        return 0, cand, lane
    hist = m.hist[j]
    other = m.hist[lane]
    n = 0
    for k in range(1, 17):
        ci = cand - k
        if ci < 0 or other[ci & hmask] != hist[(pos - k) & hmask]:
            break
        n += 1
    return n, cand, lane


@njit(inline="always", **_KERNEL)
def _hash(h8, k, bits):
    """Row of the last ``k`` bytes of the history ``h8`` in a table of ``2**bits`` rows (0 when
    ``bits`` is 0): the top ``bits`` bits of their 64-bit product with ``_HASH_MUL``."""
    ctx = h8 & np.uint64((1 << (8 * k)) - 1) if k < 8 else h8
    return np.int64((ctx * _HASH_MUL) >> np.uint64(64 - bits)) if bits > 0 else np.int64(0)


@njit(inline="always", **_KERNEL)
def _update_lane(j, s, m):
    """Feed byte ``s`` to lane ``j`` (after :func:`_step_lane` of the same lane)."""
    cfg, widx, LG = m.cfg, m.widx, m.LG
    L = m.L[j]
    S = m.S[j]
    q = m.q[j]
    Q = S[_Q]
    sel = S[_SEL]
    t = m.t[j]
    g = m.grp[j]
    # ---- weights
    lr_t = cfg[_LR] * (1 + ((cfg[_LR_BOOST] - 1) * cfg[_LR_BOOST_STEPS]) // (cfg[_LR_BOOST_STEPS] + t))
    w = m.w[j, sel]
    for c in range(len(_DENSE_SLOTS)):
        k = widx[_DENSE_SLOTS[c]]
        if k >= 0:
            acc = 0
            for v in range(256):
                acc += q[v] * L[c, v]
            grad = np.int64(L[c, s]) - acc // Q
            nw = w[k] + ((grad * lr_t + 512) >> 10)
            w[k] = min(max(nw, cfg[_W_MIN]), cfg[_W_MAX])
    if widx[_MATCH] >= 0:
        pred = S[_PRED]
        ms = S[_MSCORE]
        grad = (ms if pred == s else 0) - (q[pred] * ms) // Q
        k = widx[_MATCH]
        nw = w[k] + ((grad * lr_t + 512) >> 10)
        w[k] = min(max(nw, cfg[_W_MIN]), cfg[_W_MAX])
    # ---- switch log-weights
    log_total = np.int64(LG[_TOTAL])
    vsw = m.vsw[j]
    v0 = vsw[0] - (log_total - LG[m.G[j, s]])
    v1 = vsw[1] - log_total // 2
    top = max(v0, v1)
    floor = -cfg[_SWITCH_CLAMP] * 256
    vsw[0] = max(v0 - top, floor)
    vsw[1] = max(v1 - top, floor)
    # ---- counts
    if widx[_C0] >= 0:
        _count(m.c0[g], s, cfg[_O0_LIMIT])
    if widx[_C1] >= 0:
        _count(m.c1[g, S[_PREV1]], s, cfg[_O1_LIMIT])
    if widx[_C2] >= 0:
        _count(m.c2[g, S[_H2]], s, cfg[_O2_LIMIT])
    if widx[_C4] >= 0:
        _count(m.c4[g, S[_H4]], s, cfg[_O2_LIMIT])
    if widx[_C6] >= 0:
        _count(m.c6[g, S[_H6]], s, cfg[_O2_LIMIT])
    # ---- history
    h8 = (m.hist8[j] << _U8) | np.uint64(s)
    m.hist8[j] = h8
    hbits = cfg[_HISTORY_BITS]
    ring = np.int64(1) << hbits
    hmask = ring - 1
    if m.hist.shape[1] > 0:
        m.hist[j, t & hmask] = s
    if cfg[_HAS_REC_COMPONENT]:
        _update_rec(j, s, t, m, ring)
    if widx[_MATCH] >= 0:
        _update_match(j, s, h8, t, m, hmask, ring)
    m.t[j] = t + 1


@njit(inline="always", **_KERNEL)
def _count(row, s, limit):
    """Count byte ``s`` in ``row`` (256 counts), halving the row first when ``row[s]`` reached
    ``limit``."""
    if row[s] >= limit:
        for v in range(256):
            row[v] >>= 1
    row[s] += 1


@njit(inline="always", **_KERNEL)
def _update_rec(j, s, t, m, ring):
    cfg = m.cfg
    S = m.S[j]
    if S[_HAS_REC]:
        _count(m.crec[m.grp[j], S[_ABOVE]], s, cfg[_O1_LIMIT])
    rlast = m.rlast[j, s]
    last0 = rlast[0]
    last1 = rlast[1]
    d1 = t + 1 - last0
    d2 = last0 - last1
    rlast[1] = last0
    rlast[0] = t + 1
    if last1 > 0 and d1 == d2 and d1 >= 2 and d1 < ring:
        rcand, rvote = m.rcand, m.rvote
        v = rvote[j] + 1 if rcand[j] == d1 else rvote[j] - 1
        if v < 0:
            rcand[j] = d1
            v = 1
        else:
            v = min(v, 4 * cfg[_REC_VOTES])
        rvote[j] = v
        if v >= cfg[_REC_VOTES]:
            m.rlen[j] = rcand[j]


@njit(inline="always", **_KERNEL)
def _update_match(j, s, h8, t, m, hmask, ring):
    cfg = m.cfg
    S = m.S[j]
    hit = S[_HAS_MATCH] == 1 and S[_PRED] == s
    if S[_HAS_MATCH]:
        b = S[_BUCKET]
        mhit, mtot = m.mhit[m.grp[j]], m.mtot[m.grp[j]]
        mhit[b] += 1 if hit else 0
        mtot[b] += 1
        if mtot[b] >= 1024:
            mhit[b] >>= 1
            mtot[b] >>= 1
    mlen = m.mlen[j] + 1 if hit else 0
    mptr = m.mptr[j] + 1 if hit else 0
    mlane = m.mlane[j] if hit else j
    pos = t + 1
    g = m.grp[j]
    entry = ((j - m.gfirst[j]) << 32) | pos
    bits = m.gbits[g, 3]
    k = cfg[_MATCH_MIN]
    kl = cfg[_MATCH_LONG]
    if kl:
        key2 = _hash(h8, kl, bits)
        if pos >= kl:
            mtab2 = m.mtab2
            if mlen < kl:
                length, cand, lane = _verify(j, mtab2, key2, pos, m, hmask, ring)
                if length >= kl and length > mlen:
                    mlen = length
                    mptr = cand
                    mlane = lane
            mtab2[g, key2] = entry
    key = _hash(h8, k, bits)
    mtab = m.mtab
    if mlen == 0 and pos >= k:
        length, cand, lane = _verify(j, mtab, key, pos, m, hmask, ring)
        if length >= k:
            mlen = length
            mptr = cand
            mlane = lane
    m.mlen[j] = mlen
    m.mptr[j] = mptr
    m.mlane[j] = mlane
    if pos >= k:
        mtab[g, key] = entry


@njit(**_KERNEL)
def step_lanes(lanes, lm, use_lm, out, m):
    """Coded tables of the next byte of lanes ``lanes`` into ``out[lanes]`` (int32 [B, 256]);
    ``lm`` is integer [B, 256] (ignored when ``use_lm`` is false)."""
    for i in range(len(lanes)):
        j = lanes[i]
        _step_lane(j, lm[j], use_lm, out[j], m)


@njit(**_KERNEL)
def update_lanes(lanes, symbols, m):
    """Feed ``symbols[j]`` (bytes, int [B]) to each lane ``j`` in ``lanes``."""
    for i in range(len(lanes)):
        j = lanes[i]
        _update_lane(j, np.int64(symbols[j]), m)


@njit(**_KERNEL)
def code_lanes(rows, lanes, lm, use_lm, symbols, counts, cums, freqs, m):
    """The encoder's fused loop: lane ``lanes[i]`` codes ``symbols[r, :counts[r]]`` (``r =
    rows[i]``) with LM tables ``lm[r, p]``; the coded byte's interval goes to ``cums[r, p]``,
    ``freqs[r, p]`` (int32). The lanes of a group must be adjacent in ``lanes``, in increasing
    order. Groups are coded one after another (they never interact, so this equals any
    interleaving, and one group's tables stay in the cache while it runs; a group of one lane
    codes all its bytes in a row); within a group, round ``p`` codes byte ``p`` of every lane
    with ``counts[r] > p``, lane after lane."""
    start = 0
    while start < len(rows):
        g = m.grp[lanes[start]]
        stop = start + 1
        while stop < len(rows) and m.grp[lanes[stop]] == g:
            stop += 1
        n = 0
        for i in range(start, stop):
            n = max(n, counts[rows[i]])
        for p in range(n):
            for i in range(start, stop):
                r = rows[i]
                if p < counts[r]:
                    table = m.table[lanes[i]]
                    _step_lane(lanes[i], lm[r, p], use_lm, table, m)
                    s = np.int64(symbols[r, p])
                    c = 0
                    for v in range(s):
                        c += table[v]
                    cums[r, p] = c
                    freqs[r, p] = table[s]
                    _update_lane(lanes[i], s, m)
        start = stop


@njit(**_KERNEL)
def decode_lanes(lanes, lm, states, words, pos, end, known, symbols, m):
    """The decoder's fused step: for each lane ``j`` in ``lanes``, in order, its coded table (LM
    row ``lm[j]``), the rANS decode of its next byte into ``symbols[j]`` (unless ``known[j]``:
    then ``symbols[j]`` already holds the byte, e.g. of a stream stored raw) and the mixer
    update.

    ``states`` (uint64), ``words`` (uint16), ``pos`` and ``end`` (int64) are the arrays of a
    :class:`lmcodec.rans.RansLaneDecoder`, advanced here by the rule of its ``decode_step``:
    ``slot = x mod 2**16`` lies in exactly one interval ``[c, c + f)`` of the table (a contract
    table: entries >= 1 summing to ``2**16``, which the mixer guarantees), then
    ``x = f * (x >> 16) + slot - c`` and one word is read when ``x < 2**16``. Returns 0, or -1
    when a lane needs a word beyond its own (a corrupt chunk).
    """
    for i in range(len(lanes)):
        j = lanes[i]
        table = m.table[j]
        _step_lane(j, lm[j], True, table, m)
        if known[j]:
            _update_lane(j, np.int64(symbols[j]), m)
            continue
        x = states[j]
        slot = np.int64(x & _SLOT_MASK)
        c = 0
        s = 0
        while c + table[s] <= slot:
            c += table[s]
            s += 1
        x = np.uint64(table[s]) * (x >> _PREC) + np.uint64(slot - c)
        if x < _STATE_LOWER:
            if pos[j] >= end[j]:
                return -1
            x = (x << _WORD_SHIFT) | np.uint64(words[pos[j]])
            pos[j] += 1
        states[j] = x
        symbols[j] = s
        _update_lane(j, np.int64(s), m)
    return 0
