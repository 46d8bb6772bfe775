"""The standalone measurements (measure/): the step benchmark runs, writes its CSV with every
column, and takes each ratio against the right baseline (a smoke run at batch 4: timings
are not checked); the approximation-error reconstructions are exact where they must be."""

import csv

import pytest
import torch

from measure import approx_error
from measure import steps as step_bench

pytestmark = pytest.mark.usefixtures("one_thread")


def test_smoke_run_writes_every_column(tmp_path):
    out = tmp_path / "step.csv"
    step_bench.main(["--device", "cpu", "--methods", "cnn,spectral-pooling,cemnet",
                     "--archs", "lenet5,rippel-sp", "--batch", "4", "--warmup", "1",
                     "--repeats", "1", "--matmul-n", "64", "--out", str(out)])
    rows = list(csv.DictReader(out.open()))
    assert [r["method"] for r in rows] == ["cnn", "spectral-pooling", "cemnet"]
    assert list(rows[0]) == step_bench.FIELDS
    by = {r["method"]: r for r in rows}
    for r in rows:
        assert not r["error"], r["error"]
        assert r["capture"] == "ok"                       # every method captures (CPU probe)
        assert float(r["train_ms"]) > 0 and float(r["infer_ms"]) > 0
        assert float(r["peak_mb"]) >= float(r["resident_mb"]) > 0
        assert r["precision"] == "fp32" and int(r["threads"]) >= 1
        assert r["convention"] == "sb-macs-v2" and float(r["gflops_train"]) > 0
        assert r["train_graph_ms"] == ""                  # no graph on the CPU
    assert by["cnn"]["baseline"] == "cnn/lenet5" and float(by["cnn"]["train_ratio"]) == 1.0
    assert by["spectral-pooling"]["baseline"] == "cnn/lenet5"   # the same MNIST input
    ratio = float(by["cemnet"]["train_ms"]) / float(by["cnn"]["train_ms"])
    assert float(by["cemnet"]["train_ratio"]) == pytest.approx(ratio, rel=1e-3)


def test_baselines():
    assert step_bench.baseline_of("cemnet", "vgg-large") == ("cnn", "vgg-large", {})
    assert step_bench.baseline_of("spectral-param", "rippel-deep") == \
        ("spatial-param", "rippel-deep", {})
    assert step_bench.baseline_of("dct-select", "resnet20") == ("dct-select", "resnet20",
                                                                {"input": "rgb"})
    cases = step_bench.cases(step_bench.parse_args(["--methods", "dct-select",
                                                    "--archs", "resnet20"]))
    assert cases == [("dct-select", "resnet20", {}), ("dct-select", "resnet20", {"input": "rgb"})]


def test_approx_error_reconstructions():
    ae = approx_error
    torch.manual_seed(0)
    x = torch.rand(4, 3, 16, 16, dtype=torch.float64)
    assert ae.relative_errors(x, ae.spectral_reconstruction(x, 16)).max() < 1e-12
    blocky = torch.rand(4, 3, 4, 4, dtype=torch.float64).repeat_interleave(4, -2).repeat_interleave(4, -1)
    assert ae.relative_errors(blocky, ae.maxpool_reconstruction(blocky, 4)).max() < 1e-12
    # spectral reconstruction = orthogonal projection onto nested subspaces: the error is
    # non-increasing in the kept size
    rows = ae.run(x)
    spec = [r["mean_rel_error"] for r in rows if r["method"] == "spectral"]
    assert all(a >= b - 1e-12 for a, b in zip(spec, spec[1:]))
    assert {r["stride"] for r in rows if r["method"] == "max"} == {2, 4, 8}
