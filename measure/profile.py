"""Where a training step's time goes: torch.profiler's operator table for one (method, arch).

The step is the step benchmark's (`measure.steps`: the harness's own `train_step` at batch
100 on random data of the architecture's input shape, default options, fp32, eager), run
`--warmup` times untimed and then `--steps` times under the profiler. The table lists the
operators by their own CPU time (`self_cpu_time_total`), so the rows add up to the step;
on a GPU, by their CUDA time. It is for finding what to speed up, not a timing: the
profiler itself adds overhead to every operator.

    python -m measure.profile --method cemnet --arch lenet5 --threads 1
    python -m measure.profile --method cnn --arch vgg-small --rows 15
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from harness.device import activate, resolve_device
from harness.errors import UserError
from harness.step import train_step
from measure.steps import build, data


def profile_table(method: str, arch: str, *, device: torch.device, batch: int = 100,
                  warmup: int = 3, steps: int = 5, rows: int = 20) -> str:
    spec, model, opt, sched, shape = build(method, arch, {}, device, batch, warmup + steps)
    xb, yb = data(shape, batch, device)
    for _ in range(warmup):
        train_step(model, opt, sched, xb, yb, spec.clip_norm)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            train_step(model, opt, sched, xb, yb, spec.clip_norm)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m measure.profile", description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="cemnet")
    ap.add_argument("--arch", default="lenet5")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    ap.add_argument("--steps", type=int, default=5, help="profiled steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--rows", type=int, default=20, help="operators shown")
    args = ap.parse_args(argv)
    try:
        if args.threads is not None:
            if not 1 <= args.threads <= 1024:
                raise UserError(f"--threads must be in 1..1024, got {args.threads}")
            torch.set_num_threads(args.threads)
        for name in ("steps", "warmup", "rows"):
            if not 1 <= getattr(args, name) <= 10_000:
                raise UserError(f"--{name} must be in 1..10000, got {getattr(args, name)}")
        device = resolve_device(args.device)
        activate(device, "fp32")
        # Kineto prints 'USDT: ...' lines on stderr unless its log level is above 5
        os.environ.setdefault("KINETO_LOG_LEVEL", "6")
        table = profile_table(args.method, args.arch, device=device, warmup=args.warmup,
                              steps=args.steps, rows=args.rows)
        print(f"{args.method}/{args.arch}, batch 100, {args.steps} steps after {args.warmup} "
              f"warm-up steps, {device}, {torch.get_num_threads()} thread(s)")
        print(table)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
