#!/usr/bin/env python3
"""One-off generator of the frozen lookup tables in ``lmcodec/model/tables.py``.

The model's exp and GELU tables were once computed at import time with float64 ``np.exp`` /
``np.tanh`` and rounded to integers. Their entries are part of every model's semantics, so they
must not depend on the platform's libm: since then they are integer literals, and this script
is only the record of where the literals came from. It is NOT run by the package, the build or
the tests' runtime paths (the tests call its formulas once, to check the literals against them).

    python scripts/make_tables.py            # print the tie margins, check tables.py
    python scripts/make_tables.py --write    # (re)write lmcodec/model/tables.py

Never re-run ``--write`` to "update" the tables: on a platform whose ``tanh`` rounds differently
it would silently change the semantics of every shipped model. ``--write`` refuses to change an
existing tables.py unless ``--force`` is given.

Tie margins: each table entry is ``round(v)`` (half to even, ``np.round``) of a float64 ``v``;
its risk is the distance of ``v`` from the nearest rounding boundary ``k + 1/2``. With
``mpmath`` installed the script also gives the exact (60-digit) distance and lists the entries
where the frozen float64 result differs from the correctly rounded value of the real function.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
TABLES_PY = ROOT / "lmcodec" / "model" / "tables.py"

# The formula constants (duplicated from lmcodec/model/spec.py so that this script does not need
# an importable tables.py; main() checks that they still agree with spec.py).
ATT_EXP_BITS, ATT_STEPS, ATT_LUT_SIZE = 8, 16, 128
OUT_EXP_BITS, OUT_STEPS, OUT_LUT_SIZE = 12, 32, 512
HID_FRAC_BITS, HID_MAX, GELU_OUT_SCALE, ACT_MAX = 6, 511, 16, 127


def gelu_float(x: np.ndarray) -> np.ndarray:
    """tanh-approximation GELU in float64 (the formula the GELU table was built from)."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def unrounded() -> dict[str, np.ndarray]:
    """The float64 values each table entry is the rounding of (before clipping)."""
    k_att = np.arange(ATT_LUT_SIZE, dtype=np.float64)
    k_out = np.arange(OUT_LUT_SIZE, dtype=np.float64)
    h = np.arange(-HID_MAX, HID_MAX + 1, dtype=np.float64)
    return {
        "ATTENTION_EXP": (1 << ATT_EXP_BITS) * np.exp(-k_att / ATT_STEPS),
        "OUTPUT_EXP": (1 << OUT_EXP_BITS) * np.exp(-k_out / OUT_STEPS),
        "GELU": GELU_OUT_SCALE * gelu_float(h / (1 << HID_FRAC_BITS)),
    }


def float_tables() -> dict[str, np.ndarray]:
    """The tables exactly as the pre-freeze code computed them (int64 here)."""
    v = unrounded()
    return {
        "ATTENTION_EXP": np.round(v["ATTENTION_EXP"]).astype(np.int64),
        "OUTPUT_EXP": np.round(v["OUTPUT_EXP"]).astype(np.int64),
        "GELU": np.clip(np.round(v["GELU"]), -ACT_MAX, ACT_MAX).astype(np.int64),
    }


def counted(name: str) -> np.ndarray:
    """Mask of the entries whose rounding matters: a GELU value >= 127 rounds to 127 or 128, and
    both clip to 127."""
    v = unrounded()[name]
    return np.abs(v) < ACT_MAX if name == "GELU" else np.ones(v.shape, bool)


def margins(name: str) -> np.ndarray:
    """Distance of each float64 value from the nearest rounding boundary ``k + 1/2``."""
    v = unrounded()[name]
    return np.abs(v - np.floor(v) - 0.5)


def exact_values(name: str) -> list:
    """The real-function values at 60 digits (needs mpmath)."""
    import mpmath

    mpmath.mp.dps = 60
    if name == "ATTENTION_EXP":
        return [(1 << ATT_EXP_BITS) * mpmath.exp(mpmath.mpf(-k) / ATT_STEPS) for k in range(ATT_LUT_SIZE)]
    if name == "OUTPUT_EXP":
        return [(1 << OUT_EXP_BITS) * mpmath.exp(mpmath.mpf(-k) / OUT_STEPS) for k in range(OUT_LUT_SIZE)]
    c = mpmath.sqrt(2 / mpmath.pi)
    out = []
    for h in range(-HID_MAX, HID_MAX + 1):
        x = mpmath.mpf(h) / (1 << HID_FRAC_BITS)
        out.append(GELU_OUT_SCALE * x / 2 * (1 + mpmath.tanh(c * (x + mpmath.mpf("0.044715") * x**3))))
    return out


def report(tables: dict[str, np.ndarray]) -> None:
    v64 = unrounded()
    for name, table in tables.items():
        keep = counted(name)
        m = np.where(keep, margins(name), np.inf)
        i = int(np.argmin(m))
        offset = -HID_MAX if name == "GELU" else 0
        ulps = m[i] / np.spacing(abs(v64[name][i]))
        print(f"{name}: {table.size} entries, float64 min tie margin {m[i]:.3g} ({ulps:.3g} ulp)"
              f" at index {i + offset}")
        with np.errstate(over="ignore"):  # values near 0 have denormal spacings
            m_ulp = np.where(keep, margins(name) / np.spacing(np.abs(v64[name])), np.inf)
        near = np.nonzero(m_ulp < 64)[0]
        if near.size:
            print(f"  entries within 64 ulp of a tie (index: ulp): "
                  f"{', '.join(f'{j + offset}: {m_ulp[j]:.0f}' for j in near)}")
        try:
            import mpmath
        except ImportError:
            print("  (install mpmath for exact margins)")
            continue
        ex = exact_values(name)
        half = mpmath.mpf(1) / 2
        dist = [abs(e - mpmath.floor(e) - half) if k else mpmath.inf for e, k in zip(ex, keep)]
        j = min(range(len(dist)), key=lambda t: dist[t])
        print(f"  exact min tie margin {mpmath.nstr(dist[j], 4)} at index {j + offset}")
        correct = np.array([int(mpmath.floor(e + half)) for e in ex], dtype=np.int64)
        if name == "GELU":
            correct = np.clip(correct, -ACT_MAX, ACT_MAX)
        bad = np.nonzero(correct != table)[0]
        if bad.size:
            print(f"  frozen entries that differ from the correctly rounded real value: "
                  f"{[(int(j + offset), int(table[j]), int(correct[j])) for j in bad]} (index, frozen, exact)")


def render(tables: dict[str, np.ndarray]) -> str:
    lines = [
        '"""Frozen integer lookup tables of the model (GENERATED by scripts/make_tables.py; do not edit).',
        "",
        "They are part of every model's semantics (docs/model.md) but not of its id, so they must be",
        "identical on every platform: they are literals, never recomputed with float exp/tanh at run",
        "time. ``lmcodec.model.spec`` turns them into the float32 arrays the graphs and references use.",
        "tests/test_model_exact.py pins their sha256 and checks them against the generator's formulas.",
        '"""',
        "",
    ]
    docs = {
        "ATTENTION_EXP": "``round(2**8 * exp(-k / 16))`` for k in 0..127.",
        "OUTPUT_EXP": "``round(2**12 * exp(-k / 32))`` for k in 0..511.",
        "GELU": "``clip(round(16 * gelu_tanh(h / 64)), -127, 127)`` for h in -511..511 (index h + 511).",
    }
    for name, table in tables.items():
        items = [str(int(x)) for x in table]
        lines.append(f"{name} = (")
        row: list[str] = []
        for s in items:
            if row and len("    " + ", ".join(row + [s]) + ",") > 99:
                lines.append("    " + ", ".join(row) + ",")
                row = []
            row.append(s)
        lines.append("    " + ", ".join(row) + ",")
        lines.append(")")
        lines.append(f'"""{docs[name]}"""')
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help="write lmcodec/model/tables.py")
    ap.add_argument("--force", action="store_true", help="with --write: overwrite a differing tables.py")
    args = ap.parse_args()
    tables = float_tables()
    report(tables)
    text = render(tables)
    old = TABLES_PY.read_text() if TABLES_PY.exists() else None
    if args.write:
        if old is not None and old != text and not args.force:
            print(f"{TABLES_PY} differs from this platform's formula output; not overwritten", file=sys.stderr)
            return 1
        TABLES_PY.write_text(text)
        print(f"wrote {TABLES_PY}")
    if not TABLES_PY.exists():
        print(f"{TABLES_PY} is missing (run with --write)", file=sys.stderr)
        return 1
    sys.path.insert(0, str(ROOT))
    from lmcodec.model import spec

    assert (spec.ATT_EXP_BITS, spec.ATT_STEPS, spec.ATT_LUT_SIZE) == (ATT_EXP_BITS, ATT_STEPS, ATT_LUT_SIZE)
    assert (spec.OUT_EXP_BITS, spec.OUT_STEPS, spec.OUT_LUT_SIZE) == (OUT_EXP_BITS, OUT_STEPS, OUT_LUT_SIZE)
    assert (spec.HID_FRAC_BITS, spec.HID_MAX, spec.GELU_OUT_SCALE, spec.ACT_MAX) == (
        HID_FRAC_BITS, HID_MAX, GELU_OUT_SCALE, ACT_MAX)
    same = TABLES_PY.read_text() == text
    print(f"{TABLES_PY.relative_to(ROOT)} {'matches' if same else 'DIFFERS FROM'} this platform's formula output")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
