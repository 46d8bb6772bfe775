"""Reports never mix op-count conventions (issue 14: sb-macs-v1 records beside sb-macs-v2)."""

import json

import pandas as pd

from reports import aggregate, measured, render, reproduction


def write_run(root, seed: int, convention: str | None, macs: float) -> None:
    spec = {"method": "cemnet", "arch": "lenet5", "dataset": "mnist", "seed": seed,
            "epochs": 1, "batch_size": 100}
    ops = {"macs_fwd": macs, "macs_bwd": 2 * macs, "breakdown_fwd": {"fft": macs / 4}}
    if convention:
        ops["convention"] = {"id": convention}
    rec = {"run_id": f"r{seed}", "status": "complete", "spec": spec, "ops": ops,
           "metrics": {"test_error": 0.1 + seed / 100, "epochs_done": 1},
           "timing": {"train_s": 1.0, "train_s_per_epoch": 1.0, "throughput_img_s": 10.0},
           "memory": {"peak_mb": 1.0}, "environment": {"cpu": "x", "threads": 1}}
    d = root / f"r{seed}"
    d.mkdir(parents=True)
    (d / "result.json").write_text(json.dumps(rec))


def summary_of(root):
    runs, _ = aggregate.load_runs(root, progress=False)
    return runs, aggregate.summarize(runs)


def test_runs_under_two_conventions_never_share_a_row_or_a_figure(tmp_path):
    for seed, conv, macs in ((0, "sb-macs-v1", 1000.0), (1, "sb-macs-v1", 1000.0),
                             (2, "sb-macs-v2", 1250.0), (3, None, 900.0)):
        write_run(tmp_path / "results", seed, conv, macs)
    runs, summary = summary_of(tmp_path / "results")
    assert sorted(summary["ops_convention"]) == ["sb-macs-v1", "sb-macs-v2", "unrecorded"]
    assert summary["cohort"].nunique() == 3                   # three settings, never pooled
    by = summary.set_index("ops_convention")
    assert by.loc["sb-macs-v1", "macs_fwd"] == 1000.0 and by.loc["sb-macs-v1", "n"] == 2
    assert by.loc["sb-macs-v2", "macs_fwd"] == 1250.0
    md, _ = render.write_report(str(tmp_path / "results"), str(tmp_path / "out"), progress=False)
    figs = sorted(p.name for p in (tmp_path / "out" / "figures").glob("acc_macs_*.png"))
    assert len(figs) == 3                                     # one MACs figure per convention
    text = md.read_text()
    assert "sb-macs-v1" in text and "sb-macs-v2" in text


def test_paper_table_flags_counts_under_another_convention(tmp_path):
    write_run(tmp_path, 0, "sb-macs-v1", 368000.0)
    runs, summary = summary_of(tmp_path)
    pub = pd.DataFrame([{"method": "cemnet", "arch": "lenet5", "dataset": "mnist",
                         "metric": "macs_fwd", "value": 368000, "source": "CEMNet Table 1",
                         "convention": "paper's own", "epochs": 800, "comparable": False}])
    pvm = reproduction.paper_vs_measured(pub, {}, summary, runs, {summary["cohort"].iloc[0]: 1})
    assert "counted under sb-macs-v1" in pvm["flag"].iloc[0]
    json.dumps(pvm.to_dict())


def test_step_bench_csv_becomes_a_table_and_a_figure(tmp_path):
    """The reports pick up <results>/_measure/step_bench.csv like the layer benchmark's."""
    rows = [{"method": m, "arch": "lenet5", "variant": "lenet5", "batch": 100,
             "device_name": "CPU x", "threads": 2, "precision": "fp32", "train_ms": t,
             "train_graph_ms": float("nan"), "infer_ms": t / 3, "peak_mb": 20.0,
             "baseline": "cnn/lenet5", "train_ratio": t / 30, "train_graph_ratio": float("nan"),
             "infer_ratio": 1.0, "peak_ratio": 1.0, "frac_peak_train": 0.05, "capture": "ok",
             "convention": "sb-macs-v2", "error": float("nan")}
            for m, t in (("cnn", 30.0), ("cemnet", 45.0))]
    blocks = measured.step_bench_blocks(pd.DataFrame(rows), tmp_path)
    kinds = [b[0] for b in blocks]
    assert kinds[:3] == ["h2", "p", "table"] and "img" in kinds
    table = blocks[2][1]
    assert list(table["train ×"]) == ["1", "1.5"] and "graph ms" in table
    assert table["train % of matmul peak"].iloc[0] == "5.0%"
