"""Fine-tune the default model on a >= 50 MB real dataset and plot the paper's adjusted rate.

The dataset is every sample of the FluidR3 General MIDI SoundFont (Debian package
``fluid-soundfont-gm``: 74 M int16 samples, 148 MB), written once as an ``.npy`` file and given
to ``lmcodec train finetune`` exactly as a user would. The last 1 MiB is held out; the report
(``docs/finetune-fluidr3.json``) and the plot (``docs/finetune-fluidr3.png``) are copied into
docs/. The base model saw at most a few MB of this file in its training split (docs/data.md).

    python benchmarks/finetune_fluidr3.py --minutes 40     # resumable: rerun the same command

Needs the ``train`` extra (torch) and the corpus package (``scripts/install-data.sh``).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np

from lmcodec.corpus import sf2_samples
from lmcodec.train import main as train_main

REPO = Path(__file__).resolve().parent.parent
NAME = "fluidr3-small-ft"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default=str(REPO / "runs" / "finetune-fluidr3"), help="scratch directory")
    parser.add_argument("--minutes", type=float, default=40.0)
    parser.add_argument("--max-minutes", type=float, default=None)
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    npy = work / "fluidr3.npy"
    if not npy.exists():
        samples, _ = sf2_samples()
        np.save(npy, np.asarray(samples, dtype="<i2"))
    train_args = ["finetune", "--from", str(npy), "--name", NAME, "--out", str(work / "models"),
                  "--minutes", str(args.minutes), "--batch", "16", "--window", "256", "--eval-every", "1500"]
    if args.max_minutes:
        train_args += ["--max-minutes", str(args.max_minutes)]
    command = "python benchmarks/finetune_fluidr3.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    train_main(train_args + ["--command", command])
    report = work / "models" / f"{NAME}.report.json"
    if report.exists():
        shutil.copy(report, REPO / "docs" / "finetune-fluidr3.json")
        shutil.copy(work / "models" / f"{NAME}.adjusted-rate.png", REPO / "docs" / "finetune-fluidr3.png")
        shutil.copy(work / "models" / f"{NAME}.run" / "log.jsonl", REPO / "docs" / "finetune-fluidr3.log.jsonl")
        plot_curve(REPO / "docs" / "finetune-fluidr3.log.jsonl", REPO / "docs" / "finetune-fluidr3-curve.png")


def plot_curve(log: Path, path: Path) -> None:
    """Training bits/byte (moving average over 100 steps) and the logged held-out evaluations."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = {r["step"]: r for r in map(json.loads, log.read_text().splitlines())}  # resumes repeat steps
    steps = sorted(records)
    train = np.array([records[s]["train_bpb"] for s in steps])
    smooth = np.convolve(train, np.ones(100) / 100, mode="valid")
    evals = [(s, records[s]["val_bpb"]["all"]) for s in steps if "val_bpb" in records[s]]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.plot(steps[99:], smooth, label="training windows (256 bytes), mean of 100 steps")
    ax.plot(*zip(*evals), "o-", label="held-out rows, model alone (exact tables, 1024-byte segments)")
    ax.set_xlabel("step (batch 16 x 256 bytes)")
    ax.set_ylabel("bits/byte")
    ax.set_title("Fine-tuning lm-small-v1 on FluidR3 samples (2-core CPU)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
