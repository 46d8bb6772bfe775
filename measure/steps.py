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
- with `--compile`, the step compiled by torch.compile (`harness.step.compiled`, as a run
  with `--set compile=on`): `compile_s` the first call (the compilation), then
  `train_compiled_ms` timed like the eager step, `compiled_vs_eager` (compiled / eager ms:
  above 1 means the compiled step is slower, which the table says) and
  `train_compiled_ratio` (against the baseline's compiled step). `best_ms` is the
  fastest of the eager, graph and compiled steps (`best_mode`), `best_ratio` its ratio to
  the baseline's best: the issue's "ratio to the CNN in its best mode".
- the precision policy (`precision`, one row per case and policy of `--precision`:
  fp32 = TF32 off for cuBLAS and cuDNN; tf32; bf16 and fp16 = autocast, as `--set
  precision=` for runs; ratios are taken within one policy, `vs_fp32` is the eager step
  against the same case's fp32 row) and the cuDNN policy (`cudnn_benchmark`, default off
  as for runs), applied by `harness.device.activate` as for a run, and the CPU thread
  count, in every row.
- on the CPU, the allocator policy in force (`allocator`, harness/allocator.py; run with
  SPECTRAL_BENCH_MALLOC=default for glibc's defaults) and the minor page faults per
  eager step (`faults_per_step`).

Writes <results>/_measure/step_bench.csv (the reports pick it up) and prints a Markdown
table.

    python -m measure.steps --quick                 # CPU smoke run
    python -m measure.steps --threads 2             # every (method, arch), CPU
    python -m measure.steps --device cuda           # eager and graph, GPU
    python -m measure.steps --methods cnn,cemnet --archs lenet5,vgg-small
    python -m measure.steps --methods cnn,cemnet --compile --precision fp32,bf16
"""

from __future__ import annotations

import argparse
import copy
import resource
import statistics
import sys
import time

import torch

import methods
from harness import ops
from harness import allocator
from harness.device import PRECISIONS, activate, sync, tensor_mb
from harness.graph import StepRunner
from harness.hazards import capture_hazards
from harness.spec import RunSpec
from harness.step import Amp, compiled, make_optimizer, make_scheduler, train_step
from harness.suite import resolve_hparams
from measure import common
from measure.common import device_name, matmul_peak_gflops, peak_bytes, time_steps

NAME = "step_bench"         # <results>/_measure/step_bench.csv
MNIST_ARCHS = ("lenet5", "rippel-sp")
QUICK = {"methods": ("cnn", "cemnet", "cemnet-no-wf-bn-dropout", "fcnn", "spectral-pooling"),
         "archs": ("lenet5", "vgg-small", "rippel-sp")}
FIELDS = ["method", "arch", "variant", "input", "batch", "device", "device_name", "threads",
          "precision", "tf32_matmul", "tf32_cudnn", "cudnn_benchmark", "allocator", "repeats",
          "train_ms", "train_graph_ms", "train_compiled_ms", "compile_s", "compiled_vs_eager",
          "best_ms", "best_mode", "infer_ms", "faults_per_step", "resident_mb", "data_mb",
          "step_peak_mb", "peak_mb", "infer_peak_mb", "graph_pool_mb", "mem_method", "baseline",
          "train_ratio", "train_graph_ratio", "train_compiled_ratio", "best_ratio", "vs_fp32",
          "infer_ratio", "peak_ratio", "params",
          "macs_fwd_per_image", "macs_bwd_per_image", "gflops_train", "gflops_train_graph",
          "gflops_train_compiled", "gflops_infer", "frac_peak_train", "frac_peak_train_graph",
          "frac_peak_train_compiled", "frac_peak_infer",
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
            "cudnn_benchmark": flags["cudnn_benchmark"],
            "allocator": "" if on_gpu else allocator.state()["policy"]}


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


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timed(fn, device, warmup: int, repeats: int, budget: float) -> tuple[float, int, float]:
    """(seconds per call of fn(), calls timed, minor page faults of the process per timed
    call): the seconds are the median over up to BLOCKS blocks of
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
    faults = minor_faults()
    times = [time_steps(fn, device, repeats) for _ in range(blocks)]
    faults = (minor_faults() - faults) / (blocks * repeats)
    return statistics.median(times), blocks * repeats, faults


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
        amp = Amp(prec["precision"], device.type)

        def step():
            return train_step(model, opt, sched, xb, yb, spec.clip_norm, amp)

        t_train, reps, faults = timed(step, device, args.warmup, args.repeats, args.budget)
        if device.type == "cpu":
            row["faults_per_step"] = faults
        row["resident_mb"] = resident_bytes(model, opt) / 2 ** 20
        row["data_mb"] = tensor_mb(xb, yb)
        step_peak = peak_bytes(step, device)
        model.eval()

        def infer():
            with amp.autocast():
                return model(xb)

        with torch.no_grad():
            t_infer = timed(infer, device, args.warmup, args.repeats, args.budget)[0]
            infer_peak = peak_bytes(infer, device)
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
        if args.compile:
            compiled_row(method, arch, hp, args, device, row, fwd + bwd, peak)
        modes = {m: row.get(f"train{k}_ms") for m, k in
                 (("eager", ""), ("graph", "_graph"), ("compiled", "_compiled"))}
        best = min((ms, m) for m, ms in modes.items() if ms)
        row["best_ms"], row["best_mode"] = best
    except Exception as exc:  # noqa: BLE001 - report the case and go on
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    return row


def compiled_row(method, arch, hp, args, device, row, macs_step, peak: float) -> None:
    """The compiled step (`harness.step.compiled`, as compile=on): the first call compiles
    (`compile_s`, never part of the step time), then it is timed like the eager step."""
    spec, model, opt, sched, shape = build(method, arch, hp, device, args.batch, 10 ** 6)
    call, amp = compiled(model), Amp(row["precision"], device.type)
    xb, yb = data(shape, args.batch, device)

    def step():
        return train_step(call, opt, sched, xb, yb, spec.clip_norm, amp)

    t0 = time.perf_counter()
    step()
    sync(device)
    row["compile_s"] = time.perf_counter() - t0
    t = timed(step, device, args.warmup, args.repeats, args.budget)[0]
    row["train_compiled_ms"] = t * 1e3
    row["compiled_vs_eager"] = row["train_compiled_ms"] / row["train_ms"]
    row["gflops_train_compiled"] = 2 * macs_step * args.batch / t / 1e9
    row["frac_peak_train_compiled"] = row["gflops_train_compiled"] / peak


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
    amp = Amp(row["precision"], device.type)
    if amp.scaler is not None:              # refused by StepRunner: say why, time nothing
        return "not captured: precision=fp16 (the GradScaler syncs with the host)"
    runner = StepRunner(model, opt, sched, spec.clip_norm, device, mode="on", amp=amp)
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
    """Each row against its baseline in the same precision policy, and its eager step
    against the same case's fp32 row (`vs_fp32`)."""
    by = {(r["method"], r["arch"], r["variant"], r["precision"]): r for r in rows if not r["error"]}
    for r in rows:
        if r["error"]:
            continue
        fp32 = by.get((r["method"], r["arch"], r["variant"], "fp32"))
        if fp32 is not None:
            r["vs_fp32"] = r["train_ms"] / fp32["train_ms"]
        base = baseline_of(r["method"], r["arch"])
        if base is None:
            continue
        ref = by.get((base[0], base[1], label(*base).split("/", 1)[1], r["precision"]))
        if ref is None:
            continue
        r["baseline"] = label(*base)
        for key, ref_key in (("train_ratio", "train_ms"), ("infer_ratio", "infer_ms"),
                             ("peak_ratio", "peak_mb"), ("train_graph_ratio", "train_graph_ms"),
                             ("train_compiled_ratio", "train_compiled_ms"),
                             ("best_ratio", "best_ms")):
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

    def slower(v):     # compiled / eager: the table says where compiling makes a step slower
        return "" if not v else f"{v:.2f}" + (" slower" if v > 1 else "")

    columns = [("train ms", lambda r: f(r.get("train_ms"))),
               ("graph ms", lambda r: f(r.get("train_graph_ms"))),
               ("compiled ms", lambda r: f(r.get("train_compiled_ms"))),
               ("compiled/eager", lambda r: slower(r.get("compiled_vs_eager"))),
               ("compile s", lambda r: f(r.get("compile_s"))),
               ("infer ms", lambda r: f(r.get("infer_ms"))),
               ("peak MB", lambda r: f(r.get("peak_mb"))),
               ("baseline", lambda r: r.get("baseline", "")),
               ("train x", lambda r: f(r.get("train_ratio"), "{:.2f}")),
               ("graph x", lambda r: f(r.get("train_graph_ratio"), "{:.2f}")),
               ("compiled x", lambda r: f(r.get("train_compiled_ratio"), "{:.2f}")),
               ("best x", lambda r: f(r.get("best_ratio"), "{:.2f}")
                + (f" ({r['best_mode']})" if r.get("best_ratio") else "")),
               ("vs fp32", lambda r: f(r.get("vs_fp32"), "{:.2f}")),
               ("infer x", lambda r: f(r.get("infer_ratio"), "{:.2f}")),
               ("peak x", lambda r: f(r.get("peak_ratio"), "{:.2f}")),
               ("GFLOP/s", lambda r: f(r.get("gflops_train"))),
               ("% peak", lambda r: f(100 * r.get("frac_peak_train", float("nan")))),
               ("faults/step", lambda r: f(r.get("faults_per_step"), "{:.0f}")),
               ("capture", lambda r: (r.get("capture") or "")[:40])]
    ok = [r for r in rows if not r["error"]]
    # a column nobody filled (no graph on a CPU, no --compile, one precision) is left out
    columns = [(h, c) for h, c in columns if any(c(r) for r in ok) or h == "train ms"]
    head = ["method/arch", "precision"] + [h for h, _ in columns]
    table = []
    for r in rows:
        name = f"{r['method']}/{r['variant']}"
        if r["error"]:
            table.append([name, r["precision"], "error: " + r["error"][:70]]
                         + [""] * (len(head) - 3))
            continue
        table.append([name, r["precision"]] + [c(r) for _, c in columns])
    r0 = rows[0] if rows else {}
    title = (f"Step benchmark on {device_name(device)}, torch {torch.__version__}, batch "
             f"{r0.get('batch', '?')}; allocator {r0.get('allocator') or 'CUDA caching'}; dense "
             f"float32 matmul peak {peak:.1f} GFLOP/s; ops {ops.CONVENTION_ID}; 'x' = ratio to "
             f"the baseline of the same architecture and precision")
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
    ap.add_argument("--precision", default="fp32",
                    help="comma-separated precision policies, a row per case and policy: fp32 "
                         "(TF32 off, default), tf32, bf16, fp16 (autocast), as --set precision")
    ap.add_argument("--compile", action="store_true",
                    help="also time the step compiled by torch.compile (as --set compile=on; "
                         "slow to compile on a CPU)")
    ap.add_argument("--cudnn-benchmark", choices=("off", "on"), default="off",
                    help="cuDNN algorithm search, as --set cudnn_benchmark for runs (default "
                         "off: cuDNN's heuristics, the runs' default)")
    ap.add_argument("--matmul-n", type=int, default=None,
                    help="matmul size for the peak (default 4096 CPU, 8192 GPU; quick 1024)")
    common.add_output_args(ap, NAME)
    args = ap.parse_args(argv)
    args.precision = [p.strip() for p in args.precision.split(",") if p.strip()]
    bad = [p for p in args.precision if p not in PRECISIONS]
    if bad or not args.precision:
        ap.error(f"unknown precision {', '.join(bad) or '(none)'}; use a comma-separated list "
                 f"of {', '.join(PRECISIONS)}, e.g. --precision fp32,bf16")
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
    set_precision("fp32", args.device, args.cudnn_benchmark == "on")
    t0 = time.perf_counter()
    peak = matmul_peak_gflops(args.device, args.matmul_n)
    rows = []
    for method, arch, hp in cases(args):
        for policy in args.precision:      # the policies of one case one after the other
            prec = set_precision(policy, args.device, args.cudnn_benchmark == "on")
            row = run_case(method, arch, hp, args, args.device, peak, prec)
            rows.append(row)
            status = row["error"] or (
                f"train {row['train_ms']:.1f} ms"
                + (f", graph {row['train_graph_ms']:.1f} ms" if row.get("train_graph_ms") else "")
                + (f", compiled {row['train_compiled_ms']:.1f} ms (compile "
                   f"{row['compile_s']:.0f} s)" if row.get("train_compiled_ms") else "")
                + f", infer {row['infer_ms']:.1f} ms, capture {row['capture'][:60]}")
            print(f"{label(method, arch, hp):40s} {policy:5s} {status}", file=sys.stderr, flush=True)
    add_ratios(rows)
    out = common.output_path(args, NAME)
    common.write_csv(out, FIELDS, [{k: round(v, 4) if isinstance(v, float) else v
                                    for k, v in r.items()} for r in rows])
    print(markdown(rows, peak, args.device))
    print(f"\nwrote {out} ({len(rows)} rows) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
