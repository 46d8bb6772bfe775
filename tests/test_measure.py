"""The standalone measurements (measure/): the step benchmark runs, writes its CSV with every
column, and takes each ratio against the right baseline (a smoke run at batch 4: timings
are not checked); it times steps back to back with the capture kept out; a failed case is
listed in the report with its error; the approximation-error reconstructions are exact
where they must be."""

import csv
import os
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from measure import approx_error
from measure import steps as step_bench
from reports import measured

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
    batch_mb = (4 * 1 * 28 * 28 * 4 + 4 * 8) / 2 ** 20    # float32 images, int64 labels
    for r in rows:
        assert not r["error"], r["error"]
        # nothing is captured on a CPU: the column says so, and what the probe found
        assert r["capture"] == "not tried (CPU); probe: no hazards"
        assert float(r["train_ms"]) > 0 and float(r["infer_ms"]) > 0
        assert float(r["data_mb"]) == pytest.approx(batch_mb, abs=1e-4)
        assert float(r["peak_mb"]) == pytest.approx(
            float(r["resident_mb"]) + float(r["data_mb"]) + float(r["step_peak_mb"]), abs=1e-3)
        assert float(r["step_peak_mb"]) > 0 and float(r["infer_peak_mb"]) > 0
        assert r["graph_pool_mb"] == "" and r["cudnn_benchmark"] == "False"
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


class _Runner:
    """A StepRunner's interface: its eager warm-up steps and the capture are slow."""

    warmup = 3

    def __init__(self):
        self.calls = 0

    def step(self, xb, yb):
        self.calls += 1
        time.sleep(0.2 if self.calls <= self.warmup + 1 else 0.001)

    def record(self):
        return {"step_mode": "graph" if self.calls > self.warmup else "eager"}


def test_graph_timing_leaves_the_warm_up_and_the_capture_out():
    args = step_bench.parse_args(["--device", "cpu", "--warmup", "1", "--repeats", "5",
                                  "--budget", "1"])
    runner = _Runner()
    t = step_bench.time_graph(runner, None, None, torch.device("cpu"), args)
    assert t < 0.02                       # the 0.2 s capture is neither timed nor the estimate
    assert runner.calls == 4 + 1 + 3 * 5  # warm-up and capture, 1 untimed, 3 blocks of 5


def test_steps_are_timed_back_to_back_per_block():
    calls = []
    per_call, n, _ = step_bench.timed(lambda: calls.append(time.perf_counter()),
                                   torch.device("cpu"), warmup=2, repeats=4, budget=10)
    assert n == step_bench.BLOCKS * 4 and len(calls) == 2 + n
    assert 0 < per_call < 0.01


def test_failed_cases_are_listed_in_the_report(tmp_path):
    """A row whose case failed (here a capture that failed in graph=on) keeps its place in
    the report's table with its error; the figure shows the measured rows."""
    base = {"arch": "lenet5", "variant": "lenet5", "batch": 100, "device_name": "GPU x",
            "threads": 2, "precision": "fp32", "infer_ms": 1.0, "peak_mb": 20.0,
            "convention": "sb-macs-v2", "capture": "captured"}
    rows = [dict(base, method="cnn", train_ms=3.0, train_graph_ms=1.0, error=float("nan")),
            dict(base, method="cemnet", train_ms=5.0, train_graph_ms=float("nan"),
                 capture="", error="UserError: graph=on: capture failed: RuntimeError: x")]
    blocks = measured.step_bench_blocks(pd.DataFrame(rows), tmp_path)
    table = next(b[1] for b in blocks if b[0] == "table")
    assert list(table["method"]) == ["cnn", "cemnet"]
    assert list(table["error"]) == ["", "UserError: graph=on: capture failed: RuntimeError: x"]
    assert "1 case failed: its error is in the table" in next(b[1] for b in blocks if b[0] == "p")
    assert any(b[0] == "img" for b in blocks)


def test_failed_layer_cases_are_listed_in_the_report(tmp_path):
    from harness import store
    path = store.measurement_csv(tmp_path, "layer_bench")
    path.parent.mkdir(parents=True)
    pd.DataFrame([{"group": "g", "layer": "a", "shape": "s", "batch": 4, "fwd_ms": 1.0,
                   "bwd_ms": 2.0, "error": float("nan")},
                  {"group": "g", "layer": "b", "shape": "s", "batch": 4, "fwd_ms": float("nan"),
                   "bwd_ms": float("nan"), "error": "TypeError: gone"}]).to_csv(path, index=False)
    blocks = measured.blocks(tmp_path, tmp_path / "fig")
    tables = [b[1] for b in blocks if b[0] == "table"]
    assert len(tables) == 1 and list(tables[0]["error"]) == ["TypeError: gone"]


def test_cpu_memory_probe_prints_nothing_on_stderr():
    """torch.profiler's backend (Kineto) printed two 'USDT: ... profiler_start/stop' lines
    per measurement; measure.common silences them (a fresh process: Kineto reads its log
    level once)."""
    code = ("import torch; from measure.common import peak_bytes; "
            "print(peak_bytes(lambda: torch.ones(1000, 1000) * 2, torch.device('cpu')))")
    env = {k: v for k, v in os.environ.items() if k != "KINETO_LOG_LEVEL"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=env)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) >= 4 * 1000 * 1000       # the product's 4 MB were seen
    assert "USDT" not in out.stderr and "profiler_start" not in out.stderr, out.stderr


def test_profile_table_lists_the_step_operators(capsys):
    from measure import profile

    assert profile.main(["--method", "cnn", "--arch", "lenet5", "--steps", "1",
                         "--warmup", "1", "--rows", "50"]) == 0
    out = capsys.readouterr().out
    # the step's own convolution backward must be among the profiled operators
    assert "aten::convolution_backward" in out
    assert profile.main(["--steps", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --steps must be in 1..10000, got 0"
    assert profile.main(["--method", "nosuch", "--steps", "1", "--warmup", "1"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: unknown method 'nosuch'")
