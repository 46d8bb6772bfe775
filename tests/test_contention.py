"""Cores available to a run, and the contention monitor's verdicts."""

import subprocess
import sys
import time

import pytest

from harness import contention
from harness.contention import Monitor


@pytest.fixture
def load(monkeypatch):
    """Set the load average the monitor will read next (and no runqueue waits, at 1 s
    of wall time per sample, unless a test sets `wait`)."""
    current = {"value": (0.5, 0.5, 0.5), "wait": 0.0, "clock": 0.0}
    monkeypatch.setattr(contention.os, "getloadavg", lambda: current["value"])
    monkeypatch.setattr(contention, "runqueue_wait_s", lambda: current["wait"])

    def clock():
        current["clock"] += 1.0
        return current["clock"]
    monkeypatch.setattr(contention.time, "perf_counter", clock)
    return current


def test_cgroup_quota_v2_and_v1(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert contention.cgroup_cpu_limit(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert contention.cgroup_cpu_limit(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("400000")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert contention.cgroup_cpu_limit(v1) == 4.0
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    assert contention.cgroup_cpu_limit(v1) is None


def test_available_cores_follow_affinity_and_quota(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.setattr(contention.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(contention, "cgroup_cpu_limit", lambda: None)
    monkeypatch.setattr(contention, "busy_elsewhere", lambda: 0)
    assert contention.available_cores() == 4
    assert contention.default_threads(parallel_runs=2) == 2
    assert contention.default_threads(parallel_runs=8) == 1
    monkeypatch.setattr(contention, "cgroup_cpu_limit", lambda: 2.5)
    assert contention.available_cores() == 2
    monkeypatch.setattr(contention, "cgroup_cpu_limit", lambda: 0.5)
    assert contention.available_cores() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")          # the user's choice wins
    assert contention.default_threads() == 3


def test_busy_elsewhere_reads_the_kernels_runnable_count(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  1 2 3\nprocs_running 4\nprocs_blocked 0\n")
    assert contention.busy_elsewhere(samples=3, interval_s=0, stat=stat) == 3
    stat.write_text("cpu  1 2 3\n")
    assert contention.busy_elsewhere(samples=1, stat=stat) is None
    assert contention.busy_elsewhere(stat=tmp_path / "missing") is None


def test_busy_elsewhere_sees_real_busy_processes():
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        time.sleep(0.5)
        assert contention.busy_elsewhere() >= 2
    finally:
        for p in loops:
            p.kill()
            p.wait()


def test_auto_threads_leave_out_busy_cores(monkeypatch):
    """On a busy machine auto takes only the free cores (at least 1 thread each);
    with an affinity mask the machine-wide count is not consulted."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.setattr(contention, "cgroup_cpu_limit", lambda: None)
    monkeypatch.setattr(contention.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(contention.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    busy = {"n": 0}
    monkeypatch.setattr(contention, "busy_elsewhere", lambda: busy["n"])
    assert contention.default_threads() == 4
    busy["n"] = 1
    assert contention.default_threads() == 3
    assert contention.default_threads(parallel_runs=2) == 1
    busy["n"] = 9
    assert contention.default_threads() == 1
    assert contention.default_threads(parallel_runs=2) == 1
    monkeypatch.setattr(contention.os, "sched_getaffinity", lambda pid: {0, 1})
    assert contention.default_threads() == 2          # our 2 cores: others' load is elsewhere
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "4")    # an allocation is not second-guessed
    assert contention.default_threads() == 4


def test_quiet_machine_is_reliable(load):
    m = Monitor(threads=2, cores=2, warn=pytest.fail)
    m.sample()
    load["value"] = (2.4, 1.2, 0.8)       # a run using both cores, plus a little
    m.sample([1.0, 1.1])
    s = m.summary([1.0, 1.1])
    assert not s["unreliable"] and s["reasons"] == []
    assert s["load_start"] == [0.5, 0.5, 0.5] and s["load_end"] == [2.4, 1.2, 0.8]
    assert s["epoch_train_s"] == {"min": 1.0, "median": 1.05, "max": 1.1}


def test_load_above_the_cores_is_flagged_and_warned_once(load):
    warnings = []
    m = Monitor(threads=2, cores=2, warn=warnings.append)
    m.sample()
    load["value"] = (4.5, 3.0, 2.0)
    m.sample([1.0])
    m.sample([1.0, 1.0])
    s = m.summary([1.0, 1.0])
    assert s["unreliable"] and s["load_max"] == 4.5
    assert len(warnings) == 1 and "4.50" in warnings[0] and "2 available cores" in warnings[0]


def test_uneven_epochs_and_oversubscription_are_flagged(load):
    m = Monitor(threads=4, cores=2, warn=lambda _: None)
    m.sample([1.0, 2.5])
    reasons = m.summary([1.0, 2.5])["reasons"]
    assert any("threads (4) exceed" in r for r in reasons)
    assert any("vary 2.5x" in r for r in reasons)


def test_state_survives_a_resume(load):
    m = Monitor(threads=1, cores=2)
    load["value"] = (3.0, 1.0, 1.0)
    m.sample()
    resumed = Monitor(threads=1, cores=2, warn=lambda _: None)
    resumed.restore(m.state())
    load["value"] = (0.2, 0.2, 0.2)
    resumed.sample([1.0])
    assert resumed.summary([1.0])["unreliable"]   # the first session's load still counts


def test_pinned_threads_are_used_recorded_and_part_of_the_run_id(tmp_path):
    import torch

    from harness.runner import execute
    from harness.suite import make_spec

    before = torch.get_num_threads()
    spec = make_spec("cnn", "lenet5", "synthetic", epochs=1, subset=200, threads=1)
    rec = execute(spec, results_dir=tmp_path, progress=False)
    assert rec["environment"]["threads"] == 1 and rec["contention"]["threads"] == 1
    assert torch.get_num_threads() == before                 # restored afterwards
    auto = make_spec("cnn", "lenet5", "synthetic", epochs=1, subset=200)
    assert auto.threads == 0 and auto.run_id != spec.run_id
    # auto takes the caller's share of the cores (a local sweep's), and records it
    rec = execute(auto, results_dir=tmp_path, progress=False, threads=1)
    assert rec["environment"]["threads"] == 1 and rec["spec"]["threads"] == 0


def test_local_sweep_divides_the_cores_among_its_runs(tmp_path, monkeypatch):
    from harness import schedule
    from helpers import InProcessExecutor

    monkeypatch.setattr(schedule.local, "default_threads", lambda parallel=1: 4 // parallel)
    monkeypatch.setattr(schedule.local.submitit, "LocalExecutor", InProcessExecutor)
    jobs = []
    real_submit = InProcessExecutor.submit
    monkeypatch.setattr(InProcessExecutor, "submit",
                        lambda self, fn, *a: (jobs.append(fn), real_submit(self, fn, *a))[1])
    suite = tmp_path / "s.toml"
    suite.write_text('[suite]\nname = "s"\ndataset = "synthetic"\nseeds = [0, 1]\n'
                     '[[runs]]\nmethod = "cnn"\nepochs = 1\nsubset = 200\n')
    summary = schedule.sweep(str(suite), executor="local", results_dir=tmp_path / "r",
                             devices=["cpu"], max_parallel=2, out=lambda _: None)
    assert len(summary["local"]["done"]) == 2
    assert [job.threads for job in jobs] == [2, 2]


def test_runqueue_waits_flag_a_run_the_load_average_has_not_caught_up_with(load):
    """A short run on a busy machine: the 1-minute load is still low, the scheduler says
    the run's 2 threads waited 0.6 of their 2 thread-seconds for a core."""
    m = Monitor(threads=2, cores=2, warn=lambda _: None)
    m.sample()
    load["wait"] = 0.6
    m.sample([1.0])
    s = m.summary([1.0])
    assert s["wait_share_max"] == pytest.approx(0.3) and s["unreliable"]
    assert any("waited for a core 30%" in r for r in s["reasons"])


def test_runqueue_wait_is_read_from_the_kernel():
    wait = contention.runqueue_wait_s()
    assert wait is None or wait >= 0.0
