"""The single-run path: a finished run is not run again, a locked run is refused, the
record is complete, a diverged run is recorded (the training itself: test_train.py)."""

import numpy as np
import pytest
import torch

import methods
from harness import runner, store
from harness.runner import execute
from harness.suite import make_spec


def small_spec(**kw):
    base = dict(epochs=2, subset=600, val_size=200, batch_size=50)
    base.update(kw)
    return make_spec("cnn", "lenet5", "synthetic", **base)


def test_finished_run_is_skipped_unless_forced(tmp_path, monkeypatch):
    spec = small_spec(epochs=1)
    first = execute(spec, results_dir=tmp_path, progress=False)

    def boom(*a, **k):
        raise AssertionError("a finished run must not train again")

    monkeypatch.setattr(runner, "train", boom)
    assert execute(spec, results_dir=tmp_path, progress=False) == first
    with pytest.raises(AssertionError, match="must not train"):
        execute(spec, results_dir=tmp_path, progress=False, force=True)


class NaNNet(torch.nn.Module):
    def __init__(self, shape, k):
        super().__init__()
        self.lin = torch.nn.Linear(int(np.prod(shape)), k)

    def forward(self, x):
        return self.lin(x.flatten(1)) * float("nan")


@pytest.fixture
def nan_method():
    name = "test-nan"
    methods._load()
    methods.register(name, archs=("tiny",))(lambda arch, shape, k: NaNNet(shape, k))
    yield name
    methods._REGISTRY.pop(name)


def test_divergence_is_recorded(tmp_path, nan_method):
    spec = make_spec(nan_method, None, "synthetic", epochs=3, subset=200, val_size=50)
    rec = execute(spec, results_dir=tmp_path, progress=False)
    assert rec["status"] == "diverged"
    assert rec["diverged_epoch"] == 1 and "epoch 1" in rec["reason"]
    assert store.read_record(store.run_dir(tmp_path, spec))["status"] == "diverged"


def test_record_is_complete(tmp_path):
    spec = small_spec(epochs=1)
    rec = execute(spec, results_dir=tmp_path, progress=False)
    assert rec["schema_version"] == store.SCHEMA_VERSION and rec["status"] == "complete"
    assert rec["params"] == sum(p.numel() for p in methods.build(spec, (1, 28, 28), 10).parameters())
    for key in ("train_s", "eval_s", "data_s", "warmup_s", "train_s_per_epoch", "throughput_img_s"):
        assert rec["timing"][key] >= 0
    env = rec["environment"]
    assert env["packages"]["torch"] == torch.__version__.split("+")[0] or env["packages"]["torch"]
    assert {"python", "host", "git", "device", "slurm"} <= set(env)
    assert rec["memory"]["peak_mb"] > 0
    assert rec["spec"]["seed"] == 0 and rec["dataset"]["name"] == "synthetic"
    assert 0 <= rec["metrics"]["test_error"] <= 1


def test_a_run_being_trained_elsewhere_is_refused(tmp_path):
    from harness.errors import UserError
    spec = make_spec("cnn", "lenet5", "synthetic", epochs=1, subset=100)
    directory = store.run_dir(tmp_path, spec)
    with store.RunDir(directory).lock():
        with pytest.raises(UserError, match="another process"):
            runner.execute(spec, results_dir=tmp_path, progress=False)
