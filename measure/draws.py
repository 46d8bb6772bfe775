"""What a random draw costs on this device: nanoseconds per element of the draws the
methods make (issue 26: where CEMNet's remaining step time goes).

CEMNet's approximated dropout and Leaky ReLU multiply every real number of a spectrum by
independent N(1, std) draws, two per number (`methods.cemnet.noise_factor`); the CNN's
dropout draws one Bernoulli per activation. This times, on the CEMNet LeNet-5 block-1
noise tensor (batch 100, 6 x 28 x 28 complex: 940,800 real numbers), `uniform_` (the
generator alone), `normal_` (what CEMNet draws), the CEMNet noise factor of one block
(two `normal_` draws and their product), `bernoulli_` (what `nn.Dropout` draws), and a
Box-Muller transform of `uniform_` written with torch ops (an alternative to
`normal_`). Median of 5 blocks of back-to-back calls.

    python -m measure.draws --threads 1
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys

import torch

from measure.common import device, time_steps

N = 100 * 6 * 28 * 28 * 2


def box_muller(n: int, dev) -> torch.Tensor:
    u = torch.rand(2, n // 2, device=dev)
    r = u[0].log_().mul_(-2).sqrt_()
    theta = u[1].mul_(2 * math.pi)
    return torch.cat((r * theta.cos(), r * theta.sin_()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = device(args.device)
    x, y = torch.empty(N, device=dev), torch.empty(N, device=dev)
    cases = {"uniform_": lambda: x.uniform_(),
             "normal_(1, 0.125)": lambda: x.normal_(1.0, 0.125),
             "noise factor: 2 normal_ + product": lambda: x.normal_(1.0, 0.125).mul_(
                 y.normal_(1.0, 0.25)),
             "bernoulli_(0.9)": lambda: x.bernoulli_(0.9),
             "Box-Muller from uniform_ (torch ops)": lambda: box_muller(N, dev)}
    print(f"{N:,} elements on {dev} ({torch.get_num_threads()} threads), torch {torch.__version__}")
    for name, fn in cases.items():
        fn()
        t = statistics.median(time_steps(fn, dev, 10) for _ in range(5))
        print(f"{name:40s} {t / N * 1e9:6.2f} ns per element  ({t * 1e3:.2f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
