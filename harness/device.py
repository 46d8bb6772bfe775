"""Where a run executes and under which arithmetic: device resolution, precision and
cuDNN policies, device timers and peak memory.

Device names: `auto` picks the current CUDA device when CUDA is available, else the CPU;
`cuda` means the current CUDA device. Both resolve to an *indexed* device (`cuda:0`),
because `torch.cuda.set_device`, events and memory statistics need an index, and the run
record must name the GPU that ran. Inside a local-sweep job or a SLURM task,
CUDA_VISIBLE_DEVICES restricts the process to its GPU, which is then `cuda:0`;
`physical_gpu` maps an index through CUDA_VISIBLE_DEVICES to the GPU it names (an index
of the whole machine, or a GPU-/MIG- UUID).

Precision policy (`--set precision=...`), applied before a model is built:
- `fp32` (default): strict IEEE float32 everywhere: TF32 off for cuDNN convolutions and
  cuBLAS matmuls. PyTorch's own default is mixed (TF32 on for cuDNN, off for matmuls),
  which lets a CNN's convolutions run in TF32 while the spectral methods' complex GEMMs
  run in full float32: an unequal comparison.
- `tf32`: TF32 on for both, the fast setting on Ampere and later GPUs.
- `bf16`, `fp16`: mixed precision: the forward pass and the loss run under
  `torch.autocast` with bfloat16 or float16 (PyTorch's op lists decide which ops run in
  the low precision: convolutions, linear layers and real matmuls; complex ops are never
  cast), TF32 off for what stays in float32. Every FFT runs in float32: torch's FFTs
  take no bfloat16 on any device and float16 only on CUDA and only for power-of-two
  sizes (cuFFT's restriction; 28 x 28 is not one); CPU autocast casts FFT inputs to
  float32 itself, CUDA autocast does not, so the methods cast them
  (`methods.fourier.fp32`). fp16
  adds a gradient scaler (`harness.step.Amp`); bf16 has float32's range and needs none.
  Parameters, optimizer state and gradients stay float32.
Only the legacy `allow_tf32` flags are set: mixing them with the newer `fp32_precision`
API makes PyTorch refuse to read the flags back. On the CPU fp32 and tf32 compute the
same (TF32 is a GPU feature); the policy is still recorded and part of the run id.

cuDNN algorithm policy (`--set cudnn_benchmark=off|on`), applied with the precision policy
and recorded beside it, the same for every method:
- `off` (default): cuDNN picks each convolution's algorithm by its heuristics, from the
  shapes alone, so a resumed run is expected to pick what the uninterrupted run picked
  (tests/test_gpu_paths.py checks it on a GPU);
- `on`: cuDNN times its algorithms on the first call of every shape and keeps the
  fastest (expected to be the best the convolution baselines can do), but the choice
  depends on timing: a resumed run, or one next to other work, may pick another
  algorithm, whose different rounding breaks bit-identical resume.

Peak memory (`PeakMemory`, the run record's `memory`): on a GPU the caching allocator's
peak of allocated bytes per phase of a run (training steps, evaluation), reset after the
training and validation data are on the device; the graphs' private pool and the data are
reported beside it. On the CPU only the process's peak resident set exists.
"""

from __future__ import annotations

import os
import resource
import time

import torch

from harness import allocator
from harness.errors import UserError

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}   # the mixed-precision policies


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


def physical_gpu(index: int, visible: str | None = None) -> str:
    """The GPU that this process's `cuda:<index>` is: entry `index` of CUDA_VISIBLE_DEVICES
    (`visible`, default the environment's) as written there, an index of the whole machine
    or a GPU-/MIG- UUID; the index itself when the variable is unset."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    if visible is None:
        return str(index)
    entries = [e.strip() for e in visible.split(",") if e.strip()]
    if not 0 <= index < len(entries):
        raise UserError(f"cuda:{index} does not exist here: CUDA_VISIBLE_DEVICES={visible!r} "
                        f"makes {len(entries)} GPU(s) visible; use cuda:0..cuda:{len(entries) - 1}")
    return entries[index]


def apply_precision(policy: str, cudnn_benchmark: bool = False) -> dict:
    """Set the TF32 flags for `policy` and cuDNN's algorithm search, and return the
    effective flags (for the record)."""
    if policy not in PRECISIONS:
        raise UserError(f"unknown precision {policy!r}; use one of {', '.join(PRECISIONS)}")
    tf32 = policy == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = bool(cudnn_benchmark)
    return precision_flags(policy)


def precision_flags(policy: str | None = None) -> dict:
    """The arithmetic flags in force now."""
    autocast = AUTOCAST.get(policy)
    return {"policy": policy, "autocast": str(autocast).replace("torch.", "") if autocast else None,
            "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
            "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark)}


def activate(device: torch.device, policy: str, cudnn_benchmark: bool = False) -> dict:
    """Make `device` current (events, streams and synchronize refer to it) and apply the
    precision and cuDNN policies; on the CPU also the allocator policy
    (`harness.allocator`, the same for every method)."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        allocator.tune()
    return apply_precision(policy, cudnn_benchmark)


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


def tensor_mb(*tensors: torch.Tensor) -> float:
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


class PeakMemory:
    """The allocator's peak per phase of a run, on a GPU.

    `start(phase)` resets the peak counter, `stop(phase)` keeps the largest peak the phase
    reached over all its start/stop pairs (the counter is kept by the host when memory is
    allocated: reading it waits for nothing). A peak counts every tensor allocated at that
    moment, resident ones (data, model, optimizer state) included. On the CPU phases
    record nothing: the process's peak resident set cannot be reset.
    """

    def __init__(self, device: torch.device):
        self.device, self.cuda = device, device.type == "cuda"
        self.peaks: dict[str, float] = {}

    def start(self, phase: str) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def stop(self, phase: str) -> None:
        if self.cuda:
            mb = torch.cuda.max_memory_allocated(self.device) / 2**20
            self.peaks[phase] = max(self.peaks.get(phase, 0.0), mb)

    def record(self, data_mb: float, graph_pool_mb: float) -> dict:
        """The run record's `memory`: what each figure measures is in its name and the
        docs/running.md ("Memory"); `peak_mb` is the training figure the reports compare."""
        if not self.cuda:
            rss, kind = peak_memory(self.device)
            return {"kind": kind, "peak_mb": rss, "peak_is": "the whole process's peak RSS",
                    "data_mb": data_mb, "train_peak_mb": None, "eval_peak_mb": None,
                    "graph_pool_mb": 0.0}
        train = self.peaks.get("train", 0.0)
        return {"kind": "cuda max_memory_allocated", "peak_mb": train + graph_pool_mb,
                "peak_is": "train_peak_mb + graph_pool_mb", "data_mb": data_mb,
                "train_peak_mb": train, "eval_peak_mb": self.peaks.get("eval", 0.0),
                "graph_pool_mb": graph_pool_mb}


def describe(device: torch.device) -> str:
    """One line for humans: 'cuda:0 (NVIDIA H200)' or 'cpu'."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return "cpu"
