"""The environment record stored with every result: versions, device, code version, host."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch

from harness import allocator
from harness.device import physical_gpu
from harness.errors import UserError

PACKAGES = ("torch", "numpy", "scipy", "fvcore", "pandas", "seaborn", "submitit", "tqdm")
SLURM_VARS = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_PARTITION",
              "SLURM_RESTART_COUNT", "SLURM_CLUSTER_NAME")
REPO = Path(__file__).resolve().parent.parent


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_state(repo: Path = REPO) -> dict:
    """SHA and dirty flag of the code that ran (None outside a git checkout)."""
    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        sha = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
        return {"sha": sha, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}


def git_diff(repo: Path = REPO) -> str:
    try:
        return subprocess.run(["git", "-C", str(repo), "diff", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_model() -> str:
    """The CPU's model name (platform.processor() is empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(device: torch.device) -> dict:
    """The device that ran (always indexed on CUDA) and what its speed depends on."""
    info = {"device": str(device), "threads": torch.get_num_threads(),
            "cpu": cpu_model(), "cpu_count": os.cpu_count()}
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        info["device"] = f"cuda:{idx}"
        props = torch.cuda.get_device_properties(idx)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                    cudnn_benchmark=torch.backends.cudnn.benchmark,
                    # which physical GPU cuda:N is, when a sweep or SLURM restricted the process
                    cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
                    physical_gpu=_physical_gpu(idx))
    return info


def _physical_gpu(index: int) -> str | None:
    try:
        return physical_gpu(index)
    except UserError:     # CUDA_VISIBLE_DEVICES and the driver disagree: record nothing
        return None


def environment(device: torch.device) -> dict:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "packages": package_versions(),
        "git": git_state(),
        "slurm": {k: os.environ[k] for k in SLURM_VARS if k in os.environ},
        "allocator": allocator.state(),      # the CPU malloc policy in force
        **device_info(device),
    }
