"""GPU code paths without a GPU: device selection of `run`, `run --suite`, the local
executor (slots mapped through CUDA_VISIBLE_DEVICES) and the SLURM task, the precision
and cuDNN policies, the CUDA timer, the step benchmark's timing, memory by phase, and
`check` (which on a GPU expects graph mode). The CUDA-only tests at the end run on a GPU
(issue 23) and skip here.

CI has no GPU, so `fake_cuda` simulates one: it replaces torch.cuda's device queries
with a 2-GPU machine whose `set_device` performs torch's real index check (a device
without an index raises ValueError, exactly as on a GPU). Training itself cannot run on
a fake GPU, so `train` is wrapped: the wrapper records the device the harness hands to
training, makes it current (the call that crashed on a real GPU), then trains on the
CPU. What is mocked: torch.cuda's device queries, events and synchronize, and
submitit's LocalExecutor (run in-process, so that the fake GPU is visible to the job).
"""

from __future__ import annotations

import shlex
import types

import pytest
import torch
from harness import runner, schedule, store
from harness.__main__ import main
from harness.device import Timer, apply_precision, resolve_device
from harness.env import device_info
from harness.errors import UserError
from harness.runner import execute
from harness.suite import make_spec
from helpers import SIMULATED_GPU as GPU_NAME
from helpers import InProcessExecutor, install_fake_cuda


@pytest.fixture
def fake_cuda(monkeypatch):
    """A 2-GPU machine as far as the harness's device code can tell."""
    return install_fake_cuda(monkeypatch)


@pytest.fixture
def handed(monkeypatch):
    """Devices the harness hands to training; training then runs on the CPU."""
    real_train = runner.train
    devices = []

    def train_on_cpu(model, data, spec, device, run_dir, **kw):
        devices.append(device)
        torch.cuda.set_device(device)   # what the training loop does first on a GPU
        return real_train(model, data, spec, torch.device("cpu"), run_dir, **kw)

    monkeypatch.setattr(runner, "train", train_on_cpu)
    return devices


def tiny(**kw):
    return make_spec("cnn", "lenet5", "synthetic", **{"epochs": 1, "subset": 200, **kw})


def test_device_names_resolve_to_an_indexed_gpu(fake_cuda):
    assert resolve_device("auto") == torch.device("cuda:0")
    assert resolve_device(None) == torch.device("cuda:0")
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    fake_cuda.current = 1
    assert resolve_device("cuda") == torch.device("cuda:1")   # the current device
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError, match="has 2 GPU"):
        resolve_device("cuda:2")
    with pytest.raises(UserError, match="device .tpu."):
        resolve_device("tpu")


def test_without_cuda_a_cuda_device_is_a_user_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(UserError, match="CUDA is not available"):
        resolve_device("cuda")


@pytest.mark.parametrize("flag, expected", [(None, "cuda:0"), ("auto", "cuda:0"), ("cuda", "cuda:0"),
                                            ("cuda:1", "cuda:1")])
def test_run_hands_training_an_indexed_device_and_records_the_gpu(fake_cuda, handed, tmp_path,
                                                                   capsys, flag, expected):
    argv = ["run", "--method", "cnn", "--dataset", "synthetic", "--epochs", "1", "--subset", "200",
            "--quiet", "--results-dir", str(tmp_path)] + (["--device", flag] if flag else [])
    assert main(argv) == 0, capsys.readouterr().err
    assert [str(d) for d in handed] == [expected]
    rec = store.read_record(store.run_dir(tmp_path, tiny()))
    assert rec["status"] == "complete"
    assert rec["environment"]["device"] == expected and rec["environment"]["gpu"] == GPU_NAME


def test_run_suite_hands_training_an_indexed_device(fake_cuda, handed, tmp_path, capsys):
    suite = tmp_path / "s.toml"
    suite.write_text('[suite]\nname = "s"\ndataset = "synthetic"\nseeds = [0, 1]\n'
                     '[[runs]]\nmethod = "cnn"\nepochs = 1\nsubset = 200\n')
    assert main(["run", "--suite", str(suite), "--device", "cuda", "--quiet",
                 "--results-dir", str(tmp_path / "r")]) == 0, capsys.readouterr().err
    assert [str(d) for d in handed] == ["cuda:0", "cuda:0"]


def test_local_sweep_binds_each_job_to_its_gpu(fake_cuda, handed, tmp_path, monkeypatch):
    monkeypatch.setattr(schedule.local.submitit, "LocalExecutor", InProcessExecutor)
    InProcessExecutor.submitted = []
    suite = tmp_path / "s.toml"
    suite.write_text('[suite]\nname = "s"\ndataset = "synthetic"\nseeds = [0, 1]\n'
                     '[[runs]]\nmethod = "cnn"\nepochs = 1\nsubset = 200\n')
    lines = []
    summary = schedule.sweep(str(suite), executor="local", results_dir=tmp_path / "r",
                             devices=["cuda:0", "cuda:1"], out=lines.append)
    assert summary["local"]["failed"] == [], lines
    assert len(summary["local"]["done"]) == 2
    # each job sees only its own GPU (CUDA_VISIBLE_DEVICES), where it is cuda:0
    assert [shlex.split(p["python"])[2] for p in InProcessExecutor.submitted] == [
        "CUDA_VISIBLE_DEVICES=0", "CUDA_VISIBLE_DEVICES=1"]
    assert [str(d) for d in handed] == ["cuda:0", "cuda:0"]


@pytest.mark.parametrize("parent,expected", [
    ("2,3", ["2", "3"]),                                     # e.g. inside a SLURM allocation
    ("GPU-8d0f2a6e-1b2c-4d5e-9f00-aa11bb22cc33,MIG-GPU-5e6f7a8b-0000-1111-2222-333344445555/1/0",
     ["GPU-8d0f2a6e-1b2c-4d5e-9f00-aa11bb22cc33", "MIG-GPU-5e6f7a8b-0000-1111-2222-333344445555/1/0"]),
])
def test_local_sweep_maps_slots_through_the_parents_visible_gpus(fake_cuda, handed, tmp_path,
                                                                 monkeypatch, parent, expected):
    """In a shell where CUDA_VISIBLE_DEVICES=2,3, this process's cuda:1 is physical GPU 3:
    the job for cuda:1 must see GPU 3 (not GPU 1), and the manifest names it."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", parent)
    monkeypatch.setattr(schedule.local.submitit, "LocalExecutor", InProcessExecutor)
    InProcessExecutor.submitted = []
    suite = tmp_path / "s.toml"
    suite.write_text('[suite]\nname = "s"\ndataset = "synthetic"\nseeds = [0, 1]\n'
                     '[[runs]]\nmethod = "cnn"\nepochs = 1\nsubset = 200\n')
    lines = []
    summary = schedule.sweep(str(suite), executor="local", results_dir=tmp_path / "r",
                             devices=["cuda:0", "cuda:1"], out=lines.append)
    assert summary["local"]["failed"] == [], lines
    assert [shlex.split(p["python"])[2] for p in InProcessExecutor.submitted] == [
        f"CUDA_VISIBLE_DEVICES={gpu}" for gpu in expected]
    manifest = schedule.read_manifest(schedule.suite_dir(tmp_path / "r", summary["suite"]))
    tasks = manifest["submissions"][-1]["tasks"]
    assert [(t["device"], t["physical_gpu"]) for t in tasks] == list(zip(["cuda:0", "cuda:1"],
                                                                         expected))
    assert any(f"on cuda:1 (GPU {expected[1]})" in line for line in lines), lines


def test_a_local_job_sees_the_gpu_its_slot_names(tmp_path, monkeypatch):
    """A real submitit job (a subprocess) started with the slot's parameters: its
    CUDA_VISIBLE_DEVICES is the parent's entry for the slot, a UUID included."""
    import os

    from harness.schedule.local import slot_device, slot_executor
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaaa,GPU-bbbb")
    seen = []
    for dev in ("cuda:1", "cpu"):
        executor = slot_executor(tmp_path / dev.replace(":", "-"), slot_device(dev)[0], 2)
        seen.append(executor.submit(os.getenv, "CUDA_VISIBLE_DEVICES").result())
    assert seen == ["GPU-bbbb", ""]


def test_physical_gpu_reads_indices_and_uuids(monkeypatch):
    from harness.device import physical_gpu
    assert physical_gpu(1, "2,3") == "3"
    assert physical_gpu(0, " GPU-ab12 , MIG-cd34") == "GPU-ab12"
    assert physical_gpu(1, "GPU-ab12,MIG-GPU-cd34/1/0") == "MIG-GPU-cd34/1/0"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert physical_gpu(3) == "3"                   # unset: every GPU of the machine
    with pytest.raises(UserError, match="makes 2 GPU"):
        physical_gpu(2, "2,3")
    with pytest.raises(UserError, match="makes 0 GPU"):
        physical_gpu(0, "")


def test_local_sweep_refuses_a_gpu_that_does_not_exist(fake_cuda, tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text('[suite]\nname = "s"\ndataset = "synthetic"\n[[runs]]\nmethod = "cnn"\n')
    with pytest.raises(UserError, match="has 2 GPU"):
        schedule.sweep(str(suite), executor="local", results_dir=tmp_path, devices=["cuda:5"],
                       out=lambda _: None)


def test_slurm_task_resolves_auto_and_resumes_on_the_gpu(fake_cuda, handed, tmp_path):
    spec = tiny(epochs=2)
    # a first task stopped after one epoch (preemption), then the requeued task
    assert execute(spec, results_dir=tmp_path, device="auto", progress=False, stop_after=1) is None
    out = schedule.RunJob(str(tmp_path), device="auto")(spec.to_dict())
    assert out["status"] == "complete"
    assert [str(d) for d in handed] == ["cuda:0", "cuda:0"]
    rec = store.read_record(store.run_dir(tmp_path, spec))
    assert rec["timing"]["sessions"] == 2 and rec["environment"]["device"] == "cuda:0"


def test_environment_names_the_indexed_gpu(fake_cuda, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    info = device_info(torch.device("cuda:1"))
    assert info["device"] == "cuda:1" and info["gpu"] == GPU_NAME
    assert info["cuda_visible_devices"] == "2,3" and info["physical_gpu"] == "3"


def test_cuda_timer_reads_events_after_one_synchronization(fake_cuda, monkeypatch):
    class Event:
        clock = 0.0

        def __init__(self, enable_timing=False):
            self.t = None

        def record(self):
            Event.clock += 5.0          # each record is 5 ms after the previous one
            self.t = Event.clock

        def elapsed_time(self, end):
            return end.t - self.t

    monkeypatch.setattr(torch.cuda, "Event", Event)
    timer = Timer(torch.device("cuda:0"))
    for _ in range(3):
        timer.start()
        timer.stop()
    assert fake_cuda.syncs == 0              # nothing waits for the GPU between steps
    assert timer.total() == pytest.approx(0.015)
    assert fake_cuda.syncs == 1


@pytest.fixture
def restore_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_precision_policy_sets_cudnn_and_cublas_together(restore_tf32):
    flags = apply_precision("tf32")
    assert flags["tf32_matmul"] and flags["tf32_cudnn"]
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    flags = apply_precision("fp32")
    assert not flags["tf32_matmul"] and not flags["tf32_cudnn"]
    assert not torch.backends.cudnn.allow_tf32   # PyTorch's own default is True here


def test_precision_is_recorded_and_separates_runs(tmp_path, restore_tf32):
    torch.backends.cudnn.allow_tf32 = True          # PyTorch's default: the run must turn it off
    rec = execute(tiny(), results_dir=tmp_path, progress=False)
    assert rec["spec"]["precision"] == "fp32"
    assert rec["environment"]["precision"]["policy"] == "fp32"
    assert rec["environment"]["precision"]["tf32_cudnn"] is False
    tf32 = tiny(precision="tf32")
    assert tf32.run_id != tiny().run_id
    assert make_spec("cnn", "lenet5", "synthetic", {"precision": "tf32"}) == \
        make_spec("cnn", "lenet5", "synthetic", precision="tf32")


def test_unknown_precision_is_one_line(capsys):
    assert main(["run", "--dataset", "synthetic", "--set", "precision=bf17"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "precision" in err[0] and "fp32" in err[0]


def test_check_command_passes_on_cpu(capsys):
    """The self-check itself: every method, a local sweep and a resume (CI runs this)."""
    assert main(["check", "--device", "cpu"]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    rows = [ln for ln in out.splitlines() if ln.startswith(("PASS", "FAIL"))]
    assert rows and all(r.startswith("PASS") for r in rows)
    assert any(" sweep " in r for r in rows) and any(" resume " in r for r in rows)


# ------------------------------------------------------------------- cuDNN policy
@pytest.fixture
def restore_cudnn():
    saved = torch.backends.cudnn.benchmark
    yield
    torch.backends.cudnn.benchmark = saved


def test_cudnn_benchmark_policy_is_applied_recorded_and_separates_runs(tmp_path, restore_cudnn,
                                                                       capsys):
    torch.backends.cudnn.benchmark = True          # whatever was set before: the run decides
    rec = execute(tiny(), results_dir=tmp_path, progress=False)
    assert rec["environment"]["precision"]["cudnn_benchmark"] is False
    assert torch.backends.cudnn.benchmark is False
    assert "cudnn_benchmark" not in rec["spec"]    # the default is left out: ids unchanged
    assert main(["run", "--method", "cnn", "--dataset", "synthetic", "--epochs", "1",
                 "--subset", "200", "--quiet", "--set", "cudnn_benchmark=on",
                 "--results-dir", str(tmp_path)]) == 0, capsys.readouterr().err
    on = tiny(cudnn_benchmark=True)
    assert make_spec("cnn", "lenet5", "synthetic", {"cudnn_benchmark": "on"}, epochs=1,
                     subset=200) == on
    assert on.run_id != tiny().run_id
    rec_on = store.read_record(store.run_dir(tmp_path, on))
    assert rec_on["spec"]["cudnn_benchmark"] is True
    assert rec_on["environment"]["precision"]["cudnn_benchmark"] is True
    # reports never put the two policies in one comparison row
    from reports.aggregate import run_row
    assert run_row(tmp_path, rec)["precision"] == "fp32"
    assert run_row(tmp_path, rec_on)["precision"] == "fp32, cudnn_benchmark on"
    capsys.readouterr()
    assert main(["run", "--dataset", "synthetic", "--set", "cudnn_benchmark=maybe"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cudnn_benchmark" in err[-1]


# ------------------------------------------------------------------- memory by phase
def test_cpu_record_says_what_its_memory_figures_measure(tmp_path):
    from harness import data as datasets
    spec = tiny()
    rec = execute(spec, results_dir=tmp_path, progress=False)
    d = datasets.load("synthetic", None, val_size=spec.val_size, subset=spec.subset)
    on_device = sum(t.numel() * t.element_size() for t in (d.x_train, d.y_train, d.x_val, d.y_val))
    memory = rec["memory"]
    assert memory["kind"] == "process peak RSS" and memory["peak_mb"] > 0
    assert memory["data_mb"] == pytest.approx(on_device / 2**20)
    # the process's peak RSS cannot be split into phases, and a CPU run has no graph
    assert memory["train_peak_mb"] is None and memory["eval_peak_mb"] is None
    assert memory["graph_pool_mb"] == 0 and memory["peak_is"]


def test_peaks_are_kept_per_phase(fake_cuda, monkeypatch):
    """The allocator's peak counter, simulated: evaluation at batch 1000 must not become the
    training peak, and a peak is the largest over all entries of its phase."""
    from harness.device import PeakMemory
    alloc = types.SimpleNamespace(now=100.0, peak=100.0)      # MiB: the data are resident

    def allocate(mb):
        alloc.now += mb
        alloc.peak = max(alloc.peak, alloc.now)
        alloc.now -= mb                                        # freed again at once

    def reset(device=None):
        alloc.peak = alloc.now
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", reset)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: alloc.peak * 2**20)
    meter = PeakMemory(torch.device("cuda:0"))
    for step_mb, eval_mb in ((30, 500), (40, 450)):           # two epochs
        meter.start("train")
        allocate(step_mb)
        meter.stop("train")
        meter.start("eval")
        allocate(eval_mb)
        meter.stop("eval")
    rec = meter.record(data_mb=100.0, graph_pool_mb=25.0)
    assert rec["train_peak_mb"] == 140 and rec["eval_peak_mb"] == 600
    assert rec["peak_mb"] == 165 and rec["peak_is"] == "train_peak_mb + graph_pool_mb"
    assert rec["kind"] == "cuda max_memory_allocated" and rec["data_mb"] == 100


# ------------------------------------------------------------------- check on a GPU
def gpu_record(tmp_path, **timing):
    """A complete record as a GPU run writes it (a CPU run's, with the GPU's fields)."""
    rec = execute(tiny(), results_dir=tmp_path, progress=False)
    rec["environment"].update(device="cuda:0", gpu=GPU_NAME)
    rec["memory"] = {"kind": "cuda max_memory_allocated", "peak_mb": 60.0, "data_mb": 1.0,
                     "train_peak_mb": 40.0, "eval_peak_mb": 90.0, "graph_pool_mb": 20.0,
                     "peak_is": "train_peak_mb + graph_pool_mb"}
    rec["timing"].update(timing)
    return rec


def test_check_fails_a_gpu_run_that_fell_back_to_eager(tmp_path):
    from harness.check import record_problems
    gpu = torch.device("cuda:0")
    assert record_problems(gpu_record(tmp_path, step_mode="graph", step_mode_reason=""), gpu) == []
    eager = gpu_record(tmp_path, step_mode="eager", step_mode_reason="capture failed: RuntimeError: x")
    assert any("not as a CUDA graph: capture failed" in p for p in record_problems(eager, gpu))
    no_pool = gpu_record(tmp_path, step_mode="graph", step_mode_reason="")
    no_pool["memory"]["graph_pool_mb"] = 0.0
    assert any("graph pool" in p for p in record_problems(no_pool, gpu))
    off = gpu_record(tmp_path, step_mode="eager", step_mode_reason="graph=off")
    off["spec"]["graph"] = "off"
    assert record_problems(off, gpu) == []


def test_check_runs_reach_the_capture():
    """Each check epoch has the eager warm-up steps, the capture and a replay on a GPU."""
    from harness import check
    from harness.graph import WARMUP_STEPS
    assert check.SUBSET // check.BATCH >= WARMUP_STEPS + 2


# ------------------------------------------------------------------- the step benchmark
def test_step_benchmark_does_not_wait_for_the_gpu_between_steps(fake_cuda, monkeypatch):
    from measure import steps as step_bench

    class Event:
        def __init__(self, enable_timing=False):
            pass

        def record(self):
            pass

        def elapsed_time(self, end):
            return 1.0

    monkeypatch.setattr(torch.cuda, "Event", Event)
    calls = []
    per_step, n, _ = step_bench.timed(lambda: calls.append(fake_cuda.syncs), torch.device("cuda:0"),
                                      warmup=1, repeats=10, budget=1e9)
    assert n == 3 * 10 and len(calls) == 1 + n
    # within a block of 10 steps nothing synchronizes; one sync before and one after it
    assert len(set(calls[1:11])) == 1 and fake_cuda.syncs <= 1 + 2 * 3
    assert per_step == pytest.approx(1.0 / 1000 / 10)


# ------------------------------------------------------------------- progress display
def test_progress_does_not_read_the_loss_between_steps(tmp_path, monkeypatch, capsys):
    """With progress shown, the number of host reads in a run does not grow with the number
    of steps (on a GPU each read of a device value waits for it)."""
    real_item = torch.Tensor.item
    reads = []

    def item(self):
        reads.append(1)
        return real_item(self)
    monkeypatch.setattr(torch.Tensor, "item", item)
    counts = []
    for batch in (120, 2):                           # 2 and 120 steps per epoch
        reads.clear()
        execute(tiny(subset=240, batch_size=batch), results_dir=tmp_path, progress=True)
        counts.append(len(reads))
    capsys.readouterr()
    assert counts[0] == counts[1], counts


# ------------------------------------------------------------------- on a real GPU
# These run on a GPU (issue 23's GPU-proof run) and skip here.
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU; none here")


@needs_cuda
def test_gpu_run_records_memory_by_phase(tmp_path):
    """Training peak after the data are on the device (so at least the data), evaluation
    apart, the graph's pool beside them (and none with graph=off)."""
    from harness import data as datasets
    for graph in ("auto", "off"):
        spec = tiny(epochs=2, subset=600, graph=graph)
        rec = execute(spec, results_dir=tmp_path, device="cuda", progress=False)
        d = datasets.load("synthetic", None, val_size=spec.val_size, subset=spec.subset)
        data_mb = sum(t.numel() * t.element_size()
                      for t in (d.x_train, d.y_train, d.x_val, d.y_val)) / 2**20
        m = rec["memory"]
        assert m["kind"] == "cuda max_memory_allocated"
        assert m["data_mb"] == pytest.approx(data_mb)
        assert m["train_peak_mb"] > m["data_mb"] and m["eval_peak_mb"] > m["data_mb"]
        assert m["peak_mb"] == pytest.approx(m["train_peak_mb"] + m["graph_pool_mb"])
        if graph == "auto":
            assert rec["timing"]["step_mode"] == "graph" and m["graph_pool_mb"] > 0
        else:
            assert m["graph_pool_mb"] == 0


@needs_cuda
def test_resume_is_bit_identical_under_the_default_cudnn_policy(tmp_path):
    """cudnn_benchmark off (the default): a run stopped after epoch 1 and resumed ends with
    the weights of an uninterrupted run, bit for bit. Two uninterrupted runs are compared
    first: if even they differ, the GPU's default algorithms are not deterministic and no
    resume can be bit-identical (graph=off: eager steps in both, only cuDNN's choice
    and the resume are under test)."""
    from harness.train import load_checkpoint
    spec = tiny(epochs=3, subset=600, graph="off")
    assert spec.cudnn_benchmark is False
    for name in ("a", "b", "resumed"):
        if name == "resumed":
            assert execute(spec, results_dir=tmp_path / name, device="cuda", progress=False,
                           stop_after=1) is None
        execute(spec, results_dir=tmp_path / name, device="cuda", progress=False)
    weights = {name: load_checkpoint(store.run_dir(tmp_path / name, spec) / "checkpoint.pt")["model"]
               for name in ("a", "b", "resumed")}

    def same(x, y):
        return all(torch.equal(x[k], y[k]) for k in x)
    assert same(weights["a"], weights["b"]), \
        "two uninterrupted runs differ: cuDNN's default algorithms are not deterministic here"
    assert same(weights["a"], weights["resumed"])


@needs_cuda
def test_progress_reads_nothing_from_the_gpu_between_steps(tmp_path):
    """CUDA's sync debug mode warns at every implicit synchronization: with progress shown,
    their number does not grow with the number of steps in an epoch."""
    import warnings
    counts = []
    for batch in (120, 4):                      # 2 and 60 steps per epoch
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                execute(tiny(subset=240, batch_size=batch, graph="off"),
                        results_dir=tmp_path, device="cuda", progress=True)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        counts.append(sum("synchroniz" in str(w.message) for w in caught))
    assert counts[0] == counts[1], counts


@needs_cuda
def test_step_benchmark_graph_row_fails_loudly_when_capture_fails(monkeypatch):
    """A graph row runs in graph=on: a capture that fails raises (the row becomes an
    error row) instead of timing eager steps as graph ones."""
    import torch.nn as nn

    from measure import steps as step_bench

    class Syncs(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(784, 10)

        def forward(self, x):
            out = self.lin(x.flatten(1))
            return out * 2 if out.sum().item() > 1e9 else out

    real_build = step_bench.build

    def build(method, arch, hp, device, batch, steps, capturable=False):
        spec, _, _, _, shape = real_build(method, arch, hp, device, batch, steps, capturable)
        model = Syncs().to(device).train()
        opt = step_bench.make_optimizer(spec, model.parameters(), capturable=capturable)
        return spec, model, opt, step_bench.make_scheduler(spec, opt, steps), shape
    monkeypatch.setattr(step_bench, "build", build)
    args = step_bench.parse_args(["--device", "cuda", "--batch", "8", "--warmup", "1",
                                  "--repeats", "2"])
    with pytest.raises(UserError, match="graph=on: capture failed"):
        step_bench.capture_row("cnn", "lenet5", {}, args, args.device,
                               {"matmul_peak_gflops": 1.0}, 1)


def test_gpu_claims_are_not_stated_as_measured():
    """No GPU has run this code yet (issue 23 will): the README and docs/, the CLI help and the graph
    module state no GPU speed or duration as a fact, and the CPU probe claims no capture."""
    from pathlib import Path

    import harness.graph
    repo = Path(__file__).resolve().parent.parent
    texts = {"README.md": (repo / "README.md").read_text(),
             **{f"docs/{p.name}": p.read_text() for p in (repo / "docs").glob("*.md")},
             "harness/graph.py": harness.graph.__doc__,
             "harness/__main__.py": (repo / "harness" / "__main__.py").read_text()}
    unmeasured = ("mostly kernel-launch overhead", "about a minute on a GPU",
                  "checks that its training step can be captured", "In about a\nminute")
    found = [(name, claim) for name, text in texts.items() for claim in unmeasured
             if claim in text]
    assert found == []
