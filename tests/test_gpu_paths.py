"""GPU code paths without a GPU: device selection of `run`, `run --suite`, the local
executor and the SLURM task, the precision policy, the CUDA timer, and `check`.

CI has no GPU, so `fake_cuda` simulates one: it replaces torch.cuda's device queries
with a 2-GPU machine whose `set_device` performs torch's real index check (a device
without an index raises ValueError, exactly as on a GPU). Training itself cannot run on
a fake GPU, so `train` is wrapped: the wrapper records the device the harness hands to
training, makes it current (the call that crashed on a real GPU), then trains on the
CPU. What is mocked: torch.cuda's device queries, events and synchronize, and
submitit's LocalExecutor (run in-process, so that the fake GPU is visible to the job).
"""

from __future__ import annotations

import types

import pytest
import torch
from torch.cuda._utils import _get_device_index

from harness import runner, schedule, store
from harness.__main__ import main
from harness.device import Timer, apply_precision, resolve_device
from harness.env import device_info
from harness.errors import UserError
from harness.runner import execute
from harness.suite import make_spec
from helpers import InProcessExecutor

GPU_NAME = "Simulated H200"


@pytest.fixture
def fake_cuda(monkeypatch):
    """A 2-GPU machine as far as the harness's device code can tell."""
    state = types.SimpleNamespace(current=0, set_calls=[], syncs=0)

    def set_device(device):
        state.current = _get_device_index(device)   # torch's own check: needs an index
        state.set_calls.append(state.current)

    def get_device_properties(device):
        return types.SimpleNamespace(name=GPU_NAME, total_memory=141 * 2**30)

    def synchronize(device=None):
        state.syncs += 1

    cuda = torch.cuda
    monkeypatch.setattr(cuda, "is_available", lambda: True)
    monkeypatch.setattr(cuda, "device_count", lambda: 2)
    monkeypatch.setattr(cuda, "current_device", lambda: state.current)
    monkeypatch.setattr(cuda, "set_device", set_device)
    monkeypatch.setattr(cuda, "get_device_name", lambda device=None: GPU_NAME)
    monkeypatch.setattr(cuda, "get_device_properties", get_device_properties)
    monkeypatch.setattr(cuda, "synchronize", synchronize)
    return state


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
    assert [p["visible_gpus"] for p in InProcessExecutor.submitted] == [(0,), (1,)]
    assert [str(d) for d in handed] == ["cuda:0", "cuda:0"]


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
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    info = device_info(torch.device("cuda:1"))
    assert info["device"] == "cuda:1" and info["gpu"] == GPU_NAME
    assert info["cuda_visible_devices"] == "3"


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
