"""What every measurement shares: the device, the clock, peak memory, the matmul peak, and
where the CSV goes.

Built on `harness.device` (device names, the precision policy, the CUDA-event `Timer`,
synchronization), so a measurement resolves and times a device as a run does.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
from pathlib import Path
from typing import Callable

import torch

from harness import store
from harness.device import Timer, reset_peak_memory, resolve_device, sync
from harness.env import cpu_model


def add_output_args(ap: argparse.ArgumentParser, name: str) -> None:
    """--results-dir and --out: the CSV goes to <results>/_measure/<name>.csv by default."""
    ap.add_argument("--results-dir", default=None,
                    help="results root (default $SPECTRAL_BENCH_RESULTS or ./results); the CSV "
                         f"goes to <results>/{store.MEASURE_DIR}/{name}.csv, where reports find it")
    ap.add_argument("--out", default=None,
                    help=f"CSV path (default: <results>/{store.MEASURE_DIR}/{name}.csv)")


def output_path(args, name: str) -> Path:
    return Path(args.out) if args.out else store.measurement_csv(store.results_root(args.results_dir),
                                                                 name)


def write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k, "") for k in fields})


def device(name: str) -> torch.device:
    """'auto', 'cpu', 'cuda' or 'cuda:N', resolved as a run resolves it (an indexed GPU), and
    made current (CUDA events and streams refer to the current device)."""
    dev = resolve_device(name)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return dev


def time_call(fn: Callable, device: torch.device):
    """(result, seconds) of one call of fn(), the device idle before: CUDA events on a GPU,
    perf_counter on the CPU (`harness.device.Timer`). It includes the launch latency of
    a lone call; to time a step as the training loop runs it, use `time_steps`."""
    sync(device)
    timer = Timer(device)
    timer.start()
    out = fn()
    timer.stop()
    return out, timer.total()


def time_steps(fn: Callable, device: torch.device, n: int) -> float:
    """Seconds per call of fn() over `n` back-to-back calls timed as a whole: on a GPU one
    CUDA event before the first and one after the last, read after one synchronization,
    so that the host queues call k+1 while the GPU runs call k, as in the training loop
    (`harness.device.Timer`); perf_counter on the CPU."""
    sync(device)
    timer = Timer(device)
    timer.start()
    for _ in range(n):
        fn()
    timer.stop()
    return timer.total() / n


def peak_bytes(fn: Callable, device: torch.device) -> int:
    """Bytes allocated at the peak of `fn()`, beyond the memory allocated before it. GPU:
    max_memory_allocated after reset_peak_memory_stats. CPU: the peak of the running sum
    of the allocations and frees torch.profiler records (torch's CPU allocator, operator
    granularity)."""
    if device.type == "cuda":
        sync(device)
        base = torch.cuda.memory_allocated(device)
        reset_peak_memory(device)
        fn()
        sync(device)
        return torch.cuda.max_memory_allocated(device) - base
    # Kineto, the profiler's backend, prints 'USDT: ... profiler_start/stop' to stderr on
    # every profile at any log level up to 5; it reads KINETO_LOG_LEVEL when the first
    # profile starts, so setting it here silences them (a value the user set wins)
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    deltas = []
    for e in prof.events():
        if e.name == "[memory]":
            deltas.append((e.time_range.start, e.cpu_memory_usage))
        elif e.self_cpu_memory_usage:
            deltas.append((e.time_range.start, e.self_cpu_memory_usage))
    deltas.sort()
    cur = peak = 0
    for _, d in deltas:
        cur += d
        peak = max(peak, cur)
    return peak


def matmul_peak_gflops(device: torch.device, n: int, repeats: int = 5) -> float:
    """Achieved GFLOP/s of a dense float32 n x n matmul (2 n^3 FLOPs), median of repeats."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    times = [time_call(lambda: a @ b, device)[1] for _ in range(repeats)]
    return 2 * n ** 3 / statistics.median(times) / 1e9


def device_name(device: torch.device) -> str:
    """The GPU model, or the CPU model with this process's torch thread count (the one
    place a benchmark's title and CSV name the threads)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"CPU {cpu_model()} ({threads} thread{'' if threads == 1 else 's'})"
