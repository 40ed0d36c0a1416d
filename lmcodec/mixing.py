"""Integer-exact adaptive mixing of the Transformer's tables with statistics of the data itself.

The language model (LM) sees at most one segment (at most its ``context_length`` bytes) and was trained on
other data. :class:`AdaptiveMixer` adds what it cannot know, learned on the stream being coded:
adaptive order-0/1/2 (and, in mixer version 3, hashed order-4/6) counts, a *record* model
(counts in the context of the byte one record back, e.g. the pixel above or the same column of
the previous table row) and a *match* model
(the byte that followed the most recent earlier occurrence of the current context, as PAQ-style
match models do), and mixes them with the LM table into the table that is actually coded.

One mixer *lane* follows one *stream* (e.g. one byte plane of a chunk). The LM may restart at
every segment inside that stream while the lane's state carries on: the mixer never sees segment
boundaries, so its state is independent of them by construction. Lane ``j``'s tables depend only
on lane ``j``'s LM tables and bytes.

Everything is integer numpy (int32/int64/uint8, and uint64 with wrap-around only in the hashes),
so the output is bit-exact on every platform; the two look-up tables are built with integer
arithmetic only (:func:`math.isqrt` and repeated squaring). No float is used anywhere (the
compiled backend estimates one quotient in float64 and corrects it to the exact integer floor, see
:func:`lmcodec.mixing_kernels._to_table`).

Two implementations (``backend``) compute the same integers: this module's numpy code, the
reference, vectorised over lanes; and :mod:`lmcodec.mixing_kernels`, the same rules as scalar
loops compiled by numba (the default; ``LMCODEC_MIXER=numpy`` selects the reference).
tests/test_mixing.py requires identical tables and states from both on random configurations and
inputs, and both reproduce the pinned output digest.

Pipeline for one position of every lane (:meth:`AdaptiveMixer.step`)
--------------------------------------------------------------------

1. **Inputs.** Each component ``i`` gives a score ``l_i(s)`` per byte value ``s``, in log units
   of ``2**-8`` bit (``LOG_ONE = 256`` = one bit), defined up to a per-lane constant:

   * ``lm``: ``LG[f_lm(s)]`` with ``LG[x] ~ 256 * log2(x)`` (``LG[0] = 0``), in ``[0, 4096]``;
     ``f`` is clipped to ``[0, 65536]`` first, so any integer input is safe;
   * ``o0``/``o1``/``o2``/``o4``/``o6``/``rec``: ``LG[2*c(s) + 1]`` (Krichevsky-Trofimov, count +
     1/2) of the lane's counts in the context: none / previous byte / hash of the previous two,
     four or six bytes (``o2_bits``, ``o4_bits``, ``o6_bits`` rows) / the byte one record length
     back; in ``[0, LG[2047]] = [0, 2815]``. ``rec`` is 0 everywhere
     while the lane has no record length (it then carries no information);
   * ``match``: only the predicted byte ``e`` scores, ``l(e) = LG[2h+1] - LG[2m+1] + LG[255]``
     (log-odds of "the match goes on" from the lane's hit/miss counts ``h, m < 1024`` for the
     current match-length bucket, against one given other byte), in ``[-769, 4861]``; all other
     bytes score 0, and all score 0 without a match.

   So ``|l_i(s)| < 2**13``.

2. **Geometric mixing** (a product of experts: the many-symbol form of PAQ's logistic mixing):
   ``z(s) = (sum_i (w_i >> 4) * l_i(s)) >> 12`` with integer weights ``w_i`` in units of
   ``2**-16``, clamped to ``[W_MIN, W_MAX] = [-2**17, 2**19 - 1]`` (-2.0 .. 8.0), so
   ``|w_i >> 4| <= 2**15``; the sum of at most 8 terms is below ``2**15 * (4096 + 6 * 2815 +
   4861) < 2**30`` (lm, six counts, match) and fits in int32. The lane's weight vector is one of
   ``n_sets`` sets, chosen by its match length (``set_len_edges``). Then ``d(s) = min(max z - z(s), D_MAX)`` and
   ``q(s) = EXP[d(s)] ~ 2**30 * 2**(-d/256)``, so ``q`` is in ``[1, 2**30]``, ``Q = sum q < 2**38``.

3. **Geometric table** ``G = to_table(q)``.

4. **Safety switch.** A two-expert Bayesian mixture with clamped log-weights (a switching
   mixture) of ``G`` and the uniform table ``U = 256``: each lane keeps minus the code lengths of
   both experts as log-weights ``v_G, v_U <= 0`` (units 2**-8 bit), re-based to ``max = 0`` and
   clamped at ``-switch_clamp_bits`` (16) bits after every byte; ``v_U`` starts at
   ``-switch_init_bits`` (4). The weights are ``W = EXP[-v] >> 14`` in ``[1, 2**16]`` and the
   coded table is ``to_table(W_G * G(s) + W_U * 256)`` (each term ``<= 2**32``).

``to_table(x)`` (``x`` non-negative int64 ``[B, 256]``, ``X = sum x > 0``, ``x * 65280 < 2**63``):
``f(s) = 1 + (x(s) * 65280) // X``; the remainder ``r = 65536 - sum f`` lies in ``[0, 255]``
(each floor loses less than one) and is added to the first (lowest byte value) entry holding the
maximum of ``f``. Every entry is then ``>= 1``, the sum is exactly ``65536`` and the maximum is at
most ``65536 - 255 = 65281`` (the 255 other entries are ``>= 1``): the
:mod:`lmcodec.frequency_model` contract, for *any* input.

Cost bound (any data, any LM table)
-----------------------------------
``f(s) >= x(s) * 65280 / X`` gives every byte a coded probability of at least
``(65280/65536) * W_U / (W_G + W_U) / 256``. ``v_U`` trails the leader by at most
``switch_clamp_bits`` bits, so one byte never costs more than ``8 + log2(1 + 2**16) + 0.006``
(about 24) bits; while the uniform expert leads (data the mix cannot predict) a byte costs at most
``8 + log2(1 + 2**-16) + 0.006`` bits, and in fact ``f(s) = 256`` (exactly 8 bits) once ``W_G``
is ``2**-16`` of ``W_U``. For a whole stream of ``n`` bytes the Bayesian-mixture argument
(weights are only ever raised by the clamp, each raise costing at most ``log2(1 + 2**-16)``)
bounds the total by about ``8 n + switch_init_bits + 1 + n * (log2(1 + 2**-16) + 0.006)`` bits,
up to the rounding of ``LG`` and ``EXP`` (under 1/256 bit per byte); the tests check
``<= 8 n + 17 + 0.01 n`` with an adversarial LM that puts 65281 on a wrong byte every time. So a
plane the mix cannot predict costs 8.0-8.02 bits per byte instead of the LM's up to 16; getting
strictly <= 8.0 needs a stored-raw fallback per plane (one flag) in the format.

Adaptation (:meth:`AdaptiveMixer.update`)
-----------------------------------------
* Weights (of the lane's current set): online gradient descent on the geometric mix's code
  length, ``w_i += (lr_t * (l_i(sym) - E_i) + 2**9) >> 10`` with ``E_i = (sum_s q(s) l_i(s)) // Q``
  (``|q l| < 2**43``, sums ``< 2**51``), ``lr_t = lr * (1 + (boost - 1) * T // (T + t))`` after
  ``t`` bytes of the stream (``lr`` is in units of ``2**-18`` weight per log unit); then clamped.
* Counts: +1 for the coded byte; a row (o0: the lane's 256 counts; o1/o2/o4/o6/rec: the
  context's row) is halved (``>> 1``) first when the coded byte's count has reached its limit
  (``o2_limit`` also for o4 and o6), which keeps the statistics adaptive and within ``uint8``
  (o1/o2/o4/o6/rec) or small ``int32`` (o0).
* Record length: explicit per lane (:meth:`AdaptiveMixer.set_record_length`, e.g. the row length
  of an image or table, known from the array shape), else detected: byte ``s`` seen at distances
  ``d, d`` (three equally spaced occurrences, ``d >= 2``) votes for ``d`` in a majority-vote
  counter; ``d`` becomes the record length when its counter reaches ``rec_votes``.
* Match model: per-lane hit/miss counts per bucket ``min(len, 15)`` (halved at 1024); a match is
  extended on a hit and dropped on a miss. A lane whose match is shorter than ``match_long`` (6)
  looks up the hash of its last 6 bytes, one without a match that of its last ``match_min`` (3);
  a candidate (a ``hash_bits``-bit table of positions) is verified by comparing up to
  ``MATCH_VERIFY`` (16) bytes backwards in the lane's history ring (``history_bits``) and taken
  when at least 6 (resp. 3) bytes agree; the verified length is the new match length.
"""

from __future__ import annotations

import math
import mmap
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import mixing_kernels as _kernels
from .errors import CorruptChunkError
from .frequency_model import N_SYMBOLS, TOTAL

if TYPE_CHECKING:
    from .rans import RansLaneDecoder

__all__ = [
    "MixerConfig",
    "AdaptiveMixer",
    "DEFAULT_CONFIG",
    "COMPONENTS",
    "LOG_ONE",
    "log_lut",
    "exp_lut",
    "to_table",
    "table_bits",
    "mix_sequence",
    "BACKENDS",
    "default_backend",
]

LOG_FRAC_BITS = 8
LOG_ONE = 1 << LOG_FRAC_BITS
"""Log units per bit."""
W_FRAC_BITS = 16
W_ONE = 1 << W_FRAC_BITS
"""Weight units per 1.0."""
W_MIN, W_MAX = -2 * W_ONE, 8 * W_ONE - 1
_W_DROP = 4
"""Weights enter the mix as ``w >> 4`` (12 fractional bits, ``|w >> 4| < 2**15``) so that the
weighted sum of inputs stays in int32."""
EXP_BITS = 30
"""``EXP[0] = 2**EXP_BITS``."""
D_MAX = EXP_BITS * LOG_ONE - 1
"""Largest log-domain distance from the best symbol; ``EXP[D_MAX] = 1``."""
SPARE = TOTAL - N_SYMBOLS
"""65280: mass shared out in proportion to the input of :func:`to_table` (the rest is the floor)."""
MATCH_VERIFY = 16
"""Bytes compared backwards to verify a match candidate; also the largest starting length."""
MATCH_BUCKETS = 16
"""Match-length buckets of the hit counts: ``min(len, 15)`` (0 = no match)."""
MATCH_COUNT_LIMIT = 1024
COMPONENTS = ("lm", "o0", "o1", "o2", "rec", "match", "o4", "o6")
"""Every component, in weight-slot order of the compiled kernels (o4 and o6 came with mixer
version 3 and are appended so that the older slots keep their place)."""
_HASHED_ORDERS = {"o2": 2, "o4": 4, "o6": 6}
"""Bytes of the history each hashed context reads."""
BACKENDS = ("numba", "numpy")
"""Implementations of the same rules: compiled kernels (:mod:`lmcodec.mixing_kernels`) and the
numpy reference in this module. Tests require identical output from both."""


def default_backend() -> str:
    """``numba`` unless the environment variable ``LMCODEC_MIXER=numpy`` selects the reference
    implementation."""
    forced = os.environ.get("LMCODEC_MIXER", "").strip().lower()
    if forced and forced not in BACKENDS:
        raise ValueError(f"LMCODEC_MIXER must be one of {BACKENDS}, got {forced!r}")
    if forced == "numpy":
        return "numpy"
    return "numba"


# --------------------------------------------------------------------------------------------
# Integer look-up tables
# --------------------------------------------------------------------------------------------


def _build_log_lut(n: int) -> np.ndarray:
    """``LG[x] = floor-ish(256 * log2(x))`` for ``x`` in ``[0, n]`` (``LG[0] = 0``), int32.

    Integer only: ``x = 2**e * m`` with ``m`` in ``[1, 2)`` held as a 31-bit fixed point, then
    ``LOG_FRAC_BITS`` rounds of squaring give the fractional bits (squares truncated, so each
    value is within one unit below the true ``256 * log2(x)``).
    """
    x = np.arange(n + 1, dtype=np.uint64)
    x[0] = 1
    e = np.zeros(n + 1, dtype=np.int64)
    for b in range(31, -1, -1):  # exponent = bit length - 1
        e = np.where((e == 0) & (x >> np.uint64(b) != 0), b, e)
    assert n < 1 << 31
    m = x << (31 - e).astype(np.uint64)  # in [2**31, 2**32)
    frac = np.zeros(n + 1, dtype=np.int64)
    one31 = np.uint64(31)
    two = np.uint64(1) << np.uint64(32)
    for _ in range(LOG_FRAC_BITS):
        m = (m * m) >> one31  # m < 2**32 so m*m < 2**64: no wrap
        big = m >= two
        m = np.where(big, m >> np.uint64(1), m)
        frac = frac * 2 + big
    out = (e << LOG_FRAC_BITS) + frac
    out[0] = 0
    return out.astype(np.int32)


def _build_exp_lut() -> np.ndarray:
    """``EXP[d] ~ 2**EXP_BITS * 2**(-d / 256)`` for ``d`` in ``[0, D_MAX]``, int64, from
    Python integers only (square roots by :func:`math.isqrt`, 64 fractional bits)."""
    p = 64
    one = 1 << p
    roots = [2 * one]  # roots[k] = 2**(2**-k) in fixed point, k = 0..8
    for _ in range(LOG_FRAC_BITS):
        roots.append(math.isqrt(roots[-1] << p))
    frac = []
    for j in range(LOG_ONE):
        v = one
        for k in range(1, LOG_FRAC_BITS + 1):  # j/256 = sum of bits * 2**-k
            if (j >> (LOG_FRAC_BITS - k)) & 1:
                v = (v * roots[k]) >> p
        frac.append(((1 << (EXP_BITS + 2 * p)) // v + one // 2) >> p)  # 2**30 / 2**(j/256)
    frac_a = np.array(frac, dtype=np.int64)
    d = np.arange(D_MAX + 1)
    return frac_a[d & (LOG_ONE - 1)] >> (d >> LOG_FRAC_BITS)


_LG = _build_log_lut(TOTAL)
_EXP = _build_exp_lut()
_LOG_TOTAL = int(_LG[TOTAL])
"""``LG[65536] = 16 * 256``: the code length of a table entry ``f`` is ``_LOG_TOTAL - LG[f]``."""
_KT8 = _LG[2 * np.arange(256) + 1].astype(np.int32)
"""Score of a uint8 count: ``LG[2c + 1]``."""


def log_lut() -> np.ndarray:
    """A copy of ``LG`` (int32 ``[65537]``)."""
    return _LG.copy()


def exp_lut() -> np.ndarray:
    """A copy of ``EXP`` (int64 ``[D_MAX + 1]``)."""
    return _EXP.copy()


def to_table(x: np.ndarray, total: np.ndarray | None = None) -> np.ndarray:
    """Contract-exact int32 tables from non-negative int64 ``x [B, 256]`` (see module docstring).

    ``total`` is ``x.sum(1)`` when the caller knows it. Requires ``0 < X`` and
    ``max(x) * 65280 < 2**63``.
    """
    if total is None:
        total = x.sum(axis=1)
    f = (x * SPARE) // total[:, None] + 1
    r = TOTAL - f.sum(axis=1)
    f[np.arange(len(f)), f.argmax(axis=1)] += r
    return f.astype(np.int32)


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MixerConfig:
    """Everything that defines the mixer's output (a format must pin all of it).

    Memory per lane: o1 ``64 KiB``; o2/o4/o6 ``2**bits * 256`` bytes each; match ``4 *
    2**hash_bits + 2**history_bits`` bytes; o0, weights and scalars under 2 KiB (a group of lanes
    sharing statistics holds one set of counts and match tables).
    """

    components: tuple[str, ...] = ("lm", "o0", "o1", "o2", "rec", "match")
    o0_limit: int = 1023
    o1_limit: int = 255
    o2_limit: int = 255
    """Count limit of the o2, o4 and o6 rows."""
    o2_bits: int = 10
    o4_bits: int = 16
    """Rows (log2) of the hashed order-4 table, only with component ``o4``; likewise ``o6_bits``."""
    o6_bits: int = 16
    match_min: int = 3
    hash_bits: int = 16
    history_bits: int = 16
    lr: int = 1024
    """Weight learning rate in units of ``2**-18`` weight per bit of gradient."""
    lr_boost: int = 4
    """Learning rate multiplier at the start of a stream, decaying as ``1 + (boost-1)*T/(T+t)``."""
    lr_boost_steps: int = 1024
    init_weights: tuple[int, ...] = (W_ONE, W_ONE // 4, W_ONE // 4, W_ONE // 4, W_ONE // 4, W_ONE // 2,
                                     W_ONE // 4, W_ONE // 4)
    """Initial weight per entry of ``COMPONENTS`` (units of 2**-16), every set alike."""
    rec_votes: int = 4
    """Record-length detection: a repeat distance becomes the lane's record length once its
    majority-vote counter reaches this (see :meth:`AdaptiveMixer.set_record_length`)."""
    match_long: int = 6
    """If nonzero, a second hash table keyed on the last ``match_long`` bytes; a lane whose match
    is shorter than ``match_long`` looks there first and takes a verified longer match."""
    set_len_edges: tuple[int, ...] = (1, 16)
    """Match part of the weight set: number of edges ``<=`` the match length (0 = no match)."""
    switch_clamp_bits: int = 16
    switch_init_bits: int = 4
    """The uniform expert starts this many bits behind the geometric mix."""
    scale_tables: bool = False
    """Size each group's hashed tables (o2/o4/o6 counts, match tables) to the bytes the group
    codes (``group_bytes`` of :class:`AdaptiveMixer`, see :func:`table_bits`), so a small chunk
    touches little memory; otherwise every group uses the full ``*_bits``."""

    def __post_init__(self) -> None:
        if not self.components or self.components[0] != "lm" or any(c not in COMPONENTS for c in self.components):
            raise ValueError(f"components must start with 'lm' and be from {COMPONENTS}")
        if len(set(self.components)) != len(self.components):
            raise ValueError("duplicate component")
        if not (1 <= self.o1_limit <= 255 and 1 <= self.o2_limit <= 255 and 1 <= self.o0_limit <= 32767):
            raise ValueError("count limits out of range")
        if self.match_long and not self.match_min < self.match_long <= 8:
            raise ValueError("match_long must be in (match_min, 8]")
        if not (2 <= self.match_min <= 8 and 8 <= self.hash_bits <= 24 and 10 <= self.history_bits <= 26):
            raise ValueError("match parameters out of range")
        if not 0 <= self.o2_bits <= 16 or not (8 <= self.o4_bits <= 20 and 8 <= self.o6_bits <= 20):
            raise ValueError("o2_bits must be in [0, 16], o4_bits and o6_bits in [8, 20]")
        if len(self.init_weights) != len(COMPONENTS):
            raise ValueError("init_weights needs one entry per COMPONENTS")
        if not 1 <= self.switch_clamp_bits <= 16 or not 0 <= self.switch_init_bits <= self.switch_clamp_bits:
            raise ValueError("switch_clamp_bits must be in [1, 16], switch_init_bits in [0, clamp]")
        if not (0 <= self.lr < 1 << 16 and 1 <= self.lr_boost <= 64):
            raise ValueError("learning rate out of range")

    @property
    def n_sets(self) -> int:
        return len(self.set_len_edges) + 1

    def bytes_per_lane(self) -> int:
        c = set(self.components)
        n = 2048
        if "o1" in c:
            n += 256 * 256
        for name in ("o2", "o4", "o6"):
            if name in c:
                n += 256 << getattr(self, f"{name}_bits")
        if "rec" in c:
            n += 256 * 256 + 256 * 16
        if "match" in c:
            n += 4 * (1 << self.hash_bits) * (2 if self.match_long else 1)
        if "match" in c or "rec" in c:
            n += 1 << self.history_bits
        return n

    def to_dict(self) -> dict:
        return asdict(self)


DEFAULT_CONFIG = MixerConfig()
MIN_TABLE_BITS = 8
_TABLE_FIELDS = ("o2_bits", "o4_bits", "o6_bits", "hash_bits")
"""Columns of ``AdaptiveMixer.gbits``: the hashed tables whose size :func:`table_bits` sets."""


def table_bits(bits: int, n_bytes: int | None) -> int:
    """Hash bits of a table configured with ``bits`` for a group that codes ``n_bytes`` bytes
    (None: unknown): ``min(bits, max(8, bit_length(n_bytes - 1) + 1))``, i.e. between 2 and 4
    rows per coded byte once the table is below its configured size (a group writes at most one
    row per byte, so few rows collide)."""
    if n_bytes is None:
        return bits
    return min(bits, max(MIN_TABLE_BITS, (max(n_bytes, 1) - 1).bit_length() + 1))


def _lazy_zeros(shape: tuple[int, ...], dtype) -> np.ndarray:
    """A zero array in an anonymous memory map: the system supplies zero pages on first write
    (4 KiB each; no transparent huge pages, which numpy requests for large arrays), so a big
    table costs memory only where it is written."""
    n = math.prod(shape) * np.dtype(dtype).itemsize
    if n == 0:
        return np.zeros(shape, dtype=dtype)
    return np.frombuffer(mmap.mmap(-1, n), dtype=dtype).reshape(shape)


# --------------------------------------------------------------------------------------------
# The mixer
# --------------------------------------------------------------------------------------------

_HASH_MUL = np.uint64(0x9E3779B97F4A7C15)


class AdaptiveMixer:
    """Per-lane adaptive state and the mixing rule for ``lanes`` independent streams.

    Decoder loop (encoder: :meth:`mix_sequence`, defined by the very same calls)::

        mixer = AdaptiveMixer(B)
        for p in range(n):
            table = mixer.step(lm_table[:, p])          # int32 [B, 256], contract-exact
            sym = rans.decode_step(table, active)       # the coded byte of every active lane
            mixer.update(sym, active)                   # inactive lanes keep their state

    ``step`` and ``update`` alternate strictly. The state of a lane is unaffected by where LM
    segments begin; :meth:`reset` starts lanes afresh (a new stream).

    ``groups`` (int ``[B]``, default: every lane its own group) lets runs of consecutive lanes
    share their statistics: ``groups[0] = 0`` and each next entry equals the previous one or
    exceeds it by one. The lanes of a group share the order-0/1/2/4/6 and record counts and the
    match model's tables and hit counts (whose entries name the lane and position they point
    to, so a lane's match may continue another lane's history); each lane keeps its own
    history, match, record length, mixing weights and switch. The group's lanes advance together
    in *rounds*: round ``t`` codes byte ``t`` of every lane that has one, lane after lane in lane
    order (its table, then its update), so a lane's table depends on earlier rounds and on the
    lanes before it in the current one. Only :meth:`code` and :meth:`decode` advance shared
    groups (``step``/``update`` take all lanes' tables before any update, another order), and
    only the compiled backend runs them. Lanes of different groups never interact.

    ``group_bytes`` (int ``[G]``, default unknown) is the number of bytes each group will code;
    with ``config.scale_tables`` it sets the size of the group's hashed tables
    (:func:`table_bits`), and so the tables themselves: encoder and decoder must pass the same.
    """

    def __init__(self, lanes: int, config: MixerConfig = DEFAULT_CONFIG, backend: str | None = None,
                 groups: np.ndarray | None = None, group_bytes: np.ndarray | None = None):
        if lanes < 0:
            raise ValueError("lanes must be >= 0")
        backend = default_backend() if backend is None else backend
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        grp = np.arange(lanes, dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
        if grp.shape != (lanes,) or (lanes and (grp[0] != 0 or np.any((np.diff(grp) < 0) | (np.diff(grp) > 1)))):
            raise ValueError("groups must be [lanes], start at 0 and rise by 0 or 1 per lane")
        n_groups = int(grp[-1]) + 1 if lanes else 0
        if n_groups != lanes and backend != "numba":
            raise ValueError("lanes sharing a group need the compiled (numba) backend")
        self.groups = grp
        if group_bytes is not None:
            group_bytes = np.asarray(group_bytes, dtype=np.int64)
            if group_bytes.shape != (n_groups,) or np.any(group_bytes < 0):
                raise ValueError(f"group_bytes must be {n_groups} non-negative integers")
        sizes = [int(n) for n in group_bytes] if config.scale_tables and group_bytes is not None else [None] * n_groups
        self.gbits = np.array([[table_bits(getattr(config, f), n) for f in _TABLE_FIELDS] for n in sizes],
                              dtype=np.int64).reshape(n_groups, len(_TABLE_FIELDS))
        """Hash bits per group of the o2, o4, o6 and match tables (``_TABLE_FIELDS``)."""
        self._shared = n_groups != lanes
        self._gfirst = np.searchsorted(grp, grp, side="left").astype(np.int64)
        self.backend = backend
        self.config = config
        self.lanes = int(lanes)
        c = config.components
        self._dense = [k for k in c if k != "match"]
        self._has = {k: k in c for k in COMPONENTS}
        self._k = len(c)
        self._match_idx = c.index("match") if "match" in c else -1
        self._dense_idx = [c.index(k) for k in self._dense]
        self._set_of_len = np.searchsorted(np.array(config.set_len_edges), np.arange(4 * MATCH_VERIFY + 1),
                                           side="right")  # weight set per match length (clipped)
        self._ar = np.arange(self.lanes)
        B, G = self.lanes, n_groups
        # State: c0, c1, c2, c4, c6, crec, mtab, mtab2, mhit, mtot per group, the rest per lane
        self.w = np.zeros((B, config.n_sets, self._k), dtype=np.int64)
        self.vsw = np.zeros((B, 2), dtype=np.int64)  # switch log-weights (G, uniform), <= 0
        self.t = np.zeros(B, dtype=np.int64)  # symbols seen
        self.hist8 = np.zeros(B, dtype=np.uint64)  # last 8 bytes, newest in the low byte
        self.c0 = np.zeros((G, N_SYMBOLS), dtype=np.int32) if self._has["o0"] else None
        self.c1 = np.zeros((G, N_SYMBOLS, N_SYMBOLS), dtype=np.uint8) if self._has["o1"] else None
        for k, name in enumerate(("c2", "c4", "c6")):  # hashed counts: rows [0, 2**gbits) of each group
            rows = 1 << int(self.gbits[:, k].max(initial=0))
            setattr(self, name, _lazy_zeros((G, rows, N_SYMBOLS), np.uint8) if self._has["o" + name[1]] else None)
        ring = 1 << config.history_bits if (self._has["match"] or self._has["rec"]) else 0
        self.hist = np.zeros((B, ring), dtype=np.uint8)  # the lane's last bytes, byte t at t % ring
        self.rfixed = np.zeros(B, dtype=np.int64)  # explicit record length, 0 = detect
        if self._has["rec"]:
            self.crec = np.zeros((G, N_SYMBOLS, N_SYMBOLS), dtype=np.uint8)
            self.rlast = np.zeros((B, N_SYMBOLS, 2), dtype=np.int64)  # last two positions + 1 of each byte
            self.rcand = np.zeros(B, dtype=np.int64)
            self.rvote = np.zeros(B, dtype=np.int64)
            self.rlen = np.zeros(B, dtype=np.int64)
        if self._has["match"]:
            # entries: rank of the writing lane in its group << 32 | position of the next byte
            rows = 1 << int(self.gbits[:, 3].max(initial=0))
            self.mtab = _lazy_zeros((G, rows), np.int64)
            self.mtab2 = _lazy_zeros((G, rows if config.match_long else 0), np.int64)
            self.mptr = np.zeros(B, dtype=np.int64)
            self.mlen = np.zeros(B, dtype=np.int64)
            self.mlane = np.arange(B, dtype=np.int64)  # lane whose history the match follows
            self.mhit = np.zeros((G, MATCH_BUCKETS), dtype=np.int32)
            self.mtot = np.zeros((G, MATCH_BUCKETS), dtype=np.int32)
        self._start(self._ar)  # every other state array starts as the zeros just allocated
        self._k_arrays = self._kernel_arrays() if backend == "numba" else None
        self._no_lm = np.zeros((B, N_SYMBOLS), dtype=np.int32) if backend == "numba" else None  # kernel argument
        self._none_given = np.zeros(B, dtype=bool)
        self._rows: dict[str, np.ndarray] = {}  # numpy backend: row of each hashed context (o2/o4/o6)

    def _kernel_arrays(self) -> "_kernels.MixerArrays":
        """The state arrays (shared, not copied), scratch and constants of the compiled kernels;
        absent components get empty placeholders."""
        B, cfg = self.lanes, self.config

        def have(name: str, dtype, shape) -> np.ndarray:
            a = getattr(self, name, None)
            return np.zeros(shape, dtype=dtype) if a is None else a

        widx = np.array([cfg.components.index(k) if k in cfg.components else -1 for k in COMPONENTS],
                        dtype=np.int64)
        consts = np.array([cfg.o0_limit, cfg.o1_limit, cfg.o2_limit, cfg.match_min, cfg.history_bits,
                           cfg.lr, cfg.lr_boost, cfg.lr_boost_steps, cfg.rec_votes, cfg.match_long,
                           cfg.switch_clamp_bits, W_MIN, W_MAX, int(self._has["rec"])],
                          dtype=np.int64)
        return _kernels.MixerArrays(
            grp=self.groups, gfirst=self._gfirst, gbits=self.gbits, w=self.w, vsw=self.vsw, t=self.t, hist8=self.hist8,
            c0=have("c0", np.int32, (B, 0)), c1=have("c1", np.uint8, (B, 0, 0)),
            c2=have("c2", np.uint8, (B, 0, 0)), c4=have("c4", np.uint8, (B, 0, 0)),
            c6=have("c6", np.uint8, (B, 0, 0)), crec=have("crec", np.uint8, (B, 0, 0)),
            hist=self.hist, rfixed=self.rfixed,
            rcand=have("rcand", np.int64, (B,)), rvote=have("rvote", np.int64, (B,)),
            rlen=have("rlen", np.int64, (B,)), rlast=have("rlast", np.int64, (B, 0, 2)),
            mtab=have("mtab", np.int64, (B, 0)), mtab2=have("mtab2", np.int64, (B, 0)),
            mptr=have("mptr", np.int64, (B,)), mlen=have("mlen", np.int64, (B,)),
            mlane=have("mlane", np.int64, (B,)),
            mhit=have("mhit", np.int32, (B, 0)), mtot=have("mtot", np.int32, (B, 0)),
            L=np.zeros((B, 7, N_SYMBOLS), dtype=np.int32), q=np.zeros((B, N_SYMBOLS), dtype=np.int64),
            x=np.zeros((B, N_SYMBOLS), dtype=np.int64), G=np.zeros((B, N_SYMBOLS), dtype=np.int32),
            S=np.zeros((B, 12), dtype=np.int64), table=np.zeros((B, N_SYMBOLS), dtype=np.int32),
            cfg=consts, widx=widx, set_of_len=self._set_of_len.astype(np.int64),
            LG=_LG, KT8=_KT8, EXP=_EXP,
        )

    # ---------------------------------------------------------------- state
    def reset(self, mask: np.ndarray | None = None) -> None:
        """Start the lanes in ``mask`` (bool ``[B]``, default all; whole groups only) as new,
        empty streams (this also forgets an explicit record length)."""
        idx = self._ar if mask is None else np.flatnonzero(np.asarray(mask, dtype=bool))
        gi = np.unique(self.groups[idx])
        if np.count_nonzero(np.isin(self.groups, gi)) != len(idx):
            raise ValueError("reset needs every lane of a group")
        for name in ("t", "hist8", "rfixed", "rlast", "rcand", "rvote", "rlen", "hist", "mptr", "mlen"):
            a = getattr(self, name, None)
            if a is not None:
                a[idx] = 0
        for name in ("c0", "c1", "c2", "c4", "c6", "crec", "mtab", "mtab2", "mhit", "mtot"):
            a = getattr(self, name, None)
            if a is not None:
                a[gi] = 0
        self._start(idx)

    def _start(self, idx: np.ndarray) -> None:
        """Set the non-zero initial state (weights, switch, match lane) of lanes ``idx`` (whole
        groups)."""
        cfg = self.config
        w0 = np.array([cfg.init_weights[COMPONENTS.index(k)] for k in cfg.components], dtype=np.int64)
        self.w[idx] = w0
        self.vsw[idx] = (0, -cfg.switch_init_bits * LOG_ONE)
        if self._has["match"]:
            self.mlane[idx] = idx
        self._pending = False

    # ---------------------------------------------------------------- step
    def step(self, lm_freqs: np.ndarray | None) -> np.ndarray:
        """The coded table (int32 ``[B, 256]``) for the next byte of every lane.

        ``lm_freqs``: integer ``[B, 256]`` LM tables (any integers are accepted: entries are
        clipped to ``[0, 65536]``; rows of inactive lanes may be anything), or ``None`` for
        no LM (its input is then 0).
        """
        if self._pending:
            raise RuntimeError("step() called twice without update()")
        if self._shared:
            raise RuntimeError("lanes sharing a group advance only through code() and decode()")
        B = self.lanes
        if lm_freqs is not None:
            lm_freqs = self._lm_input(lm_freqs, (B, N_SYMBOLS))
        if self.backend == "numba":
            out = np.empty((B, N_SYMBOLS), dtype=np.int32)
            use = lm_freqs is not None
            _kernels.step_lanes(self._ar, lm_freqs if use else self._no_lm, use, out, self._k_arrays)
            self._pending = True
            return out
        ar = self._ar
        cfg = self.config
        kd = len(self._dense)
        L = np.empty((kd, B, N_SYMBOLS), dtype=np.int32)
        prev1 = (self.hist8 & np.uint64(0xFF)).astype(np.intp)
        for i, name in enumerate(self._dense):
            if name == "lm":
                if lm_freqs is None:
                    L[i] = 0
                else:
                    np.take(_LG, lm_freqs, mode="clip", out=L[i])
            elif name == "o0":
                np.take(_LG, 2 * self.c0 + 1, out=L[i])
            elif name == "o1":
                np.take(_KT8, self.c1[ar, prev1], out=L[i])
            elif name in _HASHED_ORDERS:
                bits = self.gbits[self.groups, _TABLE_FIELDS.index(f"{name}_bits")]
                rows = self._hash(self.hist8, _HASHED_ORDERS[name], bits)
                self._rows[name] = rows
                np.take(_KT8, getattr(self, "c" + name[1])[ar, rows], out=L[i])
            elif name == "rec":
                rl = np.where(self.rfixed > 0, self.rfixed, self.rlen)
                has_rec = (rl > 0) & (self.t >= rl)
                above = self.hist[ar, (self.t - rl) & ((1 << cfg.history_bits) - 1)].astype(np.intp)
                np.take(_KT8, self.crec[ar, above], out=L[i])
                L[i] *= has_rec[:, None]
                self._above, self._has_rec = above, has_rec
        # match input (sparse: one symbol per lane)
        if self._match_idx >= 0:
            has = self.mlen > 0
            pred = self.hist[ar, self.mptr & ((1 << cfg.history_bits) - 1)].astype(np.intp)
            bucket = np.minimum(self.mlen, MATCH_BUCKETS - 1)
            h = self.mhit[ar, bucket]
            miss = self.mtot[ar, bucket] - h
            mscore = np.where(has, _LG[2 * h + 1] - _LG[2 * miss + 1] + _LG[255], 0).astype(np.int64)
            sel = self._set_of_len[np.minimum(self.mlen, len(self._set_of_len) - 1)]
            self._pred, self._mscore, self._bucket, self._has_match = pred, mscore, bucket, has
        else:
            sel = np.zeros(B, dtype=np.intp)
        w = (self.w[ar, sel] >> _W_DROP).astype(np.int32)  # [B, K], |w| <= 2**15
        wd = w[:, self._dense_idx]
        z = wd[:, 0, None] * L[0]  # int32: the sum is below 2**30 (module docstring)
        for i in range(1, kd):
            z += wd[:, i, None] * L[i]
        if self._match_idx >= 0:
            z[ar, pred] += w[:, self._match_idx] * mscore.astype(np.int32)
        z >>= W_FRAC_BITS - _W_DROP
        d = z.max(axis=1, keepdims=True) - z
        np.minimum(d, D_MAX, out=d)
        q = _EXP[d]
        Q = q.sum(axis=1)
        G = to_table(q, Q)
        # safety switch with the uniform table
        W = _EXP[-self.vsw] >> (EXP_BITS - W_FRAC_BITS)  # [B, 2], in [1, 2**16]
        x = W[:, 0:1] * G + W[:, 1:2] * (TOTAL // N_SYMBOLS)
        out = to_table(x, (W[:, 0] + W[:, 1]) * TOTAL)
        self._L, self._q, self._Q, self._G, self._sel, self._prev1 = L, q, Q, G, sel, prev1
        self._pending = True
        return out

    @staticmethod
    def _lm_input(lm_freqs: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """``lm_freqs`` checked for ``shape`` and an integer dtype; as int32/int64 (entries
        clipped to ``[0, 65536]`` first when another dtype could not hold them)."""
        lm = np.asarray(lm_freqs)
        if lm.shape != shape:
            raise ValueError(f"lm_freqs must be {list(shape)}, got {list(lm.shape)}")
        if not np.issubdtype(lm.dtype, np.integer):
            raise ValueError(f"lm_freqs must be integers, got {lm.dtype}")
        if lm.dtype not in (np.int32, np.int64):
            lm = np.clip(lm, 0, TOTAL).astype(np.int64)
        return np.ascontiguousarray(lm)

    # ---------------------------------------------------------------- update
    def update(self, symbols: np.ndarray, active: np.ndarray | None = None) -> None:
        """Feed the byte coded at this position: ``symbols`` integer ``[B]`` in ``[0, 255]``
        (entries of inactive lanes are ignored); ``active`` bool ``[B]`` (default: all)."""
        if not self._pending:
            raise RuntimeError("update() without a preceding step()")
        self._pending = False
        cfg = self.config
        sym_all = np.asarray(symbols).astype(np.intp)
        if sym_all.shape != (self.lanes,):
            raise ValueError(f"symbols must be [{self.lanes}], got {sym_all.shape}")
        if active is None:
            a = self._ar
        else:
            a = np.flatnonzero(np.asarray(active, dtype=bool))
            if a.size == 0:
                return
        s = sym_all[a]
        if s.size and (s.min() < 0 or s.max() > 255):
            raise ValueError("symbols must be bytes")
        if self.backend == "numba":
            _kernels.update_lanes(a.astype(np.int64), sym_all, self._k_arrays)
            return
        n = len(a)
        rows = np.arange(n)
        # ---- weights: gradient of the geometric mix's code length
        L = self._L[:, a]  # [kd, n, 256]
        q = self._q[a]
        Q = self._Q[a]
        grad = np.empty((n, self._k), dtype=np.int64)
        e = np.einsum("bs,kbs->bk", q, L.astype(np.int64)) // Q[:, None]  # |q l| < 2**43, sum < 2**51
        grad[:, self._dense_idx] = L[:, rows, s].T - e
        if self._match_idx >= 0:
            pred = self._pred[a]
            ms = self._mscore[a]
            e = (q[rows, pred] * ms) // Q
            grad[:, self._match_idx] = np.where(pred == s, ms, 0) - e
        t = self.t[a]
        lr = cfg.lr * (1 + ((cfg.lr_boost - 1) * cfg.lr_boost_steps) // (cfg.lr_boost_steps + t))
        dw = (grad * lr[:, None] + (1 << 9)) >> 10
        sel = self._sel[a]
        self.w[a, sel] = np.clip(self.w[a, sel] + dw, W_MIN, W_MAX)
        # ---- switch log-weights
        cost_g = _LOG_TOTAL - _LG[self._G[a, s]]
        v = self.vsw[a]
        v[:, 0] -= cost_g
        v[:, 1] -= _LOG_TOTAL // 2
        v -= v.max(axis=1, keepdims=True)
        np.maximum(v, -cfg.switch_clamp_bits * LOG_ONE, out=v)
        self.vsw[a] = v
        # ---- counts
        if self.c0 is not None:
            full = np.flatnonzero(self.c0[a, s] >= cfg.o0_limit)
            if full.size:
                self.c0[a[full]] >>= 1
            self.c0[a, s] += 1
        if self.c1 is not None:
            p1 = self._prev1[a]
            full = np.flatnonzero(self.c1[a, p1, s] >= cfg.o1_limit)
            if full.size:
                self.c1[a[full], p1[full]] >>= 1
            self.c1[a, p1, s] += 1
        for name, rows_all in self._rows.items():
            c = getattr(self, "c" + name[1])
            rows = rows_all[a]
            full = np.flatnonzero(c[a, rows, s] >= cfg.o2_limit)
            if full.size:
                c[a[full], rows[full]] >>= 1
            c[a, rows, s] += 1
        # ---- history
        h8 = (self.hist8[a] << np.uint64(8)) | s.astype(np.uint64)
        self.hist8[a] = h8
        if self.hist.shape[1]:
            self.hist[a, t & ((1 << cfg.history_bits) - 1)] = s
        if self._has["rec"]:
            self._update_rec(a, s, t)
        if self._match_idx >= 0:
            self._update_match(a, s, h8, t)
        self.t[a] = t + 1

    def _update_match(self, a: np.ndarray, s: np.ndarray, h8: np.ndarray, t: np.ndarray) -> None:
        cfg = self.config
        has = self._has_match[a]
        hit = has & (self._pred[a] == s)
        b = self._bucket[a]
        hl = a[has]
        if hl.size:
            bl = b[has]
            self.mhit[hl, bl] += hit[has]
            self.mtot[hl, bl] += 1
            full = self.mtot[hl, bl] >= MATCH_COUNT_LIMIT
            if full.any():
                fl, fb = hl[full], bl[full]
                self.mhit[fl, fb] >>= 1
                self.mtot[fl, fb] >>= 1
        mlen = np.where(hit, self.mlen[a] + 1, 0)
        mptr = np.where(hit, self.mptr[a] + 1, 0)
        pos = t + 1  # index of the next byte (s is stored at t)
        k = cfg.match_min
        bits = self.gbits[self.groups[a], 3]
        key = self._hash(h8, k, bits)
        ready = pos >= k
        if cfg.match_long:
            kl = cfg.match_long
            key2 = self._hash(h8, kl, bits)
            ready2 = pos >= kl
            look = np.flatnonzero((mlen < kl) & ready2)
            if look.size:
                length, cand = self._verify(a[look], self.mtab2, key2[look], pos[look])
                good = (length >= kl) & (length > mlen[look])
                mlen[look] = np.where(good, length, mlen[look])
                mptr[look] = np.where(good, cand, mptr[look])
            wr = np.flatnonzero(ready2)
            self.mtab2[a[wr], key2[wr]] = pos[wr]
        look = np.flatnonzero((mlen == 0) & ready)
        if look.size:
            length, cand = self._verify(a[look], self.mtab, key[look], pos[look])
            good = length >= k
            mlen[look] = np.where(good, length, 0)
            mptr[look] = np.where(good, cand, 0)
        self.mlen[a] = mlen
        self.mptr[a] = mptr
        wr = np.flatnonzero(ready)
        self.mtab[a[wr], key[wr]] = pos[wr]

    def _update_rec(self, a: np.ndarray, s: np.ndarray, t: np.ndarray) -> None:
        """Record counts and record-length detection (majority vote over equal repeat distances:
        byte ``s`` seen at ``t``, ``t - d`` and ``t - 2d`` votes for ``d >= 2``)."""
        cfg = self.config
        has = self._has_rec[a]
        if has.any():
            ra, ab, rs = a[has], self._above[a][has], s[has]
            full = np.flatnonzero(self.crec[ra, ab, rs] >= cfg.o1_limit)
            if full.size:
                self.crec[ra[full], ab[full]] >>= 1
            self.crec[ra, ab, rs] += 1
        last = self.rlast[a, s]  # [n, 2]: positions + 1 (0 = never)
        d1 = t + 1 - last[:, 0]
        d2 = last[:, 0] - last[:, 1]
        vote = (last[:, 1] > 0) & (d1 == d2) & (d1 >= 2) & (d1 < (1 << cfg.history_bits))
        self.rlast[a, s, 1] = last[:, 0]
        self.rlast[a, s, 0] = t + 1
        if vote.any():
            va, vd = a[vote], d1[vote]
            same = self.rcand[va] == vd
            v = np.where(same, self.rvote[va] + 1, self.rvote[va] - 1)
            self.rcand[va] = np.where(v < 0, vd, self.rcand[va])
            v = np.where(v < 0, 1, np.minimum(v, 4 * cfg.rec_votes))
            self.rvote[va] = v
            ok = v >= cfg.rec_votes
            self.rlen[va[ok]] = self.rcand[va[ok]]

    def set_record_length(self, lengths: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Fix the record length (bytes between vertically adjacent bytes of a plane, e.g. a row
        of an image or of a table) of the lanes in ``mask``; 0 returns them to detection."""
        idx = self._ar if mask is None else np.flatnonzero(np.asarray(mask, dtype=bool))
        lengths = np.broadcast_to(np.asarray(lengths, dtype=np.int64), (self.lanes,))[idx]
        if np.any((lengths < 0) | (lengths >= (1 << self.config.history_bits))):
            raise ValueError("record length out of range")
        self.rfixed[idx] = lengths

    @staticmethod
    def _hash(h8: np.ndarray, k: int, bits: np.ndarray) -> np.ndarray:
        """Row of the last ``k`` bytes of each lane's history ``h8`` in a table of ``2**bits``
        rows (per lane; 0 where ``bits`` is 0): the top ``bits`` bits of the wrapping uint64
        product with ``_HASH_MUL``."""
        ctx = h8 & np.uint64((1 << (8 * k)) - 1) if k < 8 else h8
        shift = np.minimum(64 - bits, 63).astype(np.uint64)
        return np.where(bits > 0, (ctx * _HASH_MUL) >> shift, 0).astype(np.intp)

    def _verify(self, la: np.ndarray, table: np.ndarray, key: np.ndarray, pos: np.ndarray):
        """Candidate position from ``table`` and the verified match length (0..MATCH_VERIFY):
        the number of bytes before the candidate that equal the bytes before ``pos``."""
        cfg = self.config
        hmask = (1 << cfg.history_bits) - 1
        cand = table[la, key].astype(np.int64)
        ok = (cand > 0) & (pos - cand < (1 << cfg.history_bits) - MATCH_VERIFY - 1)
        j = np.arange(1, MATCH_VERIFY + 1)
        ci = cand[:, None] - j[None, :]
        pi = pos[:, None] - j[None, :]
        flat = self.hist.reshape(-1)
        base = (la << cfg.history_bits)[:, None]
        eq = (flat[base + (ci & hmask)] == flat[base + (pi & hmask)]) & (ci >= 0)
        length = np.cumprod(eq, axis=1).sum(axis=1)
        return np.where(ok, length, 0), cand

    # ---------------------------------------------------------------- decoder
    def decode(self, lm_freqs: np.ndarray, coder: "RansLaneDecoder", active: np.ndarray,
               known: np.ndarray | None = None) -> np.ndarray:
        """The decoder's step: :meth:`step`, ``coder.decode_step`` and :meth:`update` for the
        lanes in ``active`` (bool ``[B]``); returns the decoded bytes (uint8 ``[B]``, 0 for
        inactive lanes). ``coder`` is the :class:`~lmcodec.rans.RansLaneDecoder` of these lanes.
        ``known`` (uint8 ``[B]`` or None): lanes whose byte is already known (``known[j] = byte
        + 1``, 0 = decode it), e.g. streams stored raw that share a group with coded ones; the
        mixer is fed their byte and the coder does not move.
        Raises :class:`~lmcodec.errors.CorruptChunkError` when a lane runs out of words."""
        if self._pending:
            raise RuntimeError("decode() between step() and update()")
        active = np.asarray(active, dtype=bool)
        if coder.lanes != self.lanes or active.shape != (self.lanes,):
            raise ValueError("coder and active must have one entry per lane")
        if known is None:
            given = self._none_given
            sym = np.zeros(self.lanes, dtype=np.uint8)
        else:
            known = np.asarray(known)
            if known.shape != (self.lanes,):
                raise ValueError("known must have one entry per lane")
            given = known > 0
            sym = np.where(given & active, known - 1, 0).astype(np.uint8)
        if self.backend == "numpy":
            table = self.step(lm_freqs)
            sym = np.where(given, sym, coder.decode_step(table, active & ~given))
            self.update(sym, active)
            return sym
        lm = self._lm_input(lm_freqs, (self.lanes, N_SYMBOLS))
        states, words, pos, end = coder.lane_arrays()
        if _kernels.decode_lanes(np.flatnonzero(active), lm, states, words, pos, end, given, sym, self._k_arrays):
            raise CorruptChunkError("rANS lane ran out of words")
        return sym

    # ---------------------------------------------------------------- encoder
    def code(self, lm_freqs: np.ndarray | None, symbols: np.ndarray, lanes: np.ndarray,
             counts: np.ndarray, parallel=None) -> tuple[np.ndarray, np.ndarray]:
        """The encoder's fused loop: lane ``lanes[i]`` codes ``symbols[i, :counts[i]]`` with LM
        tables ``lm_freqs[i, p]`` (integer ``[m, n, 256]``, or None); returns each coded byte's
        interval ``(cum, freq)`` in its table, int32 ``[m, n]`` (0 past ``counts[i]``).

        The same as :meth:`step`/:meth:`update` per position (lanes not listed do not move), so
        the decoder's tables match. ``lanes`` must be distinct. ``parallel`` (a ``map``-like
        ``parallel(fn, items) -> list``, e.g. :meth:`OnnxFrequencyModel.parallel`) spreads the
        groups over threads in the compiled backend; it never changes the output.
        """
        if self._pending:
            raise RuntimeError("code() between step() and update()")
        symbols = np.ascontiguousarray(symbols, dtype=np.uint8)
        m, n = symbols.shape
        lanes = np.asarray(lanes, dtype=np.int64)
        counts = np.asarray(counts, dtype=np.int64)
        if lanes.shape != (m,) or counts.shape != (m,) or np.any((counts < 0) | (counts > n)):
            raise ValueError("lanes and counts need one entry per row, 0 <= counts <= n")
        if np.any((lanes < 0) | (lanes >= self.lanes)) or len(np.unique(lanes)) != m:
            raise ValueError("lanes must be distinct lane indices")
        if lm_freqs is not None:
            lm_freqs = self._lm_input(lm_freqs, (m, n, N_SYMBOLS))
        cum = np.zeros((m, n), dtype=np.int32)
        freq = np.zeros((m, n), dtype=np.int32)
        if self.backend == "numba":
            use = lm_freqs is not None
            lm = lm_freqs if use else np.zeros((m, n, 0), dtype=np.int32)
            rows = np.argsort(lanes, kind="stable")  # by group, lanes in order within each
            first = np.flatnonzero(np.diff(self.groups[lanes[rows]], prepend=-1))  # a group's first row
            n_parts = max(1, min(len(first), 2 * (os.cpu_count() or 1)))
            ends = np.append(first[1:], m)
            parts = [rows[first[g[0]] : ends[g[-1]]] for g in np.array_split(np.arange(len(first)), n_parts) if len(g)]

            def run(rows: np.ndarray) -> None:
                _kernels.code_lanes(rows, lanes[rows], lm, use, symbols, counts, cum, freq, self._k_arrays)

            if parallel is None or len(parts) < 2:
                for rows in parts:
                    run(rows)
            else:
                parallel(run, parts)
            return cum, freq
        rows_lm = np.ones((self.lanes, N_SYMBOLS), dtype=np.int32)
        sym = np.zeros(self.lanes, dtype=np.intp)
        idx = np.arange(m)
        for p in range(n):
            if lm_freqs is not None:
                rows_lm[lanes] = lm_freqs[:, p]
            table = self.step(None if lm_freqs is None else rows_lm)
            s = symbols[:, p].astype(np.intp)
            sym[lanes] = s
            live = counts > p
            f = table[lanes, s]
            c = np.cumsum(table[lanes], axis=1, dtype=np.int32)[idx, s] - f
            freq[live, p] = f[live]
            cum[live, p] = c[live]
            active = np.zeros(self.lanes, dtype=bool)
            active[lanes[live]] = True
            self.update(sym, active)
        return cum, freq

    def mix_sequence(self, lm_freqs: np.ndarray | None, symbols: np.ndarray,
                     lengths: np.ndarray | None = None) -> np.ndarray:
        """Tables for ``n`` consecutive positions of every lane (the encoder's view).

        ``lm_freqs`` integer ``[B, n, 256]`` (or None), ``symbols`` ``[B, n]``, ``lengths``
        ``[B]`` (lane ``i`` codes its first ``lengths[i]`` symbols; default all ``n``).
        Returns int32 ``[B, n, 256]``; rows at or past a lane's length are whatever
        :meth:`step` gives there and are not coded. Defined as ``step``/``update`` per position,
        so the result equals the decoder's tables bit for bit; the state continues afterwards.
        """
        symbols = np.asarray(symbols)
        B, n = symbols.shape
        if B != self.lanes:
            raise ValueError(f"expected {self.lanes} lanes, got {B}")
        if lengths is None:
            lengths = np.full(B, n)
        lengths = np.asarray(lengths)
        out = np.empty((B, n, N_SYMBOLS), dtype=np.int32)
        for p in range(n):
            out[:, p] = self.step(None if lm_freqs is None else lm_freqs[:, p])
            act = lengths > p
            self.update(symbols[:, p], None if act.all() else act)
        return out


def mix_sequence(lm_freqs: np.ndarray | None, symbols: np.ndarray, lengths: np.ndarray | None = None,
                 config: MixerConfig = DEFAULT_CONFIG, backend: str | None = None) -> np.ndarray:
    """:meth:`AdaptiveMixer.mix_sequence` on a fresh mixer."""
    mixer = AdaptiveMixer(np.asarray(symbols).shape[0], config, backend)
    return mixer.mix_sequence(lm_freqs, symbols, lengths)
