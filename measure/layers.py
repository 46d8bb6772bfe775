"""Layer speed and memory benchmark (issue 4 §7; issue 3's "EM layer vs Conv2d").

Every spectral layer type is timed beside the spatial layer it replaces, at the papers'
shapes: the two LeNet-5 convolutions (MNIST) and the five VGG-small blocks (CIFAR-10), at
batch 100 (the papers' batch). For each (layer, shape) it measures

- forward and backward time: median of `--repeats` runs after `--warmup` runs, in training
  mode; the backward computes the gradients of the parameters and of the input (a layer
  inside a network). A case slower than `--budget` seconds in all gets fewer repeats
  (the CSV's `repeats` column says how many). GPU: CUDA events around each pass, with
  synchronize; CPU: time.perf_counter (`measure.common.time_call`, on harness.device.Timer).
- peak memory of one forward + backward, beyond what existed before it (inputs,
  parameters). GPU: torch.cuda.max_memory_allocated after reset_peak_memory_stats. CPU:
  the peak of the running sum of the tensor allocations and frees that torch.profiler
  (profile_memory=True) records, in time order. This counts memory from torch's CPU
  allocator at operator granularity: scratch space allocated and freed inside one
  operator (e.g. by oneDNN or pocketfft) and Python objects are not included.
- op counts from harness.ops.count_module_ops (convention harness.ops.CONVENTION_ID, at
  this batch), the achieved GFLOP/s (FLOPs = 2 x MACs, over the measured time), and the
  fraction of this machine's measured dense float32 matmul peak (a large `a @ b`, median
  of repeats).

Layers come from the method modules (methods/*.py) when they export them; a layer whose
constructor or call fails (an API that changed) is reported as a row with an error and
skipped, so the benchmark keeps running. Add a layer by appending a `Case` to `CASES`.

Writes a CSV (default <results>/_measure/layer_bench.csv; reports read it) and prints a
Markdown table.

    python -m measure.layers --quick            # smoke run: seconds
    python -m measure.layers                    # full run at batch 100
    python -m measure.layers --device cuda --layers conv --shapes vgg
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from harness import ops
from measure import common
from measure.common import matmul_peak_gflops, peak_bytes, time_call

NAME = "layer_bench"        # <results>/_measure/layer_bench.csv


# ----------------------------------------------------------------------------- shapes
@dataclass(frozen=True)
class Shape:
    """A convolution of the papers' networks: cin -> cout channels, k x k, on h x w maps."""
    name: str
    cin: int
    cout: int
    k: int
    h: int
    w: int


SHAPES = (
    Shape("lenet5-conv1", 1, 6, 5, 28, 28),
    Shape("lenet5-conv2", 6, 16, 5, 14, 14),
    Shape("vgg-small-1", 3, 64, 3, 32, 32),
    Shape("vgg-small-2", 64, 128, 3, 16, 16),
    Shape("vgg-small-3", 128, 256, 3, 8, 8),
    Shape("vgg-small-4", 256, 512, 3, 4, 4),
    Shape("vgg-small-5", 512, 512, 3, 2, 2),
)


# ----------------------------------------------------------------------------- cases
def _real(b, c, h, w, dev):
    return torch.randn(b, c, h, w, device=dev)


def _spectrum(b, c, h, w, dev):
    """The full fft2 of a real map (complex, Hermitian)."""
    return torch.fft.fft2(torch.randn(b, c, h, w, device=dev))


class NaiveEM(nn.Module):
    """Reference EM layer: one complex einsum, Y = sum_cin conj(X) * W ("bchw,cdhw->bdhw")."""

    def __init__(self, cin, cout, h, w):
        super().__init__()
        scale = 1 / math.sqrt(cin)
        self.weight = nn.Parameter(torch.randn(cin, cout, h, w, dtype=torch.cfloat) * scale)

    def forward(self, x):
        return torch.einsum("bchw,cdhw->bdhw", x.conj(), self.weight)


def _conv2d(s: Shape, b, dev):
    return nn.Conv2d(s.cin, s.cout, s.k, padding=s.k // 2), (_real(b, s.cin, s.h, s.w, dev),)


def _naive_em(s: Shape, b, dev):
    return NaiveEM(s.cin, s.cout, s.h, s.w), (_spectrum(b, s.cin, s.h, s.w, dev),)


def _cemnet_em(wf: str, onesided: bool):
    def make(s: Shape, b, dev):
        from methods.cemnet import EMLayer
        layer = EMLayer(s.cin, s.cout, s.k, (s.h, s.w), wf=wf, onesided_input=onesided)
        x = _spectrum(b, s.cin, s.h, s.w, dev)
        return layer, (x[..., : s.w // 2 + 1].contiguous() if onesided else x,)
    return make


def _cemnet_em_planar(s: Shape, b, dev):
    """An EM layer inside a block (VGG-large's second and third convs): planar input."""
    from methods.cemnet import EMLayer
    from methods.fourier import to_planar
    layer = EMLayer(s.cin, s.cout, s.k, (s.h, s.w), wf="spatial")
    return layer, (to_planar(_spectrum(b, s.cin, s.h, s.w, dev)),)


def _fcnn_conv(s: Shape, b, dev):
    from methods.fcnn import FourierConv2d
    return FourierConv2d(s.cin, s.cout, s.k, (s.h, s.w)), (_spectrum(b, s.cin, s.h, s.w, dev),)


def _rippel_param_conv(s: Shape, b, dev):
    from methods.spectral import SpectralParamConv2d
    conv = nn.Conv2d(s.cin, s.cout, s.k, padding=s.k // 2)
    return SpectralParamConv2d(conv), (_real(b, s.cin, s.h, s.w, dev),)


def _fno_layer(s: Shape, b, dev):
    from methods.fno import FourierLayer
    return FourierLayer(s.cin, s.cout, (s.h, s.w), modes=12), (_real(b, s.cin, s.h, s.w, dev),)


def _gfnet_layer(s: Shape, b, dev):
    from methods.gfnet import GlobalFilterConv
    return GlobalFilterConv(s.cin, s.cout, (s.h, s.w)), (_real(b, s.cin, s.h, s.w, dev),)


def _ffc_layer(s: Shape, b, dev):
    from methods.ffc import FFC
    ratio_gin = 0.0 if s.cin <= 3 else 0.5        # the network's first layer takes the image
    return (FFC(s.cin, s.cout, s.k, (s.h, s.w), ratio_gin=ratio_gin, ratio_gout=0.5),
            (_real(b, s.cin, s.h, s.w, dev),))


def _realnode(tile: int):
    def make(s: Shape, b, dev):
        from methods.realnode import RealNodeConv2d
        return RealNodeConv2d(s.cin, s.cout, s.k, tile=tile), (_real(b, s.cin, s.h, s.w, dev),)
    return make


def _hartley_conv(s: Shape, b, dev):
    from methods.hartley import HartleyConv2d
    return HartleyConv2d(s.cin, s.cout, s.k, (s.h, s.w)), (_real(b, s.cin, s.h, s.w, dev),)


# Pools and activations act on a conv's output: cout channels on h x w maps.
def _maxpool(s: Shape, b, dev):
    return nn.MaxPool2d(2), (_real(b, s.cout, s.h, s.w, dev),)


def _avgpool(s: Shape, b, dev):
    return nn.AvgPool2d(2), (_real(b, s.cout, s.h, s.w, dev),)


def _cemnet_pool(s: Shape, b, dev):
    from methods.cemnet import SpectralMaxPool
    from methods.fourier import to_planar
    return SpectralMaxPool(2), (to_planar(_spectrum(b, s.cout, s.h, s.w, dev)),)


def _rippel_pool(s: Shape, b, dev):
    from methods.spectral import SpectralPool2d
    return SpectralPool2d((s.h // 2, s.w // 2)), (_real(b, s.cout, s.h, s.w, dev),)


def _freq_avgpool(s: Shape, b, dev):
    from methods.freqpool import FreqAvgPool
    return FreqAvgPool((s.h, s.w), 2), (_spectrum(b, s.cout, s.h, s.w, dev),)


def _fcnn_pool(s: Shape, b, dev):
    from methods.fcnn import FourierPool2d
    return FourierPool2d((s.h // 2, s.w // 2)), (_spectrum(b, s.cout, s.h, s.w, dev),)


def _leaky(s: Shape, b, dev):
    return nn.LeakyReLU(0.2), (_real(b, s.cout, s.h, s.w, dev),)


def _twosrelu(s: Shape, b, dev):
    from methods.twosrelu import TwoSReLU
    return TwoSReLU(s.cout, (s.h, s.w)), (_spectrum(b, s.cout, s.h, s.w, dev),)


def _crelu(s: Shape, b, dev):
    from methods.fcnn import ComplexReLU
    return ComplexReLU(), (_spectrum(b, s.cout, s.h, s.w, dev),)


def _modrelu(s: Shape, b, dev):
    from methods.fcnn import ModReLU
    return ModReLU(s.cout), (_spectrum(b, s.cout, s.h, s.w, dev),)


@dataclass(frozen=True)
class Case:
    group: str                  # conv | pool | activation
    name: str
    replaces: str               # the spatial case of the same group it is compared with
    make: Callable              # (Shape, batch, device) -> (module, inputs)
    note: str = ""
    shapes: tuple[str, ...] = ()   # restrict to these shape-name prefixes ("" = all)


CASES: tuple[Case, ...] = (
    Case("conv", "conv2d", "conv2d", _conv2d, "nn.Conv2d k x k, 'same' zero padding"),
    Case("conv", "em-einsum-naive", "conv2d", _naive_em,
         "reference: complex einsum conj(X) W, free H x W weights"),
    Case("conv", "cemnet-em-wf-none", "conv2d", _cemnet_em("none", False),
         "methods.cemnet.EMLayer, free frequency weights"),
    Case("conv", "cemnet-em-spatial", "conv2d", _cemnet_em("spatial", False),
         "EMLayer, k x k kernel FFT'd per pass, full-spectrum input"),
    Case("conv", "cemnet-em-spatial-onesided", "conv2d", _cemnet_em("spatial", True),
         "EMLayer, k x k kernel, one-sided (rfft2) input: a block's first EM"),
    Case("conv", "cemnet-em-spatial-planar", "conv2d", _cemnet_em_planar,
         "EMLayer, k x k kernel, planar input: an EM layer inside a block"),
    Case("conv", "fcnn-fourier-conv", "conv2d", _fcnn_conv, "methods.fcnn.FourierConv2d"),
    Case("conv", "rippel-spectral-param-conv", "conv2d", _rippel_param_conv,
         "methods.spectral.SpectralParamConv2d (Rippel spectral parameterization)"),
    Case("conv", "fno-fourier-layer", "conv2d", _fno_layer,
         "methods.fno.FourierLayer: SpectralConv2d (modes 12, clamped) + 1x1 bypass"),
    Case("conv", "gfnet-global-filter", "conv2d", _gfnet_layer,
         "methods.gfnet.GlobalFilterConv: 1x1 conv + full-size depthwise global filter"),
    Case("conv", "ffc", "conv2d", _ffc_layer,
         "methods.ffc.FFC, ratio_gout 0.5 (ratio_gin 0 on image inputs), no LFU"),
    Case("conv", "realnode-f2", "conv2d", _realnode(2),
         "methods.realnode.RealNodeConv2d, Winograd F(2x2, kxk), standard nodes"),
    Case("conv", "realnode-f4", "conv2d", _realnode(4),
         "methods.realnode.RealNodeConv2d, Winograd F(4x4, kxk), standard nodes"),
    Case("conv", "hartley-conv", "conv2d", _hartley_conv,
         "methods.hartley.HartleyConv2d: DHT convolution theorem, real matmuls, zero padding"),
    Case("pool", "maxpool2d", "maxpool2d", _maxpool, "nn.MaxPool2d(2)"),
    Case("pool", "avgpool2d", "avgpool2d", _avgpool, "nn.AvgPool2d(2)"),
    Case("pool", "cemnet-spectral-maxpool", "maxpool2d", _cemnet_pool,
         "methods.cemnet.SpectralMaxPool: ifft2 -> Re -> maxpool -> rfft2"),
    Case("pool", "rippel-spectral-pool", "maxpool2d", _rippel_pool,
         "methods.spectral.SpectralPool2d to h/2 x w/2"),
    Case("pool", "fcnn-fourier-pool", "maxpool2d", _fcnn_pool,
         "methods.fcnn.FourierPool2d (spectral crop)"),
    Case("pool", "freq-avgpool", "avgpool2d", _freq_avgpool,
         "methods.freqpool.FreqAvgPool (Dirichlet product + fold)"),
    Case("activation", "leaky-relu", "leaky-relu", _leaky, "nn.LeakyReLU(0.2)"),
    Case("activation", "2srelu", "leaky-relu", _twosrelu, "methods.twosrelu.TwoSReLU",
         shapes=("lenet5",)),
    Case("activation", "complex-relu", "leaky-relu", _crelu, "methods.fcnn.ComplexReLU"),
    Case("activation", "modrelu", "leaky-relu", _modrelu, "methods.fcnn.ModReLU"),
)


# ----------------------------------------------------------------------------- measuring
def _prepare(module: nn.Module, inputs, device):
    module = module.to(device).train()
    inputs = tuple(t.to(device).detach().requires_grad_(t.is_floating_point() or t.is_complex())
                   for t in inputs)
    wrt = [p for p in module.parameters() if p.requires_grad] + [t for t in inputs
                                                                   if t.requires_grad]
    return module, inputs, wrt


def time_layer(module, inputs, wrt, device, warmup: int, repeats: int, budget: float):
    """Median forward and backward seconds (training mode, grads of params and inputs),
    and the number of timed repeats: fewer than `repeats` (at least 1) when one
    forward + backward takes so long that the case would exceed `budget` seconds."""
    def timer(fn):
        return time_call(fn, device)

    y, t_first = timer(lambda: module(*inputs))
    g = torch.randn_like(y)
    _, t_back = timer(lambda: torch.autograd.grad(y, wrt, g, allow_unused=True))
    step = t_first + t_back                 # this first pass counts as a warm-up run
    if (warmup + repeats) * step > budget:
        repeats = max(1, int(budget / step) - 1)
        warmup = min(warmup, 1)
    fwd, bwd = [], []
    for i in range(warmup - 1 + repeats):
        y, tf = timer(lambda: module(*inputs))
        _, tb = timer(lambda: torch.autograd.grad(y, wrt, g, allow_unused=True))
        if i >= warmup - 1:
            fwd.append(tf)
            bwd.append(tb)
        del y
    return statistics.median(fwd), statistics.median(bwd), len(fwd)


def peak_memory(module, inputs, wrt, device) -> int:
    """Bytes allocated at the peak of one forward + backward, beyond the memory before it."""
    def step():
        y = module(*inputs)
        torch.autograd.grad(y, wrt, torch.ones_like(y), allow_unused=True)

    return peak_bytes(step, device)


# ----------------------------------------------------------------------------- driver
FIELDS = ["group", "layer", "replaces", "shape", "batch", "cin", "cout", "k", "h", "w",
          "device", "threads", "repeats", "fwd_ms", "bwd_ms", "fwd_vs_spatial", "bwd_vs_spatial",
          "peak_mem_mb", "mem_method", "params", "macs_fwd", "macs_bwd", "gflops_fwd",
          "gflops_bwd", "frac_peak_fwd", "frac_peak_bwd", "matmul_peak_gflops", "torch",
          "convention", "note", "error"]


def run_case(case: Case, s: Shape, args, device, peak: float) -> dict:
    row = {"group": case.group, "layer": case.name, "replaces": case.replaces,
           "shape": s.name, "batch": args.batch, "cin": s.cin, "cout": s.cout, "k": s.k,
           "h": s.h, "w": s.w, "device": str(device), "threads": torch.get_num_threads(),
           "matmul_peak_gflops": round(peak, 1), "torch": torch.__version__,
           "convention": ops.CONVENTION_ID, "note": case.note, "error": "",
           "mem_method": "cuda.max_memory_allocated" if device.type == "cuda"
           else "torch.profiler allocations"}
    try:
        torch.manual_seed(0)
        module, inputs = case.make(s, args.batch, torch.device("cpu"))
        counts = ops.count_module_ops(module, *inputs, input_grad=True, mode="train")
        module, inputs, wrt = _prepare(module, inputs, device)
        t_fwd, t_bwd, reps = time_layer(module, inputs, wrt, device, args.warmup,
                                        args.repeats, args.budget)
        mem = peak_memory(module, inputs, wrt, device)
    except Exception as exc:  # noqa: BLE001 - a layer whose API changed: report, go on
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
        return row
    gf_fwd = 2 * counts["macs_fwd"] / t_fwd / 1e9
    gf_bwd = 2 * counts["macs_bwd"] / t_bwd / 1e9
    row.update({
        "fwd_ms": round(t_fwd * 1e3, 4), "bwd_ms": round(t_bwd * 1e3, 4), "repeats": reps,
        "peak_mem_mb": round(mem / 2 ** 20, 3),
        "params": ops.count_params(module),
        "macs_fwd": counts["macs_fwd"], "macs_bwd": counts["macs_bwd"],
        "gflops_fwd": round(gf_fwd, 3), "gflops_bwd": round(gf_bwd, 3),
        "frac_peak_fwd": round(gf_fwd / peak, 4), "frac_peak_bwd": round(gf_bwd / peak, 4),
    })
    return row


def add_ratios(rows: list[dict]) -> None:
    """Time of each layer over the time of the spatial layer it replaces, same shape."""
    base = {(r["group"], r["layer"], r["shape"]): r for r in rows if not r["error"]}
    for r in rows:
        ref = base.get((r["group"], r["replaces"], r["shape"]))
        if r["error"] or ref is None:
            continue
        for key in ("fwd", "bwd"):
            if ref[f"{key}_ms"]:
                r[f"{key}_vs_spatial"] = round(r[f"{key}_ms"] / ref[f"{key}_ms"], 3)


def markdown(rows: list[dict], peak: float, device) -> str:
    from tabulate import tabulate
    head = ["shape", "layer", "replaces", "fwd ms", "bwd ms", "fwd x", "bwd x", "peak MB",
            "MMAC fwd", "MMAC bwd", "GFLOP/s fwd", "% peak", "GFLOP/s bwd", "% peak"]
    table = []
    for r in rows:
        if r["error"]:
            table.append([r["shape"], r["layer"], r["replaces"], "error: " + r["error"][:60]]
                         + [""] * (len(head) - 4))
            continue
        table.append([
            r["shape"], r["layer"], r["replaces"], f"{r['fwd_ms']:.3f}", f"{r['bwd_ms']:.3f}",
            f"{r.get('fwd_vs_spatial', ''):}", f"{r.get('bwd_vs_spatial', ''):}",
            f"{r['peak_mem_mb']:.2f}", f"{r['macs_fwd'] / 1e6:.2f}",
            f"{r['macs_bwd'] / 1e6:.2f}", f"{r['gflops_fwd']:.2f}",
            f"{100 * r['frac_peak_fwd']:.1f}", f"{r['gflops_bwd']:.2f}",
            f"{100 * r['frac_peak_bwd']:.1f}"])
    title = (f"Layer benchmark on {common.device_name(device)}, torch {torch.__version__}; "
             f"dense float32 matmul peak {peak:.1f} GFLOP/s; "
             f"ops {ops.CONVENTION_ID} (FLOPs = 2 x MACs); 'x' = time / time of the "
             f"spatial layer it replaces")
    return title + "\n\n" + tabulate(table, headers=head, tablefmt="github")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: batch 4, two shapes, 1 warm-up, 2 repeats, small matmul")
    ap.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda[:N]")
    ap.add_argument("--batch", type=int, default=None, help="batch size (default 100)")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds of timing per case before repeats are cut (default 30; "
                         "quick 5)")
    ap.add_argument("--matmul-n", type=int, default=None,
                    help="matmul size for the peak (default 4096 CPU, 8192 GPU)")
    ap.add_argument("--layers", default="", help="comma-separated layer names or groups")
    ap.add_argument("--shapes", default="", help="comma-separated shape-name prefixes")
    common.add_output_args(ap, NAME)
    args = ap.parse_args(argv)
    args.device = common.device(args.device)
    q = args.quick
    args.batch = args.batch or (4 if q else 100)
    args.warmup = args.warmup if args.warmup is not None else (1 if q else 3)
    args.repeats = args.repeats or (2 if q else 10)
    args.matmul_n = args.matmul_n or (512 if q else (8192 if args.device.type == "cuda" else 4096))
    args.budget = args.budget or (5.0 if q else 30.0)
    if q and not args.shapes:
        args.shapes = "lenet5-conv2,vgg-small-5"
    return args


def selected(args) -> list[tuple[Case, Shape]]:
    want_l = [x for x in args.layers.split(",") if x]
    want_s = [x for x in args.shapes.split(",") if x]
    out = []
    for s in SHAPES:
        if want_s and not any(s.name.startswith(p) for p in want_s):
            continue
        for c in CASES:
            if want_l and c.name not in want_l and c.group not in want_l:
                continue
            if c.shapes and not any(s.name.startswith(p) for p in c.shapes):
                continue
            out.append((c, s))
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    peak = matmul_peak_gflops(args.device, args.matmul_n)
    rows = []
    for case, shape in selected(args):
        row = run_case(case, shape, args, args.device, peak)
        rows.append(row)
        status = row["error"] or f"fwd {row['fwd_ms']:.3f} ms, bwd {row['bwd_ms']:.3f} ms"
        print(f"{shape.name:14s} {case.name:28s} {status}", file=sys.stderr, flush=True)
    add_ratios(rows)
    out = common.output_path(args, NAME)
    common.write_csv(out, FIELDS, rows)
    print(markdown(rows, peak, args.device))
    print(f"\nwrote {out} ({len(rows)} rows) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
