"""Approximation error of spectral pooling vs max pooling (Rippel et al. 2015, Fig. 4a analogue).

On CIFAR-10 test images (pixels in [0, 1], all 3 channels; the paper used ImageNet
validation images), for every kept fraction of parameters:

- spectral pooling to s x s (s = 1..32, fraction s^2 / 1024) with the shared crop
  `methods.fourier_pooling.spectral_crop`, reconstructed at 32 x 32 by zero-padding the spectrum
  (`spectral_pad`, its right inverse; an even size's Nyquist bin is split over +-n). The
  reconstruction pad(crop(.)) is the orthogonal projection onto band-limited real maps,
  whatever the fold constant c;
- max pooling with stride k = 2, 4, 8, 16 (fraction 1 / k^2), reconstructed by
  nearest-neighbour replication of each block's maximum.

The error is computed per image, ||x - x_hat||_2 / ||x||_2 over the 3 x 32 x 32 tensor, then
averaged over images (not per pixel across images, a bug of two reimplementations).
Writes a CSV (default <results>/_measure/approx_error.csv, which the reports pick up) and
prints a Markdown table at the fractions both methods reach (1/4, 1/16, 1/64, 1/256).

    SPECTRAL_BENCH_DATA=/work/shared/data python -m measure.approx_error --n 500
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F

from harness import data as datasets
from measure import common
from methods.fourier_pooling import spectral_crop, spectral_pad

NAME = "approx_error"       # <results>/_measure/approx_error.csv

FIELDS = ["method", "size", "stride", "kept_fraction", "mean_rel_error", "std_rel_error",
          "sem_rel_error", "n_images", "reconstruction"]


def relative_errors(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Per-image ||x - x_hat|| / ||x|| over all channels and pixels."""
    num = (x - x_hat).flatten(1).norm(dim=1)
    return num / x.flatten(1).norm(dim=1)


def spectral_reconstruction(x: torch.Tensor, s: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    spec = spectral_pad(spectral_crop(torch.fft.fft2(x), (s, s)), (h, w))
    return torch.fft.ifft2(spec).real


def maxpool_reconstruction(x: torch.Tensor, k: int) -> torch.Tensor:
    pooled = F.max_pool2d(x, k)
    return pooled.repeat_interleave(k, dim=-2).repeat_interleave(k, dim=-1)


def row(method, size, stride, frac, errs, recon) -> dict:
    e = errs.numpy()
    return {"method": method, "size": size, "stride": stride, "kept_fraction": frac,
            "mean_rel_error": float(e.mean()), "std_rel_error": float(e.std(ddof=1)),
            "sem_rel_error": float(e.std(ddof=1) / math.sqrt(len(e))), "n_images": len(e),
            "reconstruction": recon}


def run(x: torch.Tensor) -> list[dict]:
    h, w = x.shape[-2:]
    rows = []
    for s in range(1, min(h, w) + 1):
        errs = relative_errors(x, spectral_reconstruction(x, s))
        rows.append(row("spectral", s, "", s * s / (h * w), errs, "zero-padded spectrum"))
    k = 2
    while h % k == 0 and w % k == 0 and k <= min(h, w) // 2:
        errs = relative_errors(x, maxpool_reconstruction(x, k))
        rows.append(row("max", h // k, k, 1 / (k * k), errs, "nearest-neighbour replication"))
        k *= 2
    return rows


def load_images(n: int, data_dir=None) -> torch.Tensor:
    _, _, x_test, _, _ = datasets.load_raw("cifar10", data_dir)
    return torch.from_numpy(np.ascontiguousarray(x_test[:n])).double().div_(255)


def table(rows: list[dict]) -> str:
    maxes = [r for r in rows if r["method"] == "max"]
    spec = {r["kept_fraction"]: r for r in rows if r["method"] == "spectral"}
    lines = ["| kept fraction | spectral (size) | max pool (stride) |", "|---|---|---|"]
    for m in maxes:
        s = spec.get(m["kept_fraction"])
        sp = f"{s['mean_rel_error']:.4f} ± {s['sem_rel_error']:.4f} ({s['size']}x{s['size']})" if s else "-"
        lines.append(f"| 1/{round(1 / m['kept_fraction'])} | {sp} | "
                     f"{m['mean_rel_error']:.4f} ± {m['sem_rel_error']:.4f} ({m['stride']}) |")
    best_max = min(m["mean_rel_error"] for m in maxes) if maxes else float("nan")
    below = [r for r in spec.values() if r["mean_rel_error"] <= best_max]
    if below:
        r = min(below, key=lambda r: r["kept_fraction"])
        lines.append(f"\nSpectral pooling matches the best max-pool error ({best_max:.4f}, stride 2, "
                     f"fraction 1/4) already at {r['size']}x{r['size']} "
                     f"(fraction {r['kept_fraction']:.3f}).")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=500, help="number of CIFAR-10 test images (default 500)")
    p.add_argument("--data-dir", default=None, help="dataset directory (default $SPECTRAL_BENCH_DATA)")
    common.add_output_args(p, NAME)
    args = p.parse_args(argv)
    x = load_images(args.n, args.data_dir)
    rows = run(x)
    out = common.output_path(args, NAME)
    common.write_csv(out, FIELDS, rows)
    print(f"{len(x)} CIFAR-10 test images; mean per-image relative l2 error ± s.e.m.\n")
    print(table(rows))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
