"""Per-dataset fine-tuning (``lmcodec train finetune --from PATH``) and its adjusted-rate report.

A user's array (``.npy``, a Zarr array or group, an HDF5 file) is split along its first axis:
the last rows (``holdout_bytes``) are held out, and ``sample_bytes`` of training rows are read
in evenly spaced blocks of the rest. Training starts from an installed model
(:func:`lmcodec.train.fit` with ``--init-from``), the result is written as a model directory
(``OUT/manifest.json``, ``OUT/NAME/``) to keep next to the data, and the held-out rows are
encoded (and decoded, verified) with the base model and the fine-tuned one through
:class:`~lmcodec.codec.LMCodec`.

The *adjusted rate* is the paper's (Delétang et al. 2023, §3): compressed size plus model size,
per input byte. For a dataset of ``D`` bytes coded at ``b`` bits/byte with a model of ``M``
bytes it is ``b + 8 M / D`` bits/byte, so a model pays off once ``D`` exceeds
``8 M / (b_base - b_tuned)``. ``M`` counts the model's ``weights.npz`` (its integer weights,
from which :func:`lmcodec.models.rebuild_graphs` re-derives the ONNX graphs); the shipped base
model costs nothing extra. The code rates are measured on the held-out rows, not on all of ``D``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import lzma
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from lmcodec.train_data import PlaneSet, build_plane_set

BLOCK_BYTES = 1 << 16
"""Training rows are read in blocks of about this many bytes (whole rows)."""
VAL_BLOCK_BYTES = 1 << 13
"""Bytes per block of the held-out rows in ``val.npz`` (see :func:`validation_blocks`)."""
HOLDOUT_CHUNK_BYTES = 1 << 18
"""Held-out rows are encoded as chunks of about this many bytes (whole rows)."""


@dataclasses.dataclass
class _Block:
    """A block of rows in the form :func:`lmcodec.train_data.build_plane_set` takes."""

    name: str
    kind: str
    array: np.ndarray


def open_array(path: str | Path, dataset: str | None = None) -> Any:
    """An array-like (numpy memmap, ``zarr.Array`` or ``h5py.Dataset``) for ``path``.

    ``.npy`` files are memory-mapped; a Zarr store (a directory) or an HDF5 file may hold
    several arrays: ``dataset`` names one, else the largest is taken.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist")
    if p.suffix == ".npy":
        return np.load(p, mmap_mode="r")
    if p.is_dir():
        import zarr

        node = zarr.open(str(p), mode="r")
        if isinstance(node, zarr.Array):
            return node
        arrays = {name: a for name, a in node.arrays()}
        return _pick(arrays, dataset, p)
    import h5py

    if h5py.is_hdf5(p):
        f = h5py.File(p, "r")
        arrays: dict[str, Any] = {}
        f.visititems(lambda name, obj: arrays.setdefault(name, obj) if isinstance(obj, h5py.Dataset) else None)
        return _pick(arrays, dataset, p)
    raise ValueError(f"{p}: not an .npy file, a Zarr store or an HDF5 file")


def _pick(arrays: dict[str, Any], dataset: str | None, path: Path) -> Any:
    numeric = {k: a for k, a in arrays.items() if a.dtype.kind in "biuf" and a.size}
    if dataset is not None:
        if dataset not in arrays:
            raise KeyError(f"{path} has no array {dataset!r}; it has {sorted(arrays)}")
        return arrays[dataset]
    if not numeric:
        raise ValueError(f"{path} holds no non-empty numeric array")
    return max(numeric.values(), key=lambda a: a.size * a.dtype.itemsize)


def split_rows(array: Any, sample_bytes: int, holdout_bytes: int) -> tuple[list[np.ndarray], np.ndarray]:
    """``(training blocks, held-out rows)`` of ``array`` along its first axis (C order).

    The held-out rows are the last ones, at least ``holdout_bytes`` (at most half the array);
    the training blocks are evenly spaced over the rest, about ``sample_bytes`` in all.
    """
    if array.ndim == 0 or array.shape[0] < 2:
        raise ValueError(f"array of shape {array.shape}: need at least two rows along the first axis")
    rows = array.shape[0]
    row_bytes = max(1, int(np.prod(array.shape[1:], dtype=np.int64)) * array.dtype.itemsize)
    held = min(rows // 2, max(1, -(-holdout_bytes // row_bytes)))
    usable = rows - held
    block = min(usable, max(1, BLOCK_BYTES // row_bytes))
    n_blocks = max(1, min(usable // block, -(-sample_bytes // (block * row_bytes))))
    starts = np.linspace(0, usable - block, n_blocks).astype(np.int64)
    blocks = [np.ascontiguousarray(array[int(s):int(s) + block]) for s in starts]
    return blocks, np.ascontiguousarray(array[rows - held:])


def validation_blocks(holdout: np.ndarray, count: int = 8) -> list[np.ndarray]:
    """``count`` evenly spaced blocks of about :data:`VAL_BLOCK_BYTES` of the held-out rows, for
    the evaluations logged during training: each block holds all its byte planes, so a
    validation budget smaller than the holdout still covers every plane."""
    rows = holdout.shape[0]
    per = min(rows, max(1, VAL_BLOCK_BYTES // max(1, holdout.nbytes // rows)))
    return [holdout[int(s):int(s) + per] for s in np.unique(np.linspace(0, rows - per, count).astype(np.int64))]


def prepare_from(path: str | Path, data_dir: Path, dataset: str | None, sample_bytes: int,
                 holdout_bytes: int) -> dict:
    """Write ``train.npz``, ``val.npz`` (byte planes, as for :func:`lmcodec.train.fit`) and
    ``holdout.npy`` under ``data_dir``; returns (and writes as ``source.json``) a description."""
    array = open_array(path, dataset)
    blocks, holdout = split_rows(array, sample_bytes, holdout_bytes)
    data_dir.mkdir(parents=True, exist_ok=True)
    build_plane_set([_Block(f"train-{i}", "dataset", b) for i, b in enumerate(blocks)]).save(data_dir / "train.npz")
    build_plane_set([_Block(f"holdout-{i}", "dataset", b) for i, b in enumerate(validation_blocks(holdout))]).save(
        data_dir / "val.npz")
    np.save(data_dir / "holdout.npy", holdout)
    info = {"path": str(path), "dataset": dataset, "dtype": array.dtype.str, "shape": list(array.shape),
            "dataset_bytes": int(np.prod(array.shape, dtype=np.int64)) * array.dtype.itemsize,
            "train_bytes": int(sum(b.nbytes for b in blocks)), "train_blocks": len(blocks),
            "holdout_bytes": int(holdout.nbytes), "holdout_rows": int(holdout.shape[0])}
    (data_dir / "source.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


@contextlib.contextmanager
def model_path(directory: Path) -> Iterator[None]:
    """Temporarily put ``directory`` first on ``LMCODEC_MODEL_PATH``."""
    old = os.environ.get("LMCODEC_MODEL_PATH")
    os.environ["LMCODEC_MODEL_PATH"] = os.pathsep.join([str(directory)] + ([old] if old else []))
    try:
        yield
    finally:
        if old is None:
            del os.environ["LMCODEC_MODEL_PATH"]
        else:
            os.environ["LMCODEC_MODEL_PATH"] = old


def holdout_chunks(holdout: np.ndarray) -> list[np.ndarray]:
    """The held-out rows cut into chunks of about :data:`HOLDOUT_CHUNK_BYTES` (whole rows)."""
    row_bytes = max(1, holdout.nbytes // holdout.shape[0])
    step = max(1, HOLDOUT_CHUNK_BYTES // row_bytes)
    return [holdout[i:i + step] for i in range(0, holdout.shape[0], step)]


def measure_codec(model: str, chunks: list[np.ndarray], mix: bool = True) -> dict:
    """Encode ``chunks`` with ``LMCodec(model=model, mix=mix)``, decode and verify (the benchmark
    harness, :func:`lmcodec.bench.run_codec`); bits/byte, chunks per stored mode (a chunk falls
    back to zstd or raw where the model does not pay) and speed."""
    from lmcodec.bench import run_codec
    from lmcodec.bench_codecs import LMBenchCodec
    from lmcodec.bench_data import Dataset

    result = run_codec(LMBenchCodec.installed(model, mix=mix, default=False),
                       Dataset(f"held-out ({model})", "finetune", "finetune", tuple(chunks)))
    modes = result.modes or {}
    return {"model": model, "mix": mix, "bits_per_byte": 8 * result.rate,
            "modes": {m: modes[m] for m in sorted(modes) if modes[m]},
            "encode_s": round(result.encode.seconds, 2), "decode_s": round(result.decode.seconds, 2)}


def classical_rates(chunks: list[np.ndarray]) -> dict[str, float]:
    """bits/byte of zstd -19 and xz -9 (extreme) on the same chunks, each chunk on its own."""
    from numcodecs import Zstd

    raw = sum(c.nbytes for c in chunks)
    zstd = sum(len(Zstd(level=19).encode(c.tobytes())) for c in chunks)
    xz = sum(len(lzma.compress(c.tobytes(), preset=9 | lzma.PRESET_EXTREME)) for c in chunks)
    return {"zstd-19": 8 * zstd / raw, "xz-9e": 8 * xz / raw}


def adjusted_rate(bits_per_byte: float, model_bytes: int, dataset_bytes: np.ndarray) -> np.ndarray:
    """The paper's adjusted rate in bits/byte: ``b + 8 M / D``."""
    return bits_per_byte + 8.0 * model_bytes / np.asarray(dataset_bytes, dtype=np.float64)


def break_even_bytes(base_bpb: float, tuned_bpb: float, model_bytes: int) -> float | None:
    """Dataset size from which the fine-tuned model (``model_bytes`` stored) codes smaller than
    the shipped base model; ``None`` when it never does."""
    gain = base_bpb - tuned_bpb
    return 8.0 * model_bytes / gain if gain > 0 else None


def plot_adjusted_rate(report: dict, path: Path) -> None:
    """Adjusted rate against dataset size: base model, fine-tuned model, classical codecs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dataset = report["source"]["dataset_bytes"]
    d_max = min(max(dataset * 4, 2 * (report["break_even_bytes"] or 0), 2e8), 1e12)
    sizes = np.logspace(5, np.log10(d_max), 200)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    base, tuned = report["base"], report["tuned"]
    ax.plot(sizes, adjusted_rate(base["bits_per_byte"], 0, sizes), label=f"{base['model']} (shipped: model not counted)")
    ax.plot(sizes, adjusted_rate(base["bits_per_byte"], report["base_model_bytes"], sizes), ":", lw=2, zorder=3,
            label=f"{base['model']} with its {report['base_model_bytes'] / 1e3:.0f} kB counted")
    ax.plot(sizes, adjusted_rate(tuned["bits_per_byte"], report["tuned_model_bytes"], sizes),
            label=f"{tuned['model']} (fine-tuned, {report['tuned_model_bytes'] / 1e3:.0f} kB counted)")
    alone = report.get("model_alone")
    if alone:
        ax.plot(sizes, adjusted_rate(alone["base"]["bits_per_byte"], 0, sizes), color="C0", ls="--", lw=1,
                label=f"{base['model']}, mix=False (model alone or zstd per chunk)")
        ax.plot(sizes, adjusted_rate(alone["tuned"]["bits_per_byte"], report["tuned_model_bytes"], sizes),
                color="C2", ls="--", lw=1, label=f"{tuned['model']}, mix=False (model alone or zstd per chunk)")
    for name, bpb in report["classical"].items():
        ax.axhline(bpb, color="gray", lw=0.8, ls="--")
        ax.annotate(name, (sizes[0], bpb), fontsize=8, color="gray", va="bottom")
    ax.set_xscale("log")
    rates = [tuned["bits_per_byte"], base["bits_per_byte"], *report["classical"].values()]
    if alone:
        rates += [alone["base"]["bits_per_byte"], alone["tuned"]["bits_per_byte"]]
    ax.set_ylim(min(rates) * 0.9, max(rates) * 1.15)
    ax.axvline(dataset, color="k", lw=0.8)
    ax.annotate(f" this dataset\n {dataset / 1e6:.0f} MB", (dataset, ax.get_ylim()[0]), fontsize=8, va="bottom")
    if report["break_even_bytes"]:
        ax.axvline(report["break_even_bytes"], color="C2", lw=0.8, ls="-.")
        ax.annotate(f" break-even\n {report['break_even_bytes'] / 1e6:.0f} MB", (report["break_even_bytes"],
                    ax.get_ylim()[0]), fontsize=8, color="C2", va="bottom")
    ax.set_xlabel("dataset size D (bytes)")
    ax.set_ylabel("adjusted rate (bits/byte): code + model")
    ax.set_xlim(sizes[0], sizes[-1])
    ax.set_title(f"Fine-tuning on {Path(report['source']['path']).name}: rates measured on "
                 f"{report['source']['holdout_bytes'] / 1e6:.1f} MB held out", fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(data_dir: Path, out_dir: Path, name: str, base: str) -> dict:
    """Measure base and fine-tuned model on the held-out rows; write ``OUT/NAME.report.json``
    and ``OUT/NAME.adjusted-rate.png``; return the report."""
    from lmcodec.models import model_weights_bytes

    source = json.loads((data_dir / "source.json").read_text())
    chunks = holdout_chunks(np.load(data_dir / "holdout.npy"))
    with model_path(out_dir):
        sizes = {m: model_weights_bytes(m) for m in (base, name)}
        base_result, tuned_result = measure_codec(base, chunks), measure_codec(name, chunks)
        model_alone = {"base": measure_codec(base, chunks, mix=False), "tuned": measure_codec(name, chunks, mix=False)}
    report = {"source": source, "base": base_result, "tuned": tuned_result,
              "base_model_bytes": sizes[base], "tuned_model_bytes": sizes[name],
              "model_alone": model_alone, "classical": classical_rates(chunks),
              "break_even_bytes": break_even_bytes(base_result["bits_per_byte"], tuned_result["bits_per_byte"],
                                                   sizes[name])}
    D = source["dataset_bytes"]
    report["model_alone"]["break_even_bytes"] = break_even_bytes(
        model_alone["base"]["bits_per_byte"], model_alone["tuned"]["bits_per_byte"], sizes[name])
    report["adjusted_rate_at_dataset"] = {
        "base": base_result["bits_per_byte"],
        "tuned": float(adjusted_rate(tuned_result["bits_per_byte"], sizes[name], D))}
    (out_dir / f"{name}.report.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_adjusted_rate(report, out_dir / f"{name}.adjusted-rate.png")
    return report


def summary(report: dict) -> str:
    """A few lines for the terminal."""
    b, t, D = report["base"], report["tuned"], report["source"]["dataset_bytes"]
    lines = [f"held-out {report['source']['holdout_bytes']} bytes (decoded and verified):",
             f"  {b['model']:>20s}: {b['bits_per_byte']:.3f} bits/byte (shipped)",
             f"  {t['model']:>20s}: {t['bits_per_byte']:.3f} bits/byte + model {report['tuned_model_bytes']} bytes",
             "  " + ", ".join(f"{k} {v:.3f}" for k, v in report["classical"].items()),
             f"adjusted rate on the whole dataset ({D / 1e6:.1f} MB): base {report['adjusted_rate_at_dataset']['base']:.3f}, "
             f"fine-tuned {report['adjusted_rate_at_dataset']['tuned']:.3f} bits/byte"]
    if "model_alone" in report:
        a = report["model_alone"]
        lines.append(f"  mix=False (model alone; zstd/raw per chunk where smaller): "
                     f"{b['model']} {a['base']['bits_per_byte']:.3f} {a['base']['modes']}, "
                     f"{t['model']} {a['tuned']['bits_per_byte']:.3f} {a['tuned']['modes']} bits/byte"
                     + (f"; pays off from {a['break_even_bytes'] / 1e6:.1f} MB" if a["break_even_bytes"] else ""))
    be = report["break_even_bytes"]
    lines.append(f"the fine-tuned model pays off from {be / 1e6:.1f} MB of data" if be else
                 "the fine-tuned model codes no smaller than the base model: keep the base model")
    return "\n".join(lines)
