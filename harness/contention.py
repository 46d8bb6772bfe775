"""Is a timing trustworthy? The CPU threads a run may use, and contention while it trains.

Threads. A run pins its torch intra-op thread count (`--threads`, part of the run id,
because the count changes both speed and, through the order of floating-point
reductions, the numbers). The default is the number of cores this process may use: its
CPU affinity (taskset, SLURM's cpuset) capped by a cgroup CPU quota (containers), less
the cores that other work keeps busy when the run starts (so a busy laptop gets 1
thread, not a collapse). A local sweep divides those cores among its parallel runs; a
SLURM task gets `cpus_per_task`.

Why pinning matters: with more busy threads than free cores, an OpenMP parallel region
waits at its barrier for a thread the kernel has descheduled, so every layer runs at
the pace of the slowest time slice. On a 2-core machine with a load of 4.5, two threads
gave 151-420 img/s where one gave about 4,000. Nothing can make a contended timing
clean, so the monitor below detects it and the record says so.

Contention. The 1-minute load average is read when training starts, after every epoch
and at the end. It lags by about a minute, so a short run on a busy machine can finish
before it shows; the kernel's scheduler statistics do not lag: the time this process's
threads spent runnable but waiting for a core (/proc/self/task/*/schedstat) is read at
the same points, as a share of the interval's thread-time. It counts runnable threads, this run's own included, so a run that uses
every core already brings it to about the core count: above that, something else
competed for the cores. The run is flagged `unreliable` (warned on stderr during the
run, recorded in `contention`, flagged in reports) when the load exceeds the cores, when
the run asks for more threads than there are cores, when its threads waited for a core more
than 10% of an interval's thread-time, or when its epochs' training times differ by more
than 2x. (A small margin above the core count is tolerated: see
LOAD_MARGIN.)
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

SPREAD_LIMIT = 2.0   # max/min of the per-epoch training times
WAIT_LIMIT = 0.10    # share of the run's thread-time spent waiting for a core
# The load average counts this run's own busy threads and brief system work (kernel
# threads, a shell), so a run that uses every core sits at or just above the core count
# on an idle machine. Only a load a quarter above the cores says that other work took a
# real share of them.
LOAD_MARGIN = 1.25
# Thread counts read back from a checkpoint (a file in a shared directory) above this
# are not used: OpenMP allocates memory per thread.
MAX_THREADS = 1024


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by a cgroup quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us`), or None."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 else None
    except (OSError, ValueError):
        return None


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:          # not Linux
        n = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit:
        n = min(n, math.floor(limit)) if limit >= 1 else 1
    return max(1, n)


def busy_elsewhere(samples: int = 5, interval_s: float = 0.04,
                   stat: Path = Path("/proc/stat")) -> int | None:
    """Cores busy with other work right now: the kernel's count of runnable threads
    (/proc/stat `procs_running`, median of a few samples, less the thread reading it),
    or None where the kernel does not say. Unlike the load average it does not lag."""
    counts = []
    for i in range(samples):
        try:
            text = stat.read_text()
        except OSError:
            return None
        counts += [int(line.split()[1]) for line in text.splitlines()
                   if line.startswith("procs_running ")]
        if i + 1 < samples:
            time.sleep(interval_s)
    return max(0, statistics.median_low(counts) - 1) if counts else None


def default_threads(parallel_runs: int = 1) -> int:
    """Threads per run (`--threads auto`) when `parallel_runs` share this process's cores.

    OMP_NUM_THREADS, when set, is the user's choice; inside a SLURM task the allocation
    is SLURM_CPUS_PER_TASK (also when the cluster does not bind tasks to their CPUs).
    Otherwise the cores are shared out, less those busy with other work when the process
    may use the whole machine: a thread that must wait for a core stalls every OpenMP
    barrier, so on a busy machine fewer threads are faster (figures in docs/running.md,
    "Threads and contention"). This degrades gracefully: an idle machine gets every
    core, a busy one at least 1 thread each.
    """
    parallel_runs = max(1, parallel_runs)
    for var in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK"):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return max(1, int(value) // parallel_runs)
    cores = available_cores()
    busy = busy_elsewhere() if cores == (os.cpu_count() or cores) else None
    # With an affinity mask or quota, machine-wide counts say nothing of our cores. The
    # count used is recorded (contention.threads); nothing is printed here, because this
    # runs before the run's input is checked (an error must stay the only stderr line).
    if busy:
        cores = max(1, cores - busy)
    return max(1, cores // parallel_runs)


@contextlib.contextmanager
def pinned_threads(n: int):
    """Run the body with `n` torch intra-op threads, then restore the previous count."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(previous)


def runqueue_wait_s() -> float | None:
    """Seconds this process's threads have spent runnable but waiting for a core
    (/proc/<pid>/task/*/schedstat, field 2), or None where the kernel does not say."""
    total = 0
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/schedstat") as f:
                total += int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return total / 1e9


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:                 # not available on this platform
        return []


class Monitor:
    """Samples the load during a run and judges whether its timings are trustworthy.

    `state()` / `Monitor.from_state` carry the samples across a resume.
    """

    def __init__(self, threads: int, cores: int | None = None,
                 warn: Callable[[str], None] | None = None):
        self.threads, self.cores = threads, cores or available_cores()
        self.threads_by_session = [threads]     # a resume adds one entry
        self.samples: list[list[float]] = []
        self.wait_shares: list[float] = []      # per interval between samples
        self._last: tuple[float, float] | None = None
        self.warned: set[str] = set()
        self.warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr, flush=True))

    def state(self) -> dict:
        return {"samples": self.samples, "wait_shares": self.wait_shares,
                "threads_by_session": self.threads_by_session}

    def restore(self, state: dict | None) -> int:
        """Carry the samples across a resume, and the thread count: returns the count of
        the run's first session, which the resumed run must use again (reductions then
        split the same way, so it ends with an uninterrupted run's numbers, whatever auto
        would pick today). Checkpoints without it (older versions) keep today's count."""
        state = state if isinstance(state, dict) else {}
        self.samples = [list(s) for s in state.get("samples", [])]
        self.wait_shares = [float(w) for w in state.get("wait_shares", [])]
        earlier = state.get("threads_by_session")
        if isinstance(earlier, list) and earlier and all(
                type(t) is int and 1 <= t <= MAX_THREADS for t in earlier):
            self.threads = earlier[0]
            self.threads_by_session = earlier + [self.threads]
        return self.threads

    def sample(self, epoch_train_s: list[float] | None = None) -> None:
        """Read the load now (start, each epoch end, end); warn once per kind of problem."""
        load = load_average()
        if load:
            self.samples.append(load)
        wait, now = runqueue_wait_s(), time.perf_counter()
        if wait is not None:
            if self._last is not None and now > self._last[1]:
                self.wait_shares.append(round((wait - self._last[0])
                                              / ((now - self._last[1]) * self.threads), 4))
            self._last = (wait, now)
        for reason in self.reasons(epoch_train_s or []):
            kind = reason.split(" ")[0]
            if kind not in self.warned:
                self.warned.add(kind)
                self.warn(f"timing unreliable: {reason}")

    def reasons(self, epoch_train_s: list[float]) -> list[str]:
        out = []
        if self.threads > self.cores:
            out.append(f"threads ({self.threads}) exceed the {self.cores} available cores")
        peak = max((s[0] for s in self.samples), default=None)
        if peak is not None and peak > LOAD_MARGIN * self.cores:
            out.append(f"load average {peak:.2f} exceeded the {self.cores} available cores "
                       f"(by more than {LOAD_MARGIN - 1:.0%})")
        share = self.wait_share()
        if share is not None and share > WAIT_LIMIT:
            out.append(f"runqueue waits: the run's threads waited for a core {share:.0%} of the time")
        times = [t for t in epoch_train_s if t and t > 0]
        if len(times) >= 2 and max(times) / min(times) > SPREAD_LIMIT:
            out.append(f"epoch times vary {max(times) / min(times):.1f}x "
                       f"({min(times):.2f}-{max(times):.2f} s)")
        return out

    def wait_share(self) -> float | None:
        """The largest share of thread-time spent waiting for a core, over the intervals."""
        return max(self.wait_shares) if self.wait_shares else None

    def summary(self, epoch_train_s: list[float]) -> dict:
        """The record's `contention` entry."""
        times = [t for t in epoch_train_s if t is not None]
        reasons = self.reasons(times)
        return {
            "cores": self.cores, "threads": self.threads,
            "threads_by_session": self.threads_by_session,
            "load_start": self.samples[0] if self.samples else None,
            "load_end": self.samples[-1] if self.samples else None,
            "load_max": max((s[0] for s in self.samples), default=None),
            "wait_share_max": self.wait_share(),
            "epoch_train_s": {"min": min(times), "median": statistics.median(times),
                              "max": max(times)} if times else None,
            "unreliable": bool(reasons), "reasons": reasons,
        }
