"""Command line: python -m harness {list,run,ops} ...

User mistakes print one line (no traceback) and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys

from harness.errors import UserError

EPILOG = """examples:
  python -m harness list
  python -m harness run                                   # cnn on MNIST (or synthetic if absent)
  python -m harness run --method cnn --dataset mnist --epochs 5
  python -m harness run --method cnn --arch vgg-small --dataset cifar10 --set dropout_conv=0.3
  python -m harness run --suite benchmarks/mnist-table1.toml --budget short
  python -m harness ops --method cnn --arch lenet5 --dataset mnist

environment:
  SPECTRAL_BENCH_DATA     data directory (default ~/.cache/spectral-bench)
  SPECTRAL_BENCH_RESULTS  results directory (default ./results)
"""


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="cnn", help="method name (see `list`; default cnn)")
    p.add_argument("--arch", default=None, help="architecture (default: by input size)")
    p.add_argument("--dataset", default=None,
                   help="mnist, fashion-mnist, cifar10, synthetic, synthetic-cifar or a .npz path "
                        "(default: mnist if available, else synthetic)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default 5)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default 100)")
    p.add_argument("--lr", type=float, default=None, help="initial learning rate (default 0.004)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    p.add_argument("--subset", type=int, default=None,
                   help="train on N training images (val and test use N/5) for quick checks")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="method option or training option (optimizer, momentum, weight_decay, "
                        "schedule, lr_min, warmup_epochs, clip_norm, val_size); repeatable")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--data-dir", default=None, help="dataset directory (overrides $SPECTRAL_BENCH_DATA)")
    p.add_argument("--results-dir", default=None,
                   help="results directory (overrides $SPECTRAL_BENCH_RESULTS; default ./results)")
    p.add_argument("--force", action="store_true", help="re-run even if the run is finished")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--suite", default=None,
                   help="run every spec of a suite TOML file one after another (skips finished runs)")
    p.add_argument("--budget", default=None, help="suite budget (e.g. paper, short)")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m harness", description="spectral-bench: train and compare spectral CNNs "
        "under one protocol.", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", metavar="{list,run,ops}")
    sub.add_parser("list", help="list methods, architectures and datasets")
    run = sub.add_parser("run", help="train one run (or a suite) and write its result record",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(run)
    ops = sub.add_parser("ops", help="print forward/backward op counts without training")
    ops.add_argument("--method", default="cnn")
    ops.add_argument("--arch", default=None)
    ops.add_argument("--dataset", default="mnist",
                     help="dataset whose input shape is used (default mnist)")
    ops.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    return ap


def cmd_list() -> None:
    import methods
    from harness import data

    print("methods:")
    for name in methods.names():
        info = methods.get(name)
        tag = " [reconstruction]" if info.reconstruction else ""
        print(f"  {name:<26} archs: {', '.join(info.archs)}{tag}")
        if info.description:
            print(f"  {'':<26} {info.description}")
    print("datasets:")
    for name, (shape, k) in data.SHAPES.items():
        print(f"  {name:<26} {'x'.join(map(str, shape))}, {k} classes")
    print(f"  {'path/to/file.npz':<26} x_train, y_train, x_test, y_test (uint8, NHWC or NCHW)")


def cmd_run(args) -> None:
    from harness import data, runner
    from harness.spec import load_suite, split_assignments

    sets = split_assignments(args.sets)
    common = dict(data_dir=args.data_dir, results_dir=args.results_dir, device=args.device,
                  force=args.force, progress=not args.quiet)
    if args.suite:
        suite = load_suite(args.suite, args.budget)
        print(f"suite {suite.name} (budget {suite.budget or '-'}): {len(suite.specs)} runs",
              file=sys.stderr)
        for i, spec in enumerate(suite.specs, 1):
            print(f"[{i}/{len(suite.specs)}] {spec.method}/{spec.arch} {spec.dataset} seed {spec.seed}",
                  file=sys.stderr)
            record = runner.execute(spec, **common)
            print(runner.summary_line(record))
        return
    dataset = args.dataset or data.default_dataset(args.data_dir)
    spec = runner.make_spec(args.method, args.arch, dataset, sets, epochs=args.epochs,
                            batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                            subset=args.subset)
    record = runner.execute(spec, **common)
    from harness import store
    print(runner.summary_line(record))
    print(f"record: {store.run_dir(store.results_root(args.results_dir), spec) / 'result.json'}")


def cmd_ops(args) -> None:
    from harness import data, ops, runner
    from harness.spec import split_assignments

    spec = runner.make_spec(args.method, args.arch, args.dataset, split_assignments(args.sets))
    shape, k = data.dataset_shape(args.dataset)
    print(ops.ops_command(spec.method, spec.arch, shape, k, hparams=spec.hparams))


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "list":
            cmd_list()
        elif args.command == "run":
            cmd_run(args)
        elif args.command == "ops":
            cmd_ops(args)
        else:
            parser().print_help()
            return 2
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume from the last checkpoint",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
