"""Benchmark datasets: which corpus bytes ``lmcodec bench`` codes and how they are chunked.

All data is the corpus *validation* split (:func:`lmcodec.corpus.load_samples`), which the
shipped models never trained on.

Selection (:func:`select_samples`): per kind, samples are picked round-robin over the source
packages, largest sample of each package first, up to ``max_samples`` samples; the kind's byte
budget is shared between them (a sample smaller than its share passes the rest on) and each is
cut to a leading prefix of whole rows, images to a top-left crop as square as they allow.

Chunking (:func:`chunk_array`): a dataset is the list of chunks of its samples, each chunk coded
on its own as a Zarr chunk would be (chunks never span two samples).

* ``image``: 2-D tiles over (rows, columns), all channels kept, about ``chunk_bytes`` each;
  the tile width is the power of two nearest ``sqrt(2 * pixels)``, so 2048 bytes of a grayscale
  image is a 32x64 tile (the paper's patch). Edge tiles are smaller.
* ``audio``: runs of whole frames (all channels of a time step).
* every other kind: a sample of two or more dimensions whose row (everything after the first
  axis) fits in ``chunk_bytes`` is cut into runs of whole rows, keeping its shape (a Zarr chunk
  of a table or a grid); anything else into runs of whole elements of the C-order flattened
  sample (1-D chunks).

LMCodec gets each chunk's row as the mixer's record length (:func:`lmcodec.bench_codecs.record_length`).

The paper's datasets (:func:`paper_datasets`, Deletang et al. 2023) add what the main datasets
lack: 32x64 grayscale patches (RGB mean truncated to uint8, whole patches only) and 8-bit audio
(the high byte of each int16 sample plus 128, as ``audioop.bias(audioop.lin2lin(x, 2, 1), 1,
128)``), both in 2048-byte chunks.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Dataset",
    "select_samples",
    "share_budget",
    "prefix_rows",
    "crop_image",
    "chunk_array",
    "kind_datasets",
    "paper_datasets",
    "grayscale",
    "audio_to_8bit",
    "PAPER_CHUNK_BYTES",
    "PAPER_PATCH_SHAPE",
    "size_label",
]

PAPER_CHUNK_BYTES = 2048
PAPER_PATCH_SHAPE = (32, 64)


@dataclass(frozen=True, eq=False)
class Dataset:
    """Chunks of one or more samples of one kind, coded chunk by chunk.

    ``group`` names the chunking (e.g. ``"2 KiB"``); ``sources`` has one dict per sample:
    name, dtype, shape, bytes and the corpus provenance.
    """

    name: str
    kind: str
    group: str
    chunks: tuple[np.ndarray, ...]
    sources: tuple[dict, ...] = field(default=())
    note: str = ""

    @property
    def raw_bytes(self) -> int:
        return sum(c.nbytes for c in self.chunks)

    @property
    def dtype(self) -> np.dtype:
        return self.chunks[0].dtype

    @property
    def chunk_shape(self) -> tuple[int, ...]:
        """Shape of the first (largest) chunk."""
        return tuple(self.chunks[0].shape)

    def describe(self) -> dict:
        """JSON-ready summary (without the data)."""
        return {
            "name": self.name, "kind": self.kind, "group": self.group, "dtype": self.dtype.str,
            "raw_bytes": self.raw_bytes, "n_chunks": len(self.chunks),
            "chunk_shape": list(self.chunk_shape), "sources": list(self.sources), "note": self.note,
            "sha1": self.digest(),
        }

    def digest(self) -> str:
        """sha1 of the chunks' dtype, shapes and bytes (identifies the exact data coded)."""
        h = hashlib.sha1()
        for c in self.chunks:
            h.update(f"{c.dtype.str}{c.shape}".encode())
            h.update(np.ascontiguousarray(c).data)
        return h.hexdigest()


def size_label(n: int) -> str:
    """``2048 -> "2 KiB"``, ``1048576 -> "1 MiB"``, ``1000 -> "1000 B"``."""
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


def prefix_rows(a: np.ndarray, max_bytes: int) -> np.ndarray:
    """Leading C-order prefix of ``a`` of at most ``max_bytes`` bytes, in whole rows where one
    row fits (else the first row's own prefix, keeping a leading axis of 1); at least one
    element."""
    if a.nbytes <= max_bytes or a.ndim == 0:
        return a
    row = a.nbytes // a.shape[0]
    if row <= max_bytes or a.ndim == 1:
        return a[: max(1, max_bytes // row)]
    return prefix_rows(a[0], max_bytes)[None]


def _source(sample, array: np.ndarray) -> dict:
    return {"name": sample.name, "dtype": array.dtype.str, "shape": list(array.shape),
            "bytes": int(array.nbytes), "package": sample.source.get("package"),
            "manager": sample.source.get("manager"), "version": sample.source.get("version"),
            "file": sample.source.get("file"),
            "rows": sample.source.get("selection", {}).get("rows")}


def crop_image(a: np.ndarray, max_bytes: int) -> np.ndarray:
    """Top-left crop of an image (rows, columns[, channels]) of at most ``max_bytes`` bytes,
    as square as the image allows (at least one pixel)."""
    pixel = a.itemsize * math.prod(a.shape[2:])
    if a.nbytes <= max_bytes:
        return a
    n = max(1, max_bytes // pixel)
    width = min(a.shape[1], max(1, math.isqrt(n)))
    height = min(a.shape[0], max(1, n // width))
    if height == a.shape[0]:  # too few rows for a square: widen
        width = min(a.shape[1], max(1, n // height))
    return a[:height, :width]


def _cut(kind: str, a: np.ndarray, max_bytes: int) -> np.ndarray:
    return crop_image(a, max_bytes) if kind == "image" and a.ndim >= 2 else prefix_rows(a, max_bytes)


def share_budget(kind: str, arrays: Sequence[np.ndarray], budget: int) -> list[np.ndarray]:
    """Cut ``arrays`` to share ``budget`` bytes: equal shares, smallest array first, so one
    smaller than its share passes the rest on (image crops, else row prefixes)."""
    cuts: dict[int, np.ndarray] = {}
    for i, a in sorted(enumerate(arrays), key=lambda t: t[1].nbytes):
        cuts[i] = _cut(kind, a, budget // (len(arrays) - len(cuts)))
        budget -= cuts[i].nbytes
    return [cuts[i] for i in range(len(arrays))]


def select_samples(samples: Iterable, bytes_per_kind: int, max_samples: int = 2) -> dict[str, list[tuple]]:
    """``kind -> [(sample, cut array), ...]``: per kind, up to ``max_samples`` samples and
    ``bytes_per_kind`` bytes in all (see the module docstring)."""
    if bytes_per_kind < 1 or max_samples < 1:
        raise ValueError("bytes_per_kind and max_samples must be positive")
    by_kind: dict[str, dict[str, list]] = {}
    for s in samples:
        by_kind.setdefault(s.kind, {}).setdefault(s.source.get("package") or "", []).append(s)
    out: dict[str, list[tuple]] = {}
    for kind, packages in by_kind.items():
        queues = [sorted(group, key=lambda s: -s.array.nbytes) for group in packages.values()]
        picked = []
        while len(picked) < max_samples and any(queues):
            for q in queues:
                if q and len(picked) < max_samples:
                    picked.append(q.pop(0))
        cuts = share_budget(kind, [s.array for s in picked], bytes_per_kind)
        out[kind] = list(zip(picked, cuts))
    return out


def _tile_shape(shape: tuple[int, ...], itemsize: int, chunk_bytes: int) -> tuple[int, int]:
    pixel = itemsize * math.prod(shape[2:])
    n = max(1, chunk_bytes // pixel)
    width = min(shape[1], 1 << max(0, round(math.log2(math.sqrt(2 * n)))))
    return max(1, min(shape[0], n // width)), width


def chunk_array(a: np.ndarray, kind: str, chunk_bytes: int) -> list[np.ndarray]:
    """Chunks of one sample (C-contiguous copies; see the module docstring)."""
    if chunk_bytes < 1:
        raise ValueError("chunk_bytes must be positive")
    if kind == "image" and a.ndim >= 2:
        th, tw = _tile_shape(a.shape, a.itemsize, chunk_bytes)
        return [np.ascontiguousarray(a[r : r + th, c : c + tw])
                for r in range(0, a.shape[0], th) for c in range(0, a.shape[1], tw)]
    if kind == "audio" and a.ndim == 2:
        frames = max(1, chunk_bytes // (a.shape[1] * a.itemsize))
        return [np.ascontiguousarray(a[i : i + frames]) for i in range(0, a.shape[0], frames)]
    if kind != "image" and a.ndim >= 2 and a.shape[0] > 1:
        row = a.nbytes // a.shape[0]
        if 0 < row <= chunk_bytes:
            rows = chunk_bytes // row
            return [np.ascontiguousarray(a[i : i + rows]) for i in range(0, a.shape[0], rows)]
    flat = np.ascontiguousarray(a).reshape(-1)
    n = max(1, chunk_bytes // a.itemsize)
    return [flat[i : i + n].copy() for i in range(0, flat.shape[0], n)]


def kind_datasets(selected: dict[str, list[tuple]], chunk_bytes: int, kinds: Sequence[str]) -> list[Dataset]:
    """One dataset per kind (in ``kinds`` order) for one chunk size."""
    out = []
    for kind in kinds:
        picked = selected.get(kind)
        if not picked:
            continue
        chunks = [c for _, a in picked for c in chunk_array(a, kind, chunk_bytes)]
        out.append(Dataset(kind, kind, size_label(chunk_bytes), tuple(chunks),
                           tuple(_source(s, a) for s, a in picked)))
    return out


def grayscale(image: np.ndarray) -> np.ndarray:
    """The paper's grayscale: mean over the RGB channels, truncated to uint8 (2-D unchanged)."""
    if image.ndim == 2:
        return image
    return np.mean(image[..., :3], axis=-1).astype(np.uint8)


def audio_to_8bit(samples: np.ndarray) -> np.ndarray:
    """The paper's 8-bit audio: high byte of each int16 sample, plus 128 (mod 256), as uint8."""
    return ((samples.astype(np.int16) >> 8) + 128).astype(np.uint8)


def _patches(image: np.ndarray) -> list[np.ndarray]:
    h, w = PAPER_PATCH_SHAPE
    g = grayscale(image)
    return [np.ascontiguousarray(g[r : r + h, c : c + w])
            for r in range(0, g.shape[0] - h + 1, h) for c in range(0, g.shape[1] - w + 1, w)]


def paper_datasets(images: Sequence, audio: Sequence, bytes_per_dataset: int) -> list[Dataset]:
    """The paper's image patches and 8-bit audio, ``bytes_per_dataset`` each in 2048-byte chunks.

    ``images``: corpus image samples (whole validation parts); patches are taken round-robin
    over the images (raster order within each). ``audio``: corpus audio samples (whole
    validation parts), converted to 8 bits and then cut to share the budget.
    """
    out = []
    per_image = [_patches(s.array) for s in images]
    budget = bytes_per_dataset // (PAPER_PATCH_SHAPE[0] * PAPER_PATCH_SHAPE[1])
    chosen: list[np.ndarray] = []
    used: list[int] = [0] * len(images)
    depth = 0
    while len(chosen) < budget and any(depth < len(p) for p in per_image):
        for i, p in enumerate(per_image):
            if depth < len(p) and len(chosen) < budget:
                chosen.append(p[depth])
                used[i] += 1
        depth += 1
    if chosen:
        sources = tuple({**_source(s, s.array), "patches": used[i]} for i, s in enumerate(images) if used[i])
        out.append(Dataset("image-gray-32x64", "image", "paper", tuple(chosen), sources,
                           "grayscale 32x64 patches (RGB mean, truncated to uint8)"))
    if audio:
        mapped = share_budget("audio", [audio_to_8bit(s.array).reshape(-1) for s in audio], bytes_per_dataset)
        chunks = [c for a in mapped for c in chunk_array(a, "audio", PAPER_CHUNK_BYTES)
                  if c.nbytes == PAPER_CHUNK_BYTES]
        if chunks:
            out.append(Dataset("audio-8bit", "audio", "paper", tuple(chunks),
                               tuple(_source(s, a) for s, a in zip(audio, mapped)),
                               "high byte of each int16 sample + 128, whole 2048-byte chunks"))
    return out
