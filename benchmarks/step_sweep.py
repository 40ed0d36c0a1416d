"""Decode profile: time of one step-graph call against the number of lanes it advances.

Separates the fixed cost of a decode step (onnxruntime launching every operator of the step
graph once) from the per-lane cost (each lane's query against its own KV cache), which is what
keeps decoding far below the CPU's matmul throughput (docs/performance.md).

    python benchmarks/step_sweep.py                                   # lm-fast-v1 and lm-small-v1
    python benchmarks/step_sweep.py --models lm-tiny-v1 --lanes 16,64 --position 64

One single-threaded :class:`lmcodec.runtime.OnnxStepDecoder` per lane count, stepped to
``--position`` first; the median of ``--steps`` timed steps at that position is reported.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lmcodec import models  # noqa: E402
from lmcodec.runtime import OnnxStepDecoder  # noqa: E402


def step_time(name: str, lanes: int, position: int, steps: int) -> float:
    """Median seconds of one step of ``lanes`` lanes at ``position`` (one thread)."""
    model = models.load_model(name, device="cpu")
    decoder = OnnxStepDecoder(model, lanes, workers=1)
    tokens = (np.arange(lanes) % 256).astype(np.int64)
    for _ in range(position):
        decoder.step(tokens)
    times = []
    for _ in range(steps):
        decoder.pos = position  # the same position every time
        start = time.perf_counter()
        decoder.step(tokens)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="lm-fast-v1,lm-small-v1")
    parser.add_argument("--lanes", default="8,32,128,512", help="comma-separated lane counts")
    parser.add_argument("--position", type=int, default=8, help="position in the segment (default 8)")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per lane count (default 40)")
    args = parser.parse_args(argv)
    print(f"{'model':14s} {'lanes':>6s} {'step us':>10s} {'per lane us':>12s}")
    for name in args.models.split(","):
        for lanes in (int(x) for x in args.lanes.split(",")):
            t = step_time(name.strip(), lanes, args.position, args.steps)
            print(f"{name:14s} {lanes:6d} {t * 1e6:10.1f} {t / lanes * 1e6:12.2f}")


if __name__ == "__main__":
    main()
