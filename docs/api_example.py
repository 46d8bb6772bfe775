from harness import execute, make_spec
from reports.aggregate import load_runs, summarize

for method in ("cnn", "hartley"):
    for seed in (0, 1):
        spec = make_spec(method, None, "synthetic", epochs=2, subset=3000, seed=seed, threads=1)
        record = execute(spec, results_dir="results", progress=False)
        print(spec.run_id, method, seed, f"test error {record['metrics']['test_error']:.4f}")

runs, history = load_runs("results", progress=False)    # pandas: one row per run, one per epoch
print(runs[["method", "arch", "seed", "test_error", "params", "macs_fwd"]].to_string(index=False))
print(summarize(runs)[["method", "arch", "n", "test_error_mean"]].to_string(index=False))
print(history.groupby(["method", "epoch"])["val_acc"].mean().round(4).to_string())
