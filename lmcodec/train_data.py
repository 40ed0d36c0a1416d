"""Training data in the codec's own byte layout: corpus samples cut into byte planes.

``prepare`` turns :mod:`lmcodec.corpus` samples into one ``.npz`` file per split holding every
byte plane (exactly as :func:`lmcodec.preprocess.split_planes` feeds the codec) and, per plane,
its start-token kind and corpus kind. :class:`WindowSampler` draws training windows from it;
:func:`validation_windows` cuts planes into segments the way the codec does.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from lmcodec.frequency_model import start_token
from lmcodec.preprocess import split_planes

IGNORE = -100
"""Target value of padding positions (ignored by the loss)."""


@dataclasses.dataclass
class PlaneSet:
    """Byte planes of one split, concatenated."""

    data: np.ndarray  # uint8 [total bytes]
    offsets: np.ndarray  # int64 [planes]
    lengths: np.ndarray  # int64 [planes]
    kinds: np.ndarray  # int64 [planes], start-token kind
    groups: np.ndarray  # int64 [planes], index into group_names (corpus kind)
    group_names: list[str]
    sample_names: list[str]  # per plane

    def save(self, path: Path) -> None:
        meta = json.dumps({"group_names": self.group_names, "sample_names": self.sample_names})
        np.savez_compressed(path, data=self.data, offsets=self.offsets, lengths=self.lengths, kinds=self.kinds,
                 groups=self.groups, meta=np.frombuffer(meta.encode(), dtype=np.uint8))

    @classmethod
    def load(cls, path: Path) -> "PlaneSet":
        with np.load(path) as f:
            meta = json.loads(f["meta"].tobytes().decode())
            return cls(f["data"], f["offsets"], f["lengths"], f["kinds"], f["groups"],
                       meta["group_names"], meta["sample_names"])

    def plane(self, i: int) -> np.ndarray:
        return self.data[self.offsets[i]:self.offsets[i] + self.lengths[i]]


def build_plane_set(samples) -> PlaneSet:
    """Cut corpus samples (objects with ``name``, ``kind`` and ``array``) into byte planes."""
    group_names = sorted({s.kind for s in samples})
    chunks, lengths, kinds, groups, names = [], [], [], [], []
    for s in samples:
        raw = np.ascontiguousarray(s.array).reshape(-1).view(np.uint8)
        for plane, kind in split_planes(raw, s.array.dtype):
            chunks.append(plane)
            lengths.append(len(plane))
            kinds.append(kind)
            groups.append(group_names.index(s.kind))
            names.append(s.name)
    lengths_arr = np.array(lengths, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths_arr)[:-1]]).astype(np.int64)
    data = np.concatenate(chunks) if chunks else np.zeros(0, np.uint8)
    return PlaneSet(data, offsets, lengths_arr, np.array(kinds, np.int64), np.array(groups, np.int64), group_names, names)


def cap_per_kind(samples: list, max_bytes_per_kind: int) -> list:
    """Keep at most ``max_bytes_per_kind`` bytes of each corpus kind, spread evenly over that
    kind's samples: each sample keeps a prefix of whole elements (its flattened array)."""
    by_kind: dict[str, list] = {}
    for s in samples:
        by_kind.setdefault(s.kind, []).append(s)
    kept = []
    for kind_samples in by_kind.values():
        budget = max_bytes_per_kind // len(kind_samples)
        for s in kind_samples:
            flat = s.array.reshape(-1)
            kept.append(dataclasses.replace(s, array=flat[: max(1, budget // flat.itemsize)]))
    return kept


def prepare(out_dir: Path, max_bytes_per_kind: dict[str, int | None]) -> dict[str, Path]:
    """Write ``train.npz`` and ``val.npz`` under ``out_dir`` (compressed); returns their paths.

    ``max_bytes_per_kind``: per split, a cap on bytes per corpus kind (None: everything).
    """
    from lmcodec.corpus import load_samples

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in ("train", "val"):
        samples = load_samples(split)
        if max_bytes_per_kind.get(split):
            samples = cap_per_kind(samples, max_bytes_per_kind[split])
        paths[split] = out_dir / f"{split}.npz"
        build_plane_set(samples).save(paths[split])
    return paths


class WindowSampler:
    """Random training windows: a corpus kind uniformly, then a plane with probability
    proportional to its length, then a uniform start inside it.

    Each window is ``context_length`` tokens ``[start, b[s], ..., b[s+T-2]]`` with targets
    ``b[s..s+T-1]`` (padded with :data:`IGNORE` when the plane is shorter).
    """

    def __init__(self, planes: PlaneSet, context_length: int, seed: int) -> None:
        self.planes = planes
        self.t = context_length
        self.rng = np.random.default_rng(seed)
        self.by_group = []
        for g in range(len(planes.group_names)):
            idx = np.flatnonzero((planes.groups == g) & (planes.lengths > 0))
            if len(idx):
                self.by_group.append((idx, planes.lengths[idx] / planes.lengths[idx].sum()))

    def batch(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        tokens = np.zeros((size, self.t), dtype=np.int64)
        targets = np.full((size, self.t), IGNORE, dtype=np.int64)
        for row in range(size):
            idx, p = self.by_group[self.rng.integers(len(self.by_group))]
            i = self.rng.choice(idx, p=p)
            length = int(self.planes.lengths[i])
            start = int(self.rng.integers(0, max(1, length - self.t + 1)))
            window = self.planes.plane(i)[start:start + self.t].astype(np.int64)
            tokens[row, 0] = start_token(int(self.planes.kinds[i]))
            tokens[row, 1:len(window)] = window[:-1]
            targets[row, :len(window)] = window
        return tokens, targets

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def validation_windows(planes: PlaneSet, context_length: int, max_bytes_per_group: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Segments cut as the codec cuts them (offsets 0, T, 2T, ... of each plane), grouped by
    corpus kind, at most ``max_bytes_per_group`` bytes each: ``{group: (tokens, targets)}``."""
    t = context_length
    out = {}
    for g, name in enumerate(planes.group_names):
        rows_tok, rows_tgt, budget = [], [], max_bytes_per_group
        for i in np.flatnonzero(planes.groups == g):
            plane = planes.plane(i).astype(np.int64)
            for s in range(0, len(plane), t):
                if budget <= 0:
                    break
                seg = plane[s:s + t]
                tok = np.zeros(t, np.int64)
                tgt = np.full(t, IGNORE, np.int64)
                tok[0] = start_token(int(planes.kinds[i]))
                tok[1:len(seg)] = seg[:-1]
                tgt[:len(seg)] = seg
                rows_tok.append(tok)
                rows_tgt.append(tgt)
                budget -= len(seg)
        if rows_tok:
            out[name] = (np.stack(rows_tok), np.stack(rows_tgt))
    return out
