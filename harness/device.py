"""Where a run executes and under which arithmetic: device resolution, precision policy,
device timers and peak memory.

Device names: `auto` picks the current CUDA device when CUDA is available, else the CPU;
`cuda` means the current CUDA device. Both resolve to an *indexed* device (`cuda:0`),
because `torch.cuda.set_device`, events and memory statistics need an index, and the run
record must name the GPU that ran. Inside a local-sweep job or a SLURM task,
CUDA_VISIBLE_DEVICES restricts the process to its GPU, which is then `cuda:0`.

Precision policy (`--set precision=...`), applied before a model is built:
- `fp32` (default): strict IEEE float32 everywhere: TF32 off for cuDNN convolutions and
  cuBLAS matmuls. PyTorch's own default is mixed (TF32 on for cuDNN, off for matmuls),
  which lets a CNN's convolutions run in TF32 while the spectral methods' complex GEMMs
  run in full float32: an unequal comparison.
- `tf32`: TF32 on for both, the fast setting on Ampere and later GPUs.
Only the legacy `allow_tf32` flags are set: mixing them with the newer `fp32_precision`
API makes PyTorch refuse to read the flags back. On the CPU both policies compute the
same (TF32 is a GPU feature); the policy is still recorded and part of the run id.
"""

from __future__ import annotations

import resource
import time

import torch

from harness.errors import UserError

PRECISIONS = ("fp32", "tf32")


def resolve_device(name: str | None) -> torch.device:
    """The indexed device to run on: 'auto' (or None), 'cpu', 'cuda' or 'cuda:N'."""
    if name in (None, "", "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    if dev.type == "cpu":
        if dev.index not in (None, 0):     # torch accepts cpu:7 and runs on the one CPU device
            raise UserError(f"unknown device {name!r}: the CPU device has no index; use cpu")
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available here; use --device cpu")
    count = torch.cuda.device_count()
    if dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    if dev.index >= count:
        raise UserError(f"device {name!r} does not exist: this machine has {count} GPU(s); "
                        f"use cuda:0..cuda:{count - 1}")
    return dev


def apply_precision(policy: str) -> dict:
    """Set the TF32 flags for `policy` and return the effective flags (for the record)."""
    if policy not in PRECISIONS:
        raise UserError(f"unknown precision {policy!r}; use one of {', '.join(PRECISIONS)}")
    tf32 = policy == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    return precision_flags(policy)


def precision_flags(policy: str | None = None) -> dict:
    """The arithmetic flags in force now."""
    return {"policy": policy, "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
            "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
            "float32_matmul_precision": torch.get_float32_matmul_precision()}


def activate(device: torch.device, policy: str) -> dict:
    """Make `device` current (events, streams and synchronize refer to it) and apply `policy`."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return apply_precision(policy)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timer:
    """Sums the duration of timed regions: CUDA events on a GPU, perf_counter on CPU.

    On a GPU, work is asynchronous: the host returns from a step long before the GPU
    finishes it, so host clocks would time kernel launches. Events are recorded in the
    stream around each region, and read after one synchronization in `total()`.
    """

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.pairs: list = []
        self.cpu_total = 0.0

    def start(self):
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self.pairs.append([ev, None])
        else:
            self._t0 = time.perf_counter()

    def stop(self):
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self.pairs[-1][1] = ev
        else:
            self.cpu_total += time.perf_counter() - self._t0

    def total(self) -> float:
        """Seconds timed so far (synchronizes the GPU once)."""
        if self.cuda:
            torch.cuda.synchronize()
            total = sum(a.elapsed_time(b) for a, b in self.pairs) / 1000.0
            self.pairs.clear()
            self.cpu_total += total
        return self.cpu_total


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> tuple[float, str]:
    """(peak MiB, what was measured): the CUDA allocator peak, or the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda max_memory_allocated"
    # ru_maxrss is in KiB on Linux: the peak resident set of the whole process
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS"


def describe(device: torch.device) -> str:
    """One line for humans: 'cuda:0 (NVIDIA H200)' or 'cpu'."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return "cpu"
