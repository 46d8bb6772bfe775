"""Suite scheduling (issue 5): SLURM job arrays on a real single-node SLURM, preemption,
cancellation, status without accounting, bad suites, and the local executor.

The SLURM tests start a private cluster once per session with scripts/slurm-local.sh
(Debian's slurmctld/slurmd/munge on localhost, under a short /tmp directory, stopped by
the PIDs it recorded). They skip, saying why, when not root or when the packages are
missing; with SPECTRAL_BENCH_REQUIRE_SLURM=1 (set by .ci/run) they fail instead. A
"real SLURM" section in pytest's summary says whether they ran.

The cluster advertises 8 CPUs and 4 fake GPUs on the 2-core machine, so an array's %N
limit, not the node size, is what bounds how many tasks run at once. It has no
accounting, so `sacct` fails as on many small clusters and `status` takes the squeue
fallback for real. The only stand-ins are a `sacct`/`squeue` that hang or fail (to
check the timeouts and fallbacks) and canned sacct text for the parser: a cluster with
accounting cannot exist here without slurmdbd and MariaDB.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import submitit

from harness import files, schedule, store
from harness.__main__ import main
from harness.errors import UserError
from harness.spec import parse_assignments
from harness.suite import load_suite

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "slurm-local.sh"
SMOKE = REPO / "benchmarks" / "smoke.toml"
REQUIRE_ENV = "SPECTRAL_BENCH_REQUIRE_SLURM"
DIR_ENV = "SPECTRAL_BENCH_SLURM_DIR"


# ----------------------------------------------------------------------------- helpers

def write_suite(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body))
    return path


def wait_for(predicate, timeout: float, poll: float = 0.2, what: str = "condition"):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    cur = best = 0
    for _, delta in events:
        cur += delta
        best = max(best, cur)
    return best


def attempt_intervals(run_dirs) -> list[tuple[float, float]]:
    out = []
    for d in run_dirs:
        start = None
        for a in schedule.read_attempts(Path(d)):
            if a["event"] == "start":
                start = a["t"]
            elif a["event"] == "end" and start is not None:
                out.append((start, a["t"]))
                start = None
    return out


def squeue_ids() -> set[str]:
    out = subprocess.run(["squeue", "--states=all", "-h", "-r", "-o", "%i"], capture_output=True,
                         text=True, timeout=15, check=True).stdout
    return set(out.split())


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


# ----------------------------------------------------------------------------- real SLURM fixture

def slurm_unavailable() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "not root (slurmd must run as root to launch jobs)"
    missing = [c for c in ("slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "munged", "mungekey")
               if shutil.which(c) is None]
    if missing:
        return (f"SLURM packages missing ({', '.join(missing)} not on PATH); "
                f"install with: bash {SCRIPT.relative_to(REPO)} install")
    return None


def free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port > 64000:
            continue
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two free consecutive ports")


class SlurmSummary:
    """Adds a 'real SLURM' section to pytest's terminal summary."""

    def __init__(self, nodeids: set[str], header: str):
        self.nodeids, self.header = nodeids, header
        self.outcomes: dict[str, int] = {}

    def pytest_runtest_logreport(self, report):
        if report.nodeid not in self.nodeids:
            return
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            self.outcomes[report.outcome] = self.outcomes.get(report.outcome, 0) + 1

    def pytest_terminal_summary(self, terminalreporter):
        terminalreporter.section("real SLURM")
        terminalreporter.write_line(self.header)
        if self.outcomes:
            counts = ", ".join(f"{n} {k}" for k, n in sorted(self.outcomes.items()))
            ran = "RAN (not skipped)" if self.outcomes.get("passed") or self.outcomes.get("failed") \
                else "DID NOT RUN"
            terminalreporter.write_line(f"real-SLURM tests {ran}: {counts}")


@pytest.fixture(scope="session")
def slurm(request):
    """A private single-node SLURM for the whole test session; SLURM_CONF points at it."""
    nodeids = {i.nodeid for i in request.session.items if "slurm" in getattr(i, "fixturenames", ())}
    why = slurm_unavailable()
    if why:
        required = os.environ.get(REQUIRE_ENV) == "1"
        header = f"real-SLURM tests {'FAILED TO START' if required else 'SKIPPED'}: {why}"
        request.config.pluginmanager.register(SlurmSummary(set(), header), "spectral-bench-slurm-summary")
        if required:
            pytest.fail(f"{REQUIRE_ENV}=1 but the real SLURM cannot start: {why}")
        pytest.skip(f"real SLURM not available: {why}")
    directory = os.environ.get(DIR_ENV) or tempfile.mkdtemp(prefix="sbt-", dir="/tmp")
    port = free_port_pair()
    env = {**os.environ, "SLURM_LOCAL_CPUS": "8", "SLURM_LOCAL_GPUS": "4", "SLURM_LOCAL_PORT": str(port)}
    t0 = time.monotonic()
    res = subprocess.run(["bash", str(SCRIPT), "start", directory], env=env, capture_output=True, text=True,
                         timeout=120)
    startup = time.monotonic() - t0
    if res.returncode != 0:
        pytest.fail(f"scripts/slurm-local.sh start failed:\n{res.stderr[-3000:]}")
    version = subprocess.run(["slurmctld", "-V"], capture_output=True, text=True).stdout.strip()
    header = (f"single-node SLURM ({version}) in {directory}, port {port}, started in {startup:.1f} s "
              f"by scripts/slurm-local.sh")
    request.config.pluginmanager.register(SlurmSummary(nodeids, header), "spectral-bench-slurm-summary")
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = f"{directory}/etc/slurm.conf"
    try:
        yield {"dir": directory, "port": port, "startup_s": startup}
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", directory, "--rm"], capture_output=True, timeout=120)
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old


# ----------------------------------------------------------------------------- units (no SLURM)

def test_time_mem_and_option_merging(tmp_path):
    assert schedule.parse_time(90, "t") == 90
    assert schedule.parse_time("90", "t") == 90
    assert schedule.parse_time("2:00:00", "t") == 120
    assert schedule.parse_time("1-00:00:00", "t") == 1440
    assert schedule.parse_time("0:30:01", "t") == 31
    opts = schedule.slurm_options(
        {"partition": "cpu", "time": "1:00:00", "mem": "4g", "array_parallelism": 4,
         "sbatch": {"exclude": "node1"}, "setup": ["module load cuda"]},
        {"partition": "gpu", "gpus_per_node": 1, "sbatch": {"mail-type": "END"}, "setup": ["echo hi"],
         "qos": None})
    assert (opts.partition, opts.time, opts.mem, opts.gpus_per_node, opts.array_parallelism) == \
        ("gpu", 60, "4G", 1, 4)
    assert dict(opts.sbatch) == {"exclude": "node1", "mail-type": "END"}
    assert opts.setup == ("module load cuda", "echo hi")
    summary = schedule.sbatch_summary(opts)
    assert "--partition=gpu" in summary and "--exclude=node1" in summary
    for table, expect in [({"partiton": "x"}, "unknown SLURM option 'partiton'"),
                          ({"time": "soon"}, "suite.toml: slurm.time: expected minutes"),
                          ({"cpus_per_task": 0}, "slurm.cpus_per_task: must be >= 1"),
                          ({"mem": "lots"}, "expected memory like 16G"),
                          ({"gpus_per_node": "1"}, "expected an integer"),
                          ({"sbatch": {"bad name": 1}}, "bad sbatch option")]:
        with pytest.raises(UserError, match=expect):
            schedule.slurm_options(table, where="suite.toml: slurm")
    with pytest.raises(UserError, match="--sbatch expects NAME=VALUE"):
        parse_assignments(["exclude"], "--sbatch")


def test_chunking_ids_and_state_parsers():
    assert schedule.chunked(list(range(5)), 2) == [[0, 1], [2, 3], [4]]
    assert schedule.chunked(list(range(3)), 1001) == [[0, 1, 2]]
    assert schedule._expand_ids("12_[1-3,5%2]") == ["12_1", "12_2", "12_3", "12_5"]
    assert schedule._expand_ids("12_4") == ["12_4"]
    # `sacct -X --parsable2 --noheader -o JobID,State,ExitCode,Reason` as a cluster with accounting prints it
    sacct = ("12_0|COMPLETED|0:0|None\n12_1|CANCELLED by 0|0:0|None\n12_2|FAILED|1:0|NonZeroExitCode\n"
             "12_[3-5%2]|PENDING|0:0|JobArrayTaskLimit\n13|RUNNING|0:0|None\n")
    st = schedule.parse_sacct(sacct)
    assert st["12_1"]["state"] == "CANCELLED" and st["12_2"]["exit_code"] == "1:0"
    assert st["12_5"] == {"state": "PENDING", "exit_code": "0:0", "reason": "JobArrayTaskLimit"}
    assert st["13"]["state"] == "RUNNING" and st["12_0"]["reason"] == ""
    sq = schedule.parse_squeue("12_0|COMPLETED|None\n12_3|PENDING|JobArrayTaskLimit\n")
    assert sq["12_3"]["reason"] == "JobArrayTaskLimit" and sq["12_0"]["state"] == "COMPLETED"


def test_job_callable_is_small_and_checkpoint_returns_a_fresh_copy(tmp_path):
    import pickle
    import threading

    import cloudpickle

    job = schedule.RunJob(str(tmp_path), None, "cpu", grace_s=5)
    job._rt_stop, job._rt_worker = threading.Event(), threading.Thread(target=lambda: None)
    blob = cloudpickle.dumps(job)     # runtime state (thread, event) stays out of the pickle
    assert len(blob) < 2000
    back = pickle.loads(blob)
    assert back.results_dir == str(tmp_path) and not hasattr(back, "_rt_stop")
    spec = {"method": "cnn", "arch": "lenet5", "dataset": "synthetic"}
    delayed = job.checkpoint(spec)
    assert isinstance(delayed.function, schedule.RunJob) and delayed.function is not job
    assert delayed.args == (spec,) and job._rt_requeued
    assert isinstance(job, submitit.helpers.Checkpointable)


def test_dry_run_prints_plan_with_run_ids_and_done_count(tmp_path, capsys, monkeypatch):
    from harness.suite import load_suite

    monkeypatch.delenv("SLURM_CONF", raising=False)
    suite = load_suite(str(SMOKE))
    ids = [s.run_id for s in suite.specs]
    assert len(set(ids)) == 4
    # one run already finished (a record on disk is what counts)
    files.write_json(store.run_dir(tmp_path, suite.specs[0]) / "result.json", {"status": "complete"})
    assert main(["sweep", str(SMOKE), "--executor", "slurm", "--dry-run", "--results-dir", str(tmp_path),
                 "--partition", "gpu", "--time", "2:00:00"]) == 0
    out = capsys.readouterr().out
    assert "4 runs; 1 already done, 0 queued or running, 3 to submit" in out
    assert all(i in out for i in ids) and "dry run: nothing submitted" in out
    assert "--partition=gpu" in out and "--time=120" in out and "--mem=2G" in out
    assert "1 array" in out and "at most 2 tasks at once" in out
    assert not (tmp_path / "_suites" / "smoke-smoke" / "manifest.json").exists()
    assert main(["sweep", str(SMOKE), "--executor", "local", "--dry-run", "--results-dir",
                 str(tmp_path)]) == 0
    assert "executor local: at most 1 at once on cpu" in capsys.readouterr().out   # one per device


# ----------------------------------------------------------------------------- real SLURM

@pytest.fixture(scope="module")
def smoke_run(slurm, tmp_path_factory):
    """The smoke suite submitted once through the real CLI, then waited for."""
    results = tmp_path_factory.mktemp("smoke")
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "harness", "sweep", str(SMOKE), "--executor", "slurm",
                          "--partition", "debug", "--gpus-per-node", "1", "--results-dir", str(results)],
                         capture_output=True, text=True, timeout=180, cwd=REPO)
    assert out.returncode == 0, out.stderr
    submitted = time.monotonic()

    def all_done():
        rep = schedule.suite_status(str(SMOKE), results_dir=results)
        bad = [r for r in rep["rows"] if r.state in ("failed", "cancelled", "unknown")]
        assert not bad, schedule.format_status(rep)
        return rep if rep["counts"]["done"] == 4 else None

    report = wait_for(all_done, 240, poll=1.0, what="the 4 smoke runs")
    return {"results": results, "sweep_out": out.stdout, "report": report,
            "submit_to_done_s": time.monotonic() - t0, "cli_s": submitted - t0}


def test_smoke_suite_one_array_parallelism_2(smoke_run, capsys):
    results = smoke_run["results"]
    sdir = results / "_suites" / "smoke-smoke"
    manifest = json.loads((sdir / "manifest.json").read_text())
    (sub,) = manifest["submissions"]
    assert len(sub["arrays"]) == 1 and len(sub["tasks"]) == 4       # one array for the suite
    assert sub["git"]["sha"] and "dirty" in sub["git"]
    array = sub["arrays"][0]
    assert {t["job_id"] for t in sub["tasks"]} == {f"{array}_{i}" for i in range(4)}
    for t in sub["tasks"]:
        assert t["job_id"] in smoke_run["sweep_out"]
    script = (sdir / "logs" / array / f"{array}_submission.sh").read_text()
    assert "#SBATCH --array=0-3%2" in script                           # parallelism from [slurm]
    assert "#SBATCH --partition=debug" in script and "#SBATCH --gpus-per-node=1" in script
    assert "#SBATCH --mem=2G" in script and "#SBATCH --time=60" in script
    # all 4 records, complete
    recs = [store.read_record(Path(t["run_dir"])) for t in sub["tasks"]]
    assert all(r["status"] == "complete" and r["metrics"]["epochs_done"] == 1 for r in recs)
    assert {r["environment"]["slurm"]["SLURM_ARRAY_JOB_ID"] for r in recs} == {array}
    # never more than 2 at once, measured from the tasks' own start/end times
    intervals = attempt_intervals(t["run_dir"] for t in sub["tasks"])
    assert len(intervals) == 4 and max_overlap(intervals) <= 2
    # status through the CLI
    assert main(["status", str(SMOKE), "--results-dir", str(results)]) == 0
    out = capsys.readouterr().out
    assert "4 runs: 4 done, 0 failed" in out and "job states from squeue" in out
    # a second sweep submits nothing
    before = squeue_ids()
    assert main(["sweep", str(SMOKE), "--executor", "slurm", "--partition", "debug",
                 "--results-dir", str(results)]) == 0
    out = capsys.readouterr().out
    assert "4 already done" in out and "nothing to submit" in out
    assert squeue_ids() == before
    assert len(json.loads((sdir / "manifest.json").read_text())["submissions"]) == 1
    print(f"\nsmoke suite: CLI returned after {smoke_run['cli_s']:.1f} s; submission to 4 records "
          f"{smoke_run['submit_to_done_s']:.1f} s")


def test_status_falls_back_and_never_hangs(smoke_run, tmp_path, monkeypatch):
    results = smoke_run["results"]
    real_squeue = shutil.which("squeue")
    fake = tmp_path / "bin"
    fake.mkdir()
    # 1. a sacct that hangs: status gives up after its timeout and asks squeue
    (fake / "sacct").write_text("#!/bin/sh\nsleep 60\n")
    (fake / "sacct").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    t0 = time.monotonic()
    rep = schedule.suite_status(str(SMOKE), results_dir=results, timeout=1.0)
    assert time.monotonic() - t0 < 15
    assert rep["source"] == "squeue" and "sacct timed out after 1 s" in rep["notes"]
    assert rep["counts"]["done"] == 4
    # 2. no sacct at all, and a squeue that fails: the result files still answer
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "squeue").write_text("#!/bin/sh\necho 'slurm_load_jobs error: Unable to contact slurm "
                                 "controller' >&2\nexit 1\n")
    (bare / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", str(bare))
    rep = schedule.suite_status(str(SMOKE), results_dir=results, timeout=1.0)
    assert rep["source"] == "result files" and "sacct not found" in rep["notes"]
    assert any("squeue failed: slurm_load_jobs error" in n for n in rep["notes"])
    assert rep["counts"]["done"] == 4
    assert real_squeue  # the real one is untouched


def test_preemption_requeues_resumes_and_keeps_time(slurm, tmp_path):

    from harness.runner import execute
    from harness.suite import load_suite

    suite_file = write_suite(tmp_path / "preempt.toml", """
        [suite]
        name = "preempt"
        dataset = "synthetic"
        seeds = [0]
        [budgets.b]
        epochs = 20
        subset = 200
        [[runs]]
        method = "cnn"
        arch = "lenet5"
        [slurm]
        time = 60          # >= 50 minutes, so USR2 counts as preemption, not as a time-out
        cpus_per_task = 1
        """)
    results = tmp_path / "results"
    summary = schedule.sweep(str(suite_file), results_dir=results, slurm={"partition": "debug"},
                             out=lambda line: None)
    (task,) = summary["submission"]["tasks"]
    run_dir = Path(task["run_dir"])
    wait_for(lambda: (run_dir / "checkpoint.pt").exists(), 120, poll=0.05, what="the first epoch")
    job = submitit.SlurmJob(folder=summary["submission"]["folder"], job_id=task["job_id"])
    job._interrupt()                  # SIGTERM + USR2, as a preemption does
    t_int = time.monotonic()
    # the reference: the same spec uninterrupted, same thread count as the task (cpus_per_task=1)
    spec = load_suite(str(suite_file)).specs[0]
    reference = execute(spec, results_dir=tmp_path / "reference", progress=False, threads=1)
    record = wait_for(lambda: store.read_record(run_dir), 150, poll=0.5, what="the requeued run")
    requeue_to_done = time.monotonic() - t_int
    attempts = schedule.read_attempts(run_dir)
    ends = [a for a in attempts if a["event"] == "end"]
    assert [a["outcome"] for a in ends] == ["requeued", "complete"], attempts
    assert record["environment"]["slurm"].get("SLURM_RESTART_COUNT") == "1"
    log = Path(task["log"]).read_text()
    assert "this job is preempted" in log and "checkpoint written; requeueing" in log
    assert "resuming from epoch" in log
    # resumed from its checkpoint: same numbers as the uninterrupted run
    assert record["status"] == "complete" and record["metrics"] == reference["metrics"]
    # recorded time is not reset: both sessions' epochs are in it
    hist = record["timing"]
    assert hist["sessions"] == 2
    with open(run_dir / "history.csv") as f:
        per_epoch = [row["train_s"] for row in csv.DictReader(f)]
    assert len(per_epoch) == 20
    assert hist["train_s"] == pytest.approx(sum(float(x) for x in per_epoch), rel=1e-6)
    rep = schedule.suite_status(str(suite_file), results_dir=results)
    assert rep["rows"][0].state == "done" and "2 sessions" in rep["rows"][0].detail
    print(f"\npreemption: interrupt to resumed record {requeue_to_done:.1f} s")


def test_scancel_is_reported_with_log_and_arrays_are_chunked(slurm, tmp_path):
    suite_file = write_suite(tmp_path / "cancel.toml", """
        [suite]
        name = "cancel"
        dataset = "synthetic"
        seeds = [0, 1, 2]
        [budgets.b]
        epochs = 500
        subset = 200
        [[runs]]
        method = "cnn"
        arch = "lenet5"
        [slurm]
        time = 60
        cpus_per_task = 1
        """)
    results = tmp_path / "results"
    summary = schedule.sweep(str(suite_file), results_dir=results,
                             slurm={"partition": "debug", "max_array_size": 2}, out=lambda line: None)
    sub = summary["submission"]
    # 3 runs over MaxArraySize 2: two arrays, each indexed from 0
    assert len(sub["arrays"]) == 2
    assert [t["job_id"] for t in sub["tasks"]] == [f"{sub['arrays'][0]}_0", f"{sub['arrays'][0]}_1",
                                                   sub["arrays"][1]]

    def running():
        rep = schedule.suite_status(str(suite_file), results_dir=results)
        return rep if rep["counts"]["running"] == 3 else None

    wait_for(running, 120, poll=0.5, what="3 running tasks")
    victim = sub["tasks"][1]
    subprocess.run(["scancel", victim["job_id"]], check=True, timeout=15)
    t0 = time.monotonic()

    def cancelled():
        rep = schedule.suite_status(str(suite_file), results_dir=results)
        row = next(r for r in rep["rows"] if r.job_id == victim["job_id"])
        return rep if row.state == "cancelled" else None

    rep = wait_for(cancelled, 30, poll=0.5, what="status to report the cancellation")
    elapsed = time.monotonic() - t0
    row = next(r for r in rep["rows"] if r.job_id == victim["job_id"])
    assert row.log == victim["log"] and Path(row.log).exists()
    assert "CANCELLED" in Path(row.log).read_text()
    assert rep["counts"]["running"] == 2
    text = schedule.format_status(rep)
    assert "cancelled" in text and f"log: {victim['log']}" in text
    # re-sweeping resubmits only the cancelled run (the others are still running)
    again = schedule.sweep(str(suite_file), results_dir=results, slurm={"partition": "debug"},
                           out=lambda line: None)
    assert [t["run_id"] for t in again["submission"]["tasks"]] == [victim["run_id"]]
    ids = [t["job_id"] for t in sub["tasks"]] + [t["job_id"] for t in again["submission"]["tasks"]]
    subprocess.run(["scancel", *ids], timeout=15)
    print(f"\nscancel: status reported it cancelled after {elapsed:.1f} s")


BAD_SUITES = {
    "bad_toml": ("[suite\nname = 1\n", "invalid TOML"),
    "unknown_method": ('[suite]\ndataset = "synthetic"\n[[runs]]\nmethod = "nope"\n', "runs[0]"),
    "bad_value": ('[suite]\ndataset = "synthetic"\n[[runs]]\nmethod = "cnn"\nepochs = 0\n',
                  "--epochs must be >= 1"),
    "unknown_key": ('[suite]\ndataset = "synthetic"\n[[runs]]\nmethod = "cnn"\nepoch = 2\n',
                    "unknown keys ['epoch']"),
    "slurm_key": ('[suite]\ndataset = "synthetic"\n[[runs]]\nmethod = "cnn"\n[slurm]\npartiton = "gpu"\n',
                  "unknown SLURM option 'partiton'"),
    "slurm_value": ('[suite]\ndataset = "synthetic"\n[[runs]]\nmethod = "cnn"\n[slurm]\ntime = "soon"\n',
                    "slurm.time: expected minutes"),
}


def test_bad_suite_files_one_line_error_nothing_submitted(slurm, tmp_path, capsys):
    before = squeue_ids()
    for name, (body, expect) in BAD_SUITES.items():
        path = tmp_path / f"{name}.toml"
        path.write_text(body)
        assert main(["sweep", str(path), "--executor", "slurm", "--results-dir", str(tmp_path / "r")]) == 2
        err = one_line_error(capsys)
        assert expect in err and str(path) in err, (name, err)
    # bad command-line values and a partition sbatch refuses
    assert main(["sweep", str(SMOKE), "--results-dir", str(tmp_path / "r"), "--time", "soon"]) == 2
    assert "--time: expected minutes" in one_line_error(capsys)
    assert main(["sweep", str(SMOKE), "--results-dir", str(tmp_path / "r"), "--partition", "nope"]) == 2
    err = one_line_error(capsys)
    assert "invalid partition" in err.lower() and "nothing submitted" in err
    assert squeue_ids() == before
    assert not list((tmp_path / "r").rglob("manifest.json"))


# ----------------------------------------------------------------------------- local executor

@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """3 runs, the middle one failing at run time, run locally 2 at a time via the CLI."""
    tmp = tmp_path_factory.mktemp("local")
    suite_file = write_suite(tmp / "local.toml", """
        [suite]
        name = "local"
        dataset = "synthetic"
        [budgets.b]
        epochs = 1
        subset = 300
        [[runs]]
        method = "cnn"
        arch = "lenet5"
        seeds = [0]
        [[runs]]                 # fails when it loads its data: 30000 > the 20000 training images
        method = "cnn"
        arch = "lenet5"
        seeds = [0]
        val_size = 30000
        [[runs]]
        method = "cnn"
        arch = "lenet5"
        seeds = [1]
        """)
    results = tmp / "results"
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "harness", "sweep", str(suite_file), "--executor", "local",
                          "--max-parallel", "2", "--results-dir", str(results)],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    return {"suite": suite_file, "results": results, "out": out, "seconds": time.monotonic() - t0}


def test_local_failure_is_recorded_and_the_suite_goes_on(local_run, capsys):
    out = local_run["out"]
    assert out.returncode == 1, out.stderr          # a failure makes the exit status non-zero
    assert "local: 2 done, 0 diverged, 1 failed" in out.stdout
    assert "leaves no training images" in out.stdout
    rep = schedule.suite_status(str(local_run["suite"]), results_dir=local_run["results"])
    states = sorted(r.state for r in rep["rows"])
    assert states == ["done", "done", "failed"]
    failed = next(r for r in rep["rows"] if r.state == "failed")
    assert "val_size 30000 leaves no training images" in failed.detail
    assert failed.log and Path(failed.log).exists() and "UserError" in Path(failed.log).read_text()
    # the run after the failed one ran too
    assert rep["rows"][-1].state == "done"
    assert main(["status", str(local_run["suite"]), "--results-dir", str(local_run["results"])]) == 0
    text = capsys.readouterr().out
    assert "2 done" in text and "1 failed" in text and f"log: {failed.log}" in text


def test_local_sweep_shows_epochs_and_leaves_no_empty_folder(local_run):
    """Each finished epoch is a line with the sweep's progress (before: only start and done
    per run), and no empty folder is left behind (submitit's literal '%j')."""
    out = local_run["out"].stdout
    epochs = [ln for ln in out.splitlines() if ": epoch 1/1" in ln]
    assert len(epochs) == 2, out             # the two runs that trained; the failed one did not
    assert all("; sweep " in ln and "/3 epochs" in ln for ln in epochs), epochs
    empty = [d for d in local_run["results"].rglob("*") if d.is_dir() and not any(d.iterdir())]
    assert not empty, empty


def test_local_concurrency_limit_is_respected(local_run):
    rep = schedule.suite_status(str(local_run["suite"]), results_dir=local_run["results"])
    intervals = attempt_intervals(r.run_dir for r in rep["rows"])
    assert len(intervals) == 3
    assert max_overlap(intervals) == 2      # the limit, and it was used
    print(f"\nlocal suite (3 runs, 2 at a time): {local_run['seconds']:.1f} s")


def test_a_run_can_belong_to_some_budgets_only(tmp_path):
    suite = write_suite(tmp_path / "b.toml", """
        [suite]
        name = "b"
        dataset = "synthetic"
        [budgets.cpu]
        epochs = 1
        [budgets.gpu]
        epochs = 2
        [[runs]]
        method = "cnn"
        [[runs]]
        method = "cemnet"
        budgets = ["gpu"]
        """)
    assert [s.method for s in load_suite(str(suite), "cpu").specs] == ["cnn"]
    assert [s.method for s in load_suite(str(suite), "gpu").specs] == ["cnn", "cemnet"]
    bad = write_suite(tmp_path / "c.toml", suite.read_text().replace('["gpu"]', '["tpu"]'))
    with pytest.raises(UserError, match="budgets must be a list of this suite's budgets"):
        load_suite(str(bad), "cpu")
    none = write_suite(tmp_path / "d.toml", suite.read_text().replace('method = "cnn"',
                                                                      'method = "cnn"\nbudgets = ["gpu"]'))
    with pytest.raises(UserError, match="has no runs"):
        load_suite(str(none), "cpu")
