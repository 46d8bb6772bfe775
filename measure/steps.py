"""Training-step benchmark (issue 14): every registered (method, arch) beside its CNN.

For each (method, arch) with its default options, at batch 100 on the architecture's
dataset shape (MNIST 1x28x28 for `lenet5` and `rippel-sp`, CIFAR 3x32x32 otherwise):

- training-step ms: `harness.step.train_step` eagerly (the harness's own step: forward,
  cross-entropy, backward, optimizer step, scheduler, `after_optimizer_step`), and on CUDA
  replayed from a CUDA graph (`harness.graph.StepRunner`, mode "on": a capture that fails
  makes the row an error row, never a silent eager row). After `--warmup` untimed steps
  (for a graph row after its eager warm-up steps and the capture, which are never
  timed), `--repeats` steps run back to back as in the training loop and are timed as a
  whole: CUDA events before the first and after the last, read after one
  synchronization, divided by the count (no synchronization between steps, so the host
  queues a step while the GPU runs the one before); perf_counter on the CPU
  (`measure.common.time_steps`). The median over up to 3 such blocks.
- inference ms: the model in eval mode under no_grad, as `harness.train.evaluate`, timed
  the same way.
- memory, each the allocator's bytes (the CUDA caching allocator on a GPU; on the CPU
  torch's CPU allocations as the profiler records them, `measure.common.peak_bytes`):
  `resident_mb` the parameters, gradients, optimizer state and buffers after the warm-up;
  `data_mb` the batch on the device; `step_peak_mb` the peak of one eager training step
  above what was allocated before it (activations and temporaries); `peak_mb` =
  resident + data + step peak: the eager training step's footprint; `infer_peak_mb` the
  peak of one inference pass above what was allocated before it; `graph_pool_mb` (CUDA)
  the memory the captures reserved for the graph's private pool, which replays use on
  top of the resident state (and which the allocator's peak does not show).
- the ratio of each of these to the baseline of the same architecture (`baseline`): the
  `cnn` where it exists, the LeNet-5 CNN for `rippel-sp` (the same MNIST input), the
  spatial twin `spatial-param` for the other Rippel nets and the RGB variant of
  `dct-select` for `resnet20`.
- achieved GFLOP/s from the op counts (harness.ops, convention in the `convention`
  column: per image at this batch, forward + backward for a step, forward for inference;
  FLOPs = 2 MACs) and as a fraction of this device's measured dense float32 matmul peak
  (`measure.common.matmul_peak_gflops`).
- `capture`: on CUDA "captured" (a failed capture is the row's error); on the CPU nothing
  is captured: "not tried (CPU)" and what the CPU probe `harness.hazards.capture_hazards`
  found ("probe: no hazards" does not prove a capture works: only a GPU run does).
- the precision policy (`precision`: fp32 = TF32 off for cuBLAS and cuDNN; tf32) and the
  cuDNN policy (`cudnn_benchmark`, default off as for runs), applied by
  `harness.device.activate` as for a run, and the CPU thread count, in every row.

Writes <results>/_measure/step_bench.csv (the reports pick it up) and prints a Markdown
table.

    python -m measure.steps --quick                 # CPU smoke run
    python -m measure.steps --threads 2             # every (method, arch), CPU
    python -m measure.steps --device cuda           # eager and graph, GPU
    python -m measure.steps --methods cnn,cemnet --archs lenet5,vgg-small
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import torch

import methods
from harness import ops
from harness.device import activate, sync, tensor_mb
from harness.graph import StepRunner
from harness.hazards import capture_hazards
from harness.spec import RunSpec
from harness.step import make_optimizer, make_scheduler, train_step
from harness.suite import resolve_hparams
from measure import common
from measure.common import device_name, matmul_peak_gflops, peak_bytes, time_steps

NAME = "step_bench"         # <results>/_measure/step_bench.csv
MNIST_ARCHS = ("lenet5", "rippel-sp")
QUICK = {"methods": ("cnn", "cemnet", "cemnet-no-wf-bn-dropout", "fcnn", "spectral-pooling"),
         "archs": ("lenet5", "vgg-small", "rippel-sp")}
FIELDS = ["method", "arch", "variant", "input", "batch", "device", "device_name", "threads",
          "precision", "tf32_matmul", "tf32_cudnn", "cudnn_benchmark", "repeats", "train_ms",
          "train_graph_ms", "infer_ms", "resident_mb", "data_mb", "step_peak_mb", "peak_mb",
          "infer_peak_mb", "graph_pool_mb", "mem_method", "baseline",
          "train_ratio", "train_graph_ratio", "infer_ratio", "peak_ratio", "params",
          "macs_fwd_per_image", "macs_bwd_per_image", "gflops_train", "gflops_train_graph",
          "gflops_infer", "frac_peak_train", "frac_peak_train_graph", "frac_peak_infer",
          "matmul_peak_gflops", "capture", "torch", "convention", "error"]


def input_shape(arch: str) -> tuple[int, int, int]:
    return (1, 28, 28) if arch in MNIST_ARCHS else (3, 32, 32)


def baseline_of(method: str, arch: str) -> tuple[str, str, dict] | None:
    """(method, arch, hparams) that a row's ratios are taken against."""
    if arch in methods.get("cnn").archs:
        return "cnn", arch, {}
    if arch == "rippel-sp":
        return "cnn", "lenet5", {}
    if arch.startswith("rippel"):
        return "spatial-param", arch, {}
    if method == "dct-select":
        return "dct-select", arch, {"input": "rgb"}
    return None


def label(method: str, arch: str, hp: dict) -> str:
    extra = ",".join(f"{k}={v}" for k, v in sorted(hp.items()))
    return f"{method}/{arch}" + (f"[{extra}]" if extra else "")


def set_precision(policy: str, device: torch.device, cudnn_benchmark: bool = False) -> dict:
    """Make `device` current and apply the precision and cuDNN policies as a run does
    (`harness.device.activate`); the row's flags: TF32 in effect (only on a GPU)."""
    flags = activate(device, policy, cudnn_benchmark)
    on_gpu = device.type == "cuda"
    return {"precision": policy, "tf32_matmul": flags["tf32_matmul"] and on_gpu,
            "tf32_cudnn": flags["tf32_cudnn"] and on_gpu,
            "cudnn_benchmark": flags["cudnn_benchmark"]}


def build(method: str, arch: str, hp: dict, device, batch: int, steps: int,
          capturable: bool = False):
    shape = input_shape(arch)
    spec = RunSpec(method, arch, "bench", batch_size=batch,
                   hparams=resolve_hparams(method, arch, hp))
    torch.manual_seed(0)
    model = methods.build(spec, shape, 10).to(device).train()
    opt = make_optimizer(spec, model.parameters(), capturable=capturable)
    sched = make_scheduler(spec, opt, steps)
    return spec, model, opt, sched, shape


def data(shape, batch: int, device):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(batch, *shape, generator=g).to(device),
            torch.randint(0, 10, (batch,), generator=g).to(device))


BLOCKS = 3      # timed blocks of back-to-back steps; the median is reported


def timed(fn, device, warmup: int, repeats: int, budget: float) -> tuple[float, int]:
    """(seconds per call of fn(), calls timed): the median over up to BLOCKS blocks of
    `repeats` back-to-back calls each timed as a whole (`time_steps`), after `warmup`
    untimed calls (at least one, which also estimates the cost); fewer calls (at least
    one block of one) when they would take more than `budget` seconds."""
    t0 = time.perf_counter()
    fn()
    sync(device)
    first = time.perf_counter() - t0
    for _ in range(warmup - 1):
        fn()
    affordable = max(1, int(budget / max(first, 1e-9)))
    repeats = max(1, min(repeats, affordable // BLOCKS))
    blocks = max(1, min(BLOCKS, affordable // repeats))
    times = [time_steps(fn, device, repeats) for _ in range(blocks)]
    return statistics.median(times), blocks * repeats


def resident_bytes(model, opt) -> int:
    seen, total = set(), 0
    tensors = list(model.parameters()) + list(model.buffers())
    tensors += [p.grad for p in model.parameters() if p.grad is not None]
    tensors += [v for st in opt.state.values() for v in st.values() if torch.is_tensor(v)]
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


def per_image(counts: dict, key: str, batch: int) -> float:
    return counts["per_sample"][key] + counts["batch_fixed"][key] / batch


def run_case(method: str, arch: str, hp: dict, args, device, peak: float, prec: dict) -> dict:
    row = {"method": method, "arch": arch, "variant": label(method, arch, hp).split("/", 1)[1],
           "batch": args.batch, "device": str(device), "device_name": device_name(device),
           "threads": torch.get_num_threads(), **prec, "matmul_peak_gflops": round(peak, 1),
           "torch": torch.__version__, "convention": ops.CONVENTION_ID, "error": "",
           "mem_method": "cuda max_memory_allocated; graph pool: memory_reserved growth "
           "during capture" if device.type == "cuda" else "torch.profiler CPU allocations"}
    try:
        steps = 10 ** 6                  # a long cosine: the lr barely moves while timing
        spec, model, opt, sched, shape = build(method, arch, hp, device, args.batch, steps)
        row["input"] = "x".join(map(str, shape))
        counts = ops.count_ops(copy.deepcopy(model).cpu(), shape)
        xb, yb = data(shape, args.batch, device)
        t_train, reps = timed(lambda: train_step(model, opt, sched, xb, yb, spec.clip_norm),
                              device, args.warmup, args.repeats, args.budget)
        row["resident_mb"] = resident_bytes(model, opt) / 2 ** 20
        row["data_mb"] = tensor_mb(xb, yb)
        step_peak = peak_bytes(lambda: train_step(model, opt, sched, xb, yb, spec.clip_norm),
                               device)
        model.eval()
        with torch.no_grad():
            t_infer, _ = timed(lambda: model(xb), device, args.warmup, args.repeats, args.budget)
            infer_peak = peak_bytes(lambda: model(xb), device)
        row.update(repeats=reps, train_ms=t_train * 1e3, infer_ms=t_infer * 1e3,
                   step_peak_mb=step_peak / 2 ** 20, infer_peak_mb=infer_peak / 2 ** 20,
                   params=ops.count_params(model))
        row["peak_mb"] = row["resident_mb"] + row["data_mb"] + row["step_peak_mb"]
        fwd = per_image(counts, "macs_fwd", args.batch)
        bwd = per_image(counts, "macs_bwd", args.batch)
        row.update(macs_fwd_per_image=round(fwd), macs_bwd_per_image=round(bwd))
        row["gflops_train"] = 2 * (fwd + bwd) * args.batch / t_train / 1e9
        row["gflops_infer"] = 2 * fwd * args.batch / t_infer / 1e9
        row["frac_peak_train"] = row["gflops_train"] / peak
        row["frac_peak_infer"] = row["gflops_infer"] / peak
        del model, opt, sched
        row["capture"] = capture_row(method, arch, hp, args, device, row, fwd + bwd)
    except Exception as exc:  # noqa: BLE001 - report the case and go on
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    return row


def capture_row(method, arch, hp, args, device, row, macs_step) -> str:
    """On CUDA: time the graph-replayed step (filling the graph columns; a failed capture
    raises, which makes the row an error row); on CPU: the capture probe."""
    if device.type != "cuda":
        _, model, _, _, shape = build(method, arch, hp, "cpu", 2, 10)
        xb, yb = data(shape, 2, "cpu")
        found = capture_hazards(model, xb, yb)
        return "not tried (CPU); probe: " + ("no hazards" if not found else "; ".join(found))[:300]
    spec, model, opt, sched, shape = build(method, arch, hp, device, args.batch, 10 ** 6,
                                           capturable=True)
    runner = StepRunner(model, opt, sched, spec.clip_norm, device, mode="on")
    xb, yb = data(shape, args.batch, device)
    t_graph = time_graph(runner, xb, yb, device, args)
    row["graph_pool_mb"] = runner.pool_bytes / 2 ** 20
    row["train_graph_ms"] = t_graph * 1e3
    row["gflops_train_graph"] = 2 * macs_step * args.batch / t_graph / 1e9
    row["frac_peak_train_graph"] = row["gflops_train_graph"] / row["matmul_peak_gflops"]
    return "captured"


def time_graph(runner, xb, yb, device, args) -> float:
    """Seconds per replayed step: the runner's eager warm-up steps and the capture run
    first, untimed (capture is compile time), then the replays are timed (`timed`)."""
    for _ in range(runner.warmup + 1):
        runner.step(xb, yb)
    if runner.record()["step_mode"] != "graph":
        raise RuntimeError(f"no graph after the capture step: {runner.record()}")
    return timed(lambda: runner.step(xb, yb), device, args.warmup, args.repeats,
                 args.budget)[0]


def add_ratios(rows: list[dict]) -> None:
    by = {(r["method"], r["arch"], r["variant"]): r for r in rows if not r["error"]}
    for r in rows:
        base = baseline_of(r["method"], r["arch"])
        if r["error"] or base is None:
            continue
        ref = by.get((base[0], base[1], label(*base).split("/", 1)[1]))
        if ref is None:
            continue
        r["baseline"] = label(*base)
        for key, ref_key in (("train_ratio", "train_ms"), ("infer_ratio", "infer_ms"),
                             ("peak_ratio", "peak_mb"), ("train_graph_ratio", "train_graph_ms")):
            a, b = r.get(ref_key), ref.get(ref_key)
            if a and b:
                r[key] = a / b


def cases(args) -> list[tuple[str, str, dict]]:
    want_m = [m for m in args.methods.split(",") if m] or (
        list(QUICK["methods"]) if args.quick else methods.names())
    want_a = [a for a in args.archs.split(",") if a] or (
        list(QUICK["archs"]) if args.quick else None)
    out = []
    for m in want_m:
        for a in methods.get(m).archs:
            if want_a is None or a in want_a:
                out.append((m, a, {}))
    for m, a, _ in list(out):                  # every row needs its baseline
        base = baseline_of(m, a)
        if base is not None and base not in out:
            out.append(base)
    return out


def markdown(rows: list[dict], peak: float, device) -> str:
    from tabulate import tabulate

    def f(v, fmt="{:.1f}"):
        return fmt.format(v) if isinstance(v, (int, float)) and v == v else ""

    head = ["method/arch", "train ms", "graph ms", "infer ms", "peak MB", "baseline",
            "train x", "graph x", "infer x", "peak x", "GFLOP/s", "% peak", "capture"]
    table = []
    for r in rows:
        name = f"{r['method']}/{r['variant']}"
        if r["error"]:
            table.append([name, "error: " + r["error"][:70]] + [""] * (len(head) - 2))
            continue
        table.append([name, f(r.get("train_ms")), f(r.get("train_graph_ms")),
                      f(r.get("infer_ms")), f(r.get("peak_mb")), r.get("baseline", ""),
                      f(r.get("train_ratio"), "{:.2f}"), f(r.get("train_graph_ratio"), "{:.2f}"),
                      f(r.get("infer_ratio"), "{:.2f}"), f(r.get("peak_ratio"), "{:.2f}"),
                      f(r.get("gflops_train")), f(100 * r.get("frac_peak_train", float("nan"))),
                      (r.get("capture") or "")[:40]])
    r0 = rows[0] if rows else {}
    title = (f"Step benchmark on {device_name(device)}, torch {torch.__version__}, "
             f"precision {r0.get('precision', '?')}, batch "
             f"{r0.get('batch', '?')}; dense float32 matmul peak {peak:.1f} GFLOP/s; ops "
             f"{ops.CONVENTION_ID}; 'x' = ratio to the baseline of the same architecture")
    return title + "\n\n" + tabulate(table, headers=head, tablefmt="github")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: cnn, cemnet, cemnet-no-wf-bn-dropout, fcnn, "
                         "spectral-pooling on lenet5/vgg-small/rippel-sp, 1 warm-up, 3 repeats")
    ap.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda[:N]")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads (torch.set_num_threads; default: torch's current)")
    ap.add_argument("--methods", default="", help="comma-separated methods (default: all)")
    ap.add_argument("--archs", default="", help="comma-separated architectures (default: all)")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps (default 3, quick 1)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="steps per timed block, up to 3 blocks (default 10, quick 3)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds of timing per measurement before repeats are cut "
                         "(default 30, quick 10)")
    ap.add_argument("--precision", choices=("fp32", "tf32"), default="fp32",
                    help="fp32 (TF32 off, default) or tf32 for cuBLAS/cuDNN")
    ap.add_argument("--cudnn-benchmark", choices=("off", "on"), default="off",
                    help="cuDNN algorithm search, as --set cudnn_benchmark for runs (default "
                         "off: cuDNN's heuristics, the runs' default)")
    ap.add_argument("--matmul-n", type=int, default=None,
                    help="matmul size for the peak (default 4096 CPU, 8192 GPU; quick 1024)")
    common.add_output_args(ap, NAME)
    args = ap.parse_args(argv)
    args.device = common.device(args.device)
    q = args.quick
    args.warmup = args.warmup if args.warmup is not None else (1 if q else 3)
    args.repeats = args.repeats or (3 if q else 10)
    args.budget = args.budget or (10.0 if q else 30.0)
    args.matmul_n = args.matmul_n or (1024 if q else (8192 if args.device.type == "cuda"
                                                      else 4096))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    prec = set_precision(args.precision, args.device, args.cudnn_benchmark == "on")
    t0 = time.perf_counter()
    peak = matmul_peak_gflops(args.device, args.matmul_n)
    rows = []
    for method, arch, hp in cases(args):
        row = run_case(method, arch, hp, args, args.device, peak, prec)
        rows.append(row)
        status = row["error"] or (f"train {row['train_ms']:.1f} ms"
                                  + (f", graph {row['train_graph_ms']:.1f} ms"
                                     if row.get("train_graph_ms") else "")
                                  + f", infer {row['infer_ms']:.1f} ms, capture {row['capture'][:60]}")
        print(f"{label(method, arch, hp):40s} {status}", file=sys.stderr, flush=True)
    add_ratios(rows)
    out = common.output_path(args, NAME)
    common.write_csv(out, FIELDS, [{k: round(v, 4) if isinstance(v, float) else v
                                    for k, v in r.items()} for r in rows])
    print(markdown(rows, peak, args.device))
    print(f"\nwrote {out} ({len(rows)} rows) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
