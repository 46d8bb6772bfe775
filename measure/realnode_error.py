"""float32 error of the real-node (Toom-Cook / Winograd) convolution against its conditioning.

For every tile size and node set that `methods.realnode` offers, and the kernel sizes the cnn
skeletons use (5x5 in lenet5, 3x3 in vgg-small), it runs `RealNodeConv2d` in float32 at the
networks' conv shapes and compares with `F.conv2d` in float64 on the same (float32-rounded)
weights and inputs, so only the arithmetic differs. The float32 `F.conv2d` error is given
beside it. Columns: relative L2 error ||y32 - y64|| / ||y64||, relative max error
max|y32 - y64| / max|y64|, and cond_2 of the transform matrices (A^T, G, B^T) and of the
Vandermonde V. Writes <results>/_measure/realnode_error.csv and prints a Markdown table.

    python -m measure.realnode_error             # the networks' shapes, batch 8
    python -m measure.realnode_error --quick     # small shapes (what the tests run)
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F

from measure import common
from methods.realnode import NODE_SETS, TILES, RealNodeConv2d

NAME = "realnode_error"     # <results>/_measure/realnode_error.csv
# (name, cin, cout, k, h): the convs of methods.cnn's lenet5 and vgg-small
NET_SHAPES = (("lenet5-conv1", 1, 6, 5, 28), ("lenet5-conv2", 6, 16, 5, 14),
              ("vgg-small-1", 3, 64, 3, 32), ("vgg-small-2", 64, 128, 3, 16),
              ("vgg-small-3", 128, 256, 3, 8))
QUICK_SHAPES = (("k5", 4, 8, 5, 12), ("k3", 4, 8, 3, 12))
FIELDS = ["shape", "k", "tile", "nodes", "F", "rel_l2", "rel_max", "rel_l2_conv2d_fp32",
          "cond_AT", "cond_G", "cond_BT", "cond_V"]


def _errors(y, ref):
    y, ref = y.double(), ref.double()
    return (float((y - ref).norm() / ref.norm()),
            float((y - ref).abs().max() / ref.abs().max()))


def error_rows(shapes=QUICK_SHAPES, tiles=TILES, node_sets=NODE_SETS, batch: int = 2,
               seed: int = 0) -> list[dict]:
    rows = []
    for name, cin, cout, k, h in shapes:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(batch, cin, h, h, generator=g).float()
        direct = None
        for nodes in node_sets:
            for tile in tiles:
                torch.manual_seed(seed)
                layer = RealNodeConv2d(cin, cout, k, tile=tile, nodes=nodes)   # float32
                with torch.no_grad():
                    ref = F.conv2d(x.double(), layer.weight.double(), layer.bias.double(),
                                   padding=k // 2)
                    if direct is None:
                        direct = _errors(F.conv2d(x, layer.weight, layer.bias, padding=k // 2),
                                         ref)[0]
                    rel_l2, rel_max = _errors(layer(x), ref)
                info = layer.describe()
                rows.append({"shape": name, "k": k, "tile": tile, "nodes": nodes,
                             "F": info["F"], "rel_l2": rel_l2, "rel_max": rel_max,
                             "rel_l2_conv2d_fp32": direct,
                             **{c: info[c] for c in ("cond_AT", "cond_G", "cond_BT", "cond_V")}})
    return rows


def markdown(rows) -> str:
    from tabulate import tabulate
    table = [[r["shape"], r["F"], r["nodes"], f"{r['rel_l2']:.2e}", f"{r['rel_max']:.2e}",
              f"{r['rel_l2_conv2d_fp32']:.2e}", f"{r['cond_AT']:.3g}", f"{r['cond_G']:.3g}",
              f"{r['cond_BT']:.3g}", f"{r['cond_V']:.3g}"] for r in rows]
    return tabulate(table, headers=["shape", "F(m x m, r x r)", "nodes", "fp32 rel L2",
                                    "fp32 rel max", "conv2d fp32 rel L2", "cond A^T",
                                    "cond G", "cond B^T", "cond V"], tablefmt="github")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small shapes, batch 2")
    ap.add_argument("--batch", type=int, default=None)
    common.add_output_args(ap, NAME)
    args = ap.parse_args(argv)
    shapes = QUICK_SHAPES if args.quick else NET_SHAPES
    rows = error_rows(shapes, batch=args.batch or (2 if args.quick else 8))
    out = common.output_path(args, NAME)
    common.write_csv(out, FIELDS, rows)
    print(markdown(rows))
    print(f"\nwrote {out} ({len(rows)} rows)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
