"""Train the integer-exact byte Transformer (``python -m lmcodec.train`` / ``lmcodec train``).

Subcommands:

* ``prepare --data DIR``: corpus (:mod:`lmcodec.corpus`) -> ``DIR/train.npz``, ``DIR/val.npz``.
* ``fit --data DIR --run DIR``: quantization-aware training with a progress bar, a JSON-lines
  log (``RUN/log.jsonl``: train bits/byte, validation bits/byte per data kind, measured with the
  exact integer frequency tables) and resumable checkpoints (``RUN/checkpoint.pt``, written
  atomically every ``--checkpoint-every`` steps and at the end or at ``--max-minutes``).
  Running the same command again resumes from the checkpoint.
* ``export --run DIR --name NAME [--out DIR]``: integer weights -> ``onnx_models/NAME/{full,step}.onnx``
  (or a model directory ``--out``) and a manifest entry (:mod:`lmcodec.models`).
* ``finetune --from PATH --name NAME --out DIR``: prepare a user's array (.npy, Zarr, HDF5),
  ``fit --init-from`` an installed model, export to ``DIR`` and report the adjusted rate
  (:mod:`lmcodec.finetune`). Resumable like ``fit``: run the same command again.

Needs the ``train`` extra (torch). Fixed seeds; the sampler state is checkpointed too.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from lmcodec.model.reference import frequencies
from lmcodec.model.spec import ModelConfig
from lmcodec.train_data import IGNORE, PlaneSet, WindowSampler, prepare, validation_windows

PRESETS = {
    "tiny": dict(d_model=64, n_layers=2, n_heads=4, d_ff=256, context_length=1024),
    "small": dict(d_model=128, n_layers=2, n_heads=4, d_ff=512, context_length=1024),
    "base": dict(d_model=256, n_layers=4, n_heads=8, d_ff=1024, context_length=1024),
    # CPU-throughput preset (docs/performance.md): one layer, 128-byte context; 0.057 MMAC per
    # byte instead of 0.69 (small), sized for >= 300 KB/s encode, >= 100 KB/s decode on 2 cores
    "fast": dict(d_model=64, n_layers=1, n_heads=2, d_ff=128, context_length=128),
}


def exact_bits(logits_int: np.ndarray, targets: np.ndarray, shift_logits: int) -> tuple[float, int]:
    """Code length in bits of ``targets`` under the exact frequency tables, and the byte count."""
    freqs = frequencies(logits_int.astype(np.int64), shift_logits)
    valid = targets != IGNORE
    f = np.take_along_axis(freqs, np.where(valid, targets, 0)[..., None], -1)[..., 0]
    return float(-np.log2(f[valid] / 65536.0).sum()), int(valid.sum())


def evaluate(model, windows: dict, device, batch: int = 16) -> dict[str, float]:
    """Exact validation bits per byte per data kind (and 'all')."""
    import torch

    model.eval()
    totals, result = [0.0, 0], {}
    with torch.no_grad():
        for name, (tok, tgt) in windows.items():
            bits, count = 0.0, 0
            for i in range(0, len(tok), batch):
                logits = model(torch.from_numpy(tok[i:i + batch]).to(device), exact=True)
                b, c = exact_bits(logits.cpu().numpy(), tgt[i:i + batch], model.cfg.shift_logits)
                bits, count = bits + b, count + c
            result[name] = bits / max(count, 1)
            totals[0] += bits
            totals[1] += count
    result["all"] = totals[0] / max(totals[1], 1)
    model.train()
    return result


def _progress(step: int, train_seconds: float, hparams: dict) -> float:
    """Fraction of the run done: by steps, or by training time when ``minutes`` is set."""
    by_steps = step / hparams["steps"]
    if hparams.get("minutes"):
        return max(by_steps, train_seconds / (60 * hparams["minutes"]))
    return by_steps


def _lr(step: int, progress: float, peak: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 10 % of ``peak``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def fit(args: argparse.Namespace) -> bool:
    """Train (or resume) the run; returns whether its schedule is finished (``False`` when
    ``--max-minutes`` stopped this invocation first)."""
    import torch
    from tqdm import tqdm

    from lmcodec.model.qat import QATModel

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    ckpt_path = run / "checkpoint.pt"
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        cfg = ModelConfig.from_dict(ckpt["config"])
        hparams = ckpt["hparams"]
        if args.steps is not None:  # extend (or shorten) a finished run
            hparams["steps"] = args.steps
    else:
        ckpt = None
        hparams = {k: getattr(args, k) for k in ("steps", "minutes", "batch", "lr", "warmup", "float_steps", "seed", "preset")}
        hparams["steps"] = args.steps or (10**9 if args.minutes else 20000)
        if args.init_from:  # fine-tuning: the installed model's config and weights
            from lmcodec.models import load_weights, model_info

            initial = load_weights(args.init_from)
            cfg = initial.config
            hparams.update(preset=None, init_from=model_info(args.init_from)["name"],
                           init_model_id=initial.digest()[:8].hex())
        else:
            preset = dict(PRESETS[args.preset])
            if args.context_length:
                preset["context_length"] = args.context_length
            cfg = ModelConfig.create(**preset)
        hparams["window"] = min(args.window or cfg.context_length, cfg.context_length)
    torch.manual_seed(hparams["seed"])
    if ckpt is None and args.init_from:
        model = QATModel.from_integer_weights(initial).to(device)
    else:
        model = QATModel(cfg).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=hparams["lr"], weight_decay=0.0, betas=(0.9, 0.98))
    train = PlaneSet.load(Path(args.data) / "train.npz")
    sampler = WindowSampler(train, hparams.get("window", cfg.context_length), hparams["seed"])
    val_windows = validation_windows(PlaneSet.load(Path(args.data) / "val.npz"), cfg.context_length, args.val_bytes)
    step, train_seconds = 0, 0.0
    opt_path = run / "optimizer.pt"
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        step, train_seconds = ckpt["step"], ckpt.get("train_seconds", 0.0)
        if opt_path.exists():
            opt_state = torch.load(opt_path, map_location="cpu", weights_only=False)
            optimizer.load_state_dict(opt_state["optimizer"])
            sampler.set_state(opt_state["sampler"])
        else:
            print(f"warning: {opt_path} missing, resuming with fresh optimizer moments", file=sys.stderr)
    log = open(run / "log.jsonl", "a")
    n_params = sum(p.numel() for p in model.parameters())
    print(f"config {cfg.to_json()} params {n_params} device {device} step {step}/{hparams['steps']}", file=sys.stderr)

    def save() -> None:
        """checkpoint.pt (weights, config, progress) and optimizer.pt (Adam moments, sampler),
        each written atomically; the weights alone are enough to export."""
        for path, payload in (
            (opt_path, {"optimizer": optimizer.state_dict(), "sampler": sampler.state()}),
            (ckpt_path, {"config": json.loads(cfg.to_json()), "hparams": hparams, "model": model.state_dict(),
                         "step": step, "train_seconds": train_seconds}),
        ):
            torch.save(payload, path.with_suffix(".tmp"))
            os.replace(path.with_suffix(".tmp"), path)

    started = time.time()
    bar = tqdm(total=None if hparams.get("minutes") else hparams["steps"], initial=step, desc="train", unit="step", dynamic_ncols=True, mininterval=5)
    running = None
    while (progress := _progress(step, train_seconds, hparams)) < 1.0:
        step_started = time.time()
        exact = step >= hparams["float_steps"]
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, progress, hparams["lr"], hparams["warmup"])
        tok, tgt = sampler.batch(hparams["batch"])
        tok_t, tgt_t = torch.from_numpy(tok).to(device), torch.from_numpy(tgt).to(device)
        logits = model.logits_to_nats(model(tok_t, exact=exact, recompute=args.recompute))
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 256), tgt_t.reshape(-1), ignore_index=IGNORE)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        bpb = loss.item() / math.log(2)
        train_seconds += time.time() - step_started
        running = bpb if running is None else 0.98 * running + 0.02 * bpb
        bar.update(1)
        bar.set_postfix(bpb=f"{running:.3f}", exact=exact)
        record = {"step": step, "train_bpb": bpb, "lr": optimizer.param_groups[0]["lr"], "exact": exact,
                  "elapsed_s": round(time.time() - started, 1)}
        out_of_time = args.max_minutes and time.time() - started > 60 * args.max_minutes
        done = _progress(step, train_seconds, hparams) >= 1.0
        if step % args.eval_every == 0 or done or out_of_time:
            record["val_bpb"] = evaluate(model, val_windows, device)
            bar.write(f"step {step}: val bits/byte " + ", ".join(f"{k} {v:.3f}" for k, v in record["val_bpb"].items()))
        log.write(json.dumps(record) + "\n")
        log.flush()
        if step % args.checkpoint_every == 0 or done or out_of_time:
            save()
        if out_of_time:
            bar.write(f"stopping at step {step}: --max-minutes reached (rerun the command to resume)")
            break
    bar.close()
    return _progress(step, train_seconds, hparams) >= 1.0


def export(args: argparse.Namespace) -> None:
    import torch

    from lmcodec.model.qat import QATModel
    from lmcodec.models import register_model

    ckpt = torch.load(Path(args.run) / "checkpoint.pt", map_location="cpu", weights_only=False)
    model = QATModel(ModelConfig.from_dict(ckpt["config"]))
    model.load_state_dict(ckpt["model"])
    weights = model.to_integer_weights()
    log = [json.loads(line) for line in open(Path(args.run) / "log.jsonl")]
    evals = [r for r in log if "val_bpb" in r]
    training = {"command": args.command or "", "hparams": ckpt["hparams"], "steps_done": ckpt["step"],
                "data": args.data_note or "", "last_val_bpb_training_split_exact": evals[-1]["val_bpb"] if evals else None}
    entry = register_model(weights, args.name, training=training, description=args.description or "",
                           directory=Path(args.out) if getattr(args, "out", None) else None)
    print(json.dumps(entry, indent=2))


def finetune(args: argparse.Namespace) -> None:
    """prepare (once) -> fit --init-from (resumable) -> export to --out -> adjusted-rate report."""
    from lmcodec import finetune as ft
    from lmcodec.models import model_info

    base = model_info(args.base)["name"]
    out = Path(args.out)
    run = Path(args.run or out / f"{args.name}.run")
    data = run / "data"
    if not (data / "source.json").exists():
        info = ft.prepare_from(args.source, data, args.dataset, args.sample_bytes, args.holdout_bytes)
        print(f"prepared {info['train_bytes']} training bytes ({info['train_blocks']} blocks) and "
              f"{info['holdout_bytes']} held-out bytes of {info['path']} {info['shape']} {info['dtype']}", file=sys.stderr)
    finished = fit(argparse.Namespace(
        data=str(data), run=str(run), init_from=base, preset=None, context_length=None, window=args.window,
        steps=None, minutes=args.minutes, batch=args.batch, lr=args.lr, warmup=args.warmup, float_steps=0,
        seed=args.seed, device=args.device, eval_every=args.eval_every, val_bytes=args.val_bytes,
        checkpoint_every=args.checkpoint_every, max_minutes=args.max_minutes, recompute=False))
    if not finished:
        print("stopped before the end of the schedule: run the same command again to resume", file=sys.stderr)
        return
    source = json.loads((data / "source.json").read_text())
    export(argparse.Namespace(
        run=str(run), name=args.name, out=str(out), command=args.command,
        data_note=f"fine-tuned from {base} on {source['train_bytes']} bytes of {source['path']}",
        description=f"{base} fine-tuned on {Path(source['path']).name} for {args.minutes} minutes"))
    report = ft.write_report(data, out, args.name, base)
    print(ft.summary(report))
    print(f"model directory: {out} (add it to LMCODEC_MODEL_PATH to read chunks coded with it); "
          f"report: {out / (args.name + '.report.json')}, plot: {out / (args.name + '.adjusted-rate.png')}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="lmcodec train", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("prepare", help="build train/val byte planes from the corpus")
    pp.add_argument("--data", required=True)
    pp.add_argument("--train-bytes-per-kind", type=int, default=None, help="cap per corpus kind (default: all)")
    pp.add_argument("--val-bytes-per-kind", type=int, default=None, help="cap per corpus kind (default: all)")
    pf = sub.add_parser("fit", help="train (resumes from RUN/checkpoint.pt)")
    pf.add_argument("--data", required=True)
    pf.add_argument("--run", required=True)
    pf.add_argument("--preset", choices=sorted(PRESETS), default="small")
    pf.add_argument("--context-length", type=int, default=None)
    pf.add_argument("--init-from", default=None, metavar="MODEL",
                    help="fine-tune: start from this installed model (its config; --preset is ignored)")
    pf.add_argument("--window", type=int, default=None,
                    help="training window in bytes (default and maximum: the model's context length)")
    pf.add_argument("--steps", type=int, default=None, help="total steps (default 20000; on resume: extend to)")
    pf.add_argument("--minutes", type=float, default=None,
                    help="total training time over all resumes; the schedule follows it (default: by steps)")
    pf.add_argument("--batch", type=int, default=32)
    pf.add_argument("--lr", type=float, default=2e-3)
    pf.add_argument("--warmup", type=int, default=300)
    pf.add_argument("--float-steps", type=int, default=0)
    pf.add_argument("--seed", type=int, default=0)
    pf.add_argument("--device", default="auto")
    pf.add_argument("--eval-every", type=int, default=500)
    pf.add_argument("--val-bytes", type=int, default=256 * 1024, help="validation bytes per data kind")
    pf.add_argument("--checkpoint-every", type=int, default=200)
    pf.add_argument("--max-minutes", type=float, default=None, help="stop this invocation (checkpointed) after so long")
    pf.add_argument("--recompute", action="store_true", help="activation checkpointing: less memory, ~30%% more compute")
    pe = sub.add_parser("export", help="checkpoint -> onnx_models/NAME + manifest entry")
    pe.add_argument("--run", required=True)
    pe.add_argument("--name", required=True)
    pe.add_argument("--command", default=None, help="the exact training command, for the manifest")
    pe.add_argument("--data-note", default=None)
    pe.add_argument("--description", default=None)
    pe.add_argument("--out", default=None, help="model directory to write to (default: the shipped onnx_models/)")
    pt = sub.add_parser("finetune", help="fine-tune an installed model on one array; report the adjusted rate")
    pt.add_argument("--from", dest="source", required=True, metavar="PATH", help=".npy file, Zarr store or HDF5 file")
    pt.add_argument("--dataset", default=None, help="array inside a Zarr group or HDF5 file (default: the largest)")
    pt.add_argument("--name", required=True, help="name of the new model")
    pt.add_argument("--out", required=True, help="model directory to write (keep it next to the data)")
    pt.add_argument("--base", default=None, help="installed model to start from (default: the default model)")
    pt.add_argument("--run", default=None, help="checkpoint directory (default: OUT/NAME.run)")
    pt.add_argument("--minutes", type=float, default=10.0, help="training time (the schedule follows it)")
    pt.add_argument("--max-minutes", type=float, default=None, help="stop this invocation (checkpointed) after so long")
    pt.add_argument("--sample-bytes", type=int, default=16 << 20, help="training bytes read from the array")
    pt.add_argument("--holdout-bytes", type=int, default=1 << 20, help="bytes at the end held out for the report")
    pt.add_argument("--batch", type=int, default=8)
    pt.add_argument("--window", type=int, default=256, help="training window in bytes")
    pt.add_argument("--lr", type=float, default=5e-4)
    pt.add_argument("--warmup", type=int, default=20)
    pt.add_argument("--eval-every", type=int, default=1000)
    pt.add_argument("--val-bytes", type=int, default=64 * 1024, help="held-out bytes of each logged evaluation")
    pt.add_argument("--checkpoint-every", type=int, default=50)
    pt.add_argument("--seed", type=int, default=0)
    pt.add_argument("--device", default="auto")
    pt.add_argument("--command", default=None, help="the exact command, for the manifest")
    args = p.parse_args(argv)
    if args.cmd == "finetune":
        finetune(args)
    elif args.cmd == "prepare":
        caps = {"train": args.train_bytes_per_kind, "val": args.val_bytes_per_kind}
        for split, path in prepare(Path(args.data), caps).items():
            ps = PlaneSet.load(path)
            print(f"{split}: {len(ps.data)} bytes in {len(ps.lengths)} planes -> {path}")
    elif args.cmd == "fit":
        fit(args)
    else:
        export(args)


if __name__ == "__main__":
    main()
