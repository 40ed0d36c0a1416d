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


if __name__ == "__main__":
    main()
