"""Command line: `python -m harness` (or `spectral-bench`) SUBCOMMAND ...

    list     methods (archs, default arch per input shape, options), datasets
             -> methods registry, harness.data
    run      one run, or every run of a suite one after another
             -> harness.suite.make_spec / load_suite -> harness.runner.execute
    ops      forward/backward op counts of a model, without training    -> harness.ops
    sweep    a suite as a SLURM job array, or locally, a few at a time  -> harness.schedule
    status   where each run of a suite stands                           -> harness.schedule
    report   report.md/.html comparing finished runs                    -> reports.render
    check    self-check of this machine and install                     -> harness.check

This module is argparse wiring only: it parses, calls into the modules above and prints.
User mistakes (`harness.errors.UserError`) print one line (no traceback) and exit with
status 2; a disk the user must fix (full, read-only) too; Ctrl-C exits 130 (SIGTERM to a
local sweep 143); `status | head` ends quietly (141, as for SIGPIPE).
"""

from __future__ import annotations

import argparse
import io
import os
import sys

from harness.errors import UserError

EPILOG = """examples:
  python -m harness list
  python -m harness run                                   # cnn on MNIST (or synthetic if absent)
  python -m harness run --method cnn --dataset mnist --epochs 5
  python -m harness run --method cnn --arch vgg-small --dataset cifar10 --set dropout_conv=0.3
  python -m harness run --suite benchmarks/mnist-table1.toml --budget short
  python -m harness ops --method cnn --arch lenet5 --dataset mnist
  python -m harness sweep benchmarks/smoke.toml --dry-run
  python -m harness sweep benchmarks/mnist-table1.toml --executor slurm --partition gpu
  python -m harness status benchmarks/mnist-table1.toml
  python -m harness report benchmarks/mnist-table1.toml --out reports/out/mnist
  python -m harness check --device cuda                   # is this machine and install sound?

environment:
  SPECTRAL_BENCH_DATA     data directory (default ~/.cache/spectral-bench)
  SPECTRAL_BENCH_RESULTS  results directory (default ./results)
  SPECTRAL_BENCH_JOBS     private folder for sweep's job files (default <suite dir>/logs)
"""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Epilogs as written; '(default: X)' after every option whose default is a value.
    Options whose default is resolved later (None) say it in their own help text."""

    def _get_help_string(self, action):
        if action.default in (None, False, [], argparse.SUPPRESS) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def spec_default(key: str):
    """A training default from RunSpec, so --help never drifts from what runs."""
    from harness.spec import RunSpec

    return RunSpec.__dataclass_fields__[key].default


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="cnn", help="method name (see `list`)")
    p.add_argument("--arch", default=None,
                   help="architecture (default: the method's own for the input size, printed by `list`)")
    p.add_argument("--dataset", default=None,
                   help="mnist, fashion-mnist, cifar10, synthetic, synthetic-cifar or a .npz path "
                        "(default: mnist if available, else synthetic)")
    p.add_argument("--epochs", type=int, default=None, help=f"epochs (default: {spec_default('epochs')})")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"batch size (default: {spec_default('batch_size')})")
    p.add_argument("--lr", type=float, default=None,
                   help=f"initial learning rate (default: {spec_default('lr')})")
    p.add_argument("--seed", type=int, default=None, help=f"random seed (default: {spec_default('seed')})")
    p.add_argument("--subset", type=int, default=None,
                   help="train on N training images, and cut val and test to N/5, for quick "
                        "checks (default: all images)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="method option or training option (optimizer, momentum, weight_decay, "
                        "schedule, lr_min, warmup_epochs, clip_norm, val_size, precision, graph, "
                        "cudnn_benchmark, compile); repeatable")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads; pinned counts are part of the run id (default: auto, the cores "
                        "this process may use; recorded)")
    p.add_argument("--data-dir", default=None, help="dataset directory (overrides $SPECTRAL_BENCH_DATA)")
    p.add_argument("--results-dir", default=None,
                   help="results directory (overrides $SPECTRAL_BENCH_RESULTS; default ./results)")
    p.add_argument("--force", action="store_true", help="re-run even if the run is finished")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--log", choices=("tensorboard",), default=None,
                   help="live training curves: tensorboard writes each epoch to <run dir>/tensorboard/ "
                        "(needs pip install -e '.[tensorboard]'; not part of the run id)")
    p.add_argument("--suite", default=None,
                   help="run every spec of a suite TOML file (or an installed suite's name) one after "
                        "another (skips finished runs)")
    p.add_argument("--budget", default=None,
                   help="suite budget, e.g. paper, short (default: the suite's default_budget)")


def prog() -> str:
    """How the user called us: the console script, else `python -m harness`."""
    return "spectral-bench" if os.path.basename(sys.argv[0] or "") == "spectral-bench" \
        else "python -m harness"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=prog(), description="spectral-bench: train and compare spectral CNNs "
        "under one protocol.", epilog=EPILOG, formatter_class=HelpFormatter)
    from harness import __version__
    ap.add_argument("--version", action="version", version=f"spectral-bench {__version__}")
    sub = ap.add_subparsers(dest="command")
    sub.add_parser("list", help="list methods (with their default architecture per input shape), "
                   "architectures and datasets", formatter_class=HelpFormatter,
                   epilog="example:\n  python -m harness list")
    run = sub.add_parser("run", help="train one run (or a suite) and write its result record",
                         epilog=EPILOG, formatter_class=HelpFormatter)
    add_run_args(run)
    ops = sub.add_parser(
        "ops", help="print forward/backward op counts without training", formatter_class=HelpFormatter,
        description="Count a model's forward and backward MACs per image (the harness convention, "
                    "harness/ops/convention.py), with the breakdown by category, without training "
                    "or data.",
        epilog="examples:\n  python -m harness ops --method cemnet --dataset mnist\n"
               "  python -m harness ops --method cnn --arch vgg-small --dataset cifar10")
    ops.add_argument("--method", default="cnn", help="method name (see `list`)")
    ops.add_argument("--arch", default=None,
                     help="architecture (default: the method's own for the dataset's input size)")
    ops.add_argument("--dataset", default="mnist", help="dataset whose input shape is used")
    ops.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                     help="method option; repeatable")
    rep = sub.add_parser("report", help="write report.md and report.html comparing finished runs",
                         formatter_class=HelpFormatter,
                         epilog="example:\n  python -m harness report benchmarks/mnist-all.toml "
                                "--budget short --out reports/out/mnist")
    rep.add_argument("source", help="a suite .toml file (its runs) or a results directory (all runs)")
    rep.add_argument("--out", required=True, help="output directory for report.md/.html and figures/")
    rep.add_argument("--results-dir", default=None,
                     help="results root for a suite (overrides $SPECTRAL_BENCH_RESULTS)")
    rep.add_argument("--budget", default=None,
                     help="the suite budget to report, as for sweep and status (default: the "
                          "suite's default_budget)")
    rep.add_argument("--all-budgets", action="store_true",
                     help="report every budget of the suite (each budget is its own setting)")
    rep.add_argument("--baseline", default="cnn",
                     help="method to pair against by seed, at each method's own architecture; "
                          "METHOD/ARCH declares one baseline for every architecture")
    rep.add_argument("--quiet", action="store_true", help="no progress output")
    add_sweep_parsers(sub)
    chk = sub.add_parser("check", help="self-check: a short epoch of every method, a local sweep "
                         "and a resume on one device",
                         description="Runs a short epoch of every registered method (default "
                         "architecture, and vgg-small where available) on synthetic data, a "
                         "two-run local sweep and a resume, validates each record and prints one "
                         "row per check. Exits 1 if any check fails.",
                         epilog="example:\n  python -m harness check --device cuda\n"
                         "  srun --gpus=1 python -m harness check     # on a cluster's GPU node",
                         formatter_class=HelpFormatter)
    chk.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    chk.add_argument("--results-dir", default=None,
                     help="keep the check's records here (default: a temporary directory, removed)")
    return ap


SWEEP_EPILOG = """examples:
  python -m harness sweep benchmarks/mnist-table1.toml --executor slurm --partition gpu
  python -m harness sweep benchmarks/smoke.toml --executor slurm --dry-run
  python -m harness sweep benchmarks/smoke.toml --executor local --max-parallel 1
  python -m harness sweep mnist-table1 --budget reference --executor local --rerun-stale --dry-run
  python -m harness status benchmarks/mnist-table1.toml

SLURM options override the suite's [slurm] table; runs that are finished, queued or
running are never submitted again, except finished runs made by code that has changed
since, with --rerun-stale.
"""


def add_sweep_parsers(sub) -> None:
    from harness.schedule import options as slurm_options

    sw = sub.add_parser("sweep", help="submit a suite as a SLURM job array (or run it locally)",
                        epilog=SWEEP_EPILOG, formatter_class=HelpFormatter)
    sw.add_argument("suite", help="suite TOML file (or an installed suite's name, e.g. smoke)")
    sw.add_argument("--budget", default=None, help="suite budget (default: the suite's default_budget)")
    sw.add_argument("--executor", choices=("slurm", "local"), default="slurm",
                    help="slurm (default): submit and exit; local: run here, a few at a time")
    sw.add_argument("--dry-run", action="store_true",
                    help="print the expanded plan (run ids, what is done, what is stale) and submit nothing")
    sw.add_argument("--rerun-stale", action="store_true",
                    help="also rerun (forced: the old record stays until the new one is complete) "
                         "finished runs made by code that has changed since, or without a code "
                         "fingerprint; --dry-run lists them")
    sw.add_argument("--results-dir", default=None,
                    help="results directory (overrides $SPECTRAL_BENCH_RESULTS; default ./results)")
    sw.add_argument("--data-dir", default=None, help="dataset directory (overrides $SPECTRAL_BENCH_DATA)")
    sw.add_argument("--device", default="auto", help="device inside a SLURM task (default auto)")
    sw.add_argument("--log", choices=("tensorboard",), default=None,
                    help="live training curves of every run in <run dir>/tensorboard/ (needs "
                         "pip install -e '.[tensorboard]'; not part of the run ids)")
    g = sw.add_argument_group("SLURM (override the suite's [slurm] table)",
                              "An option left out takes the suite's [slurm] value, else the default "
                              "shown, else sbatch's own.")
    slurm_options.add_flags(g)
    lo = sw.add_argument_group("local executor")
    lo.add_argument("--max-parallel", type=int, default=None,
                    help="runs at once (default: one per device)")
    lo.add_argument("--devices", default=None,
                    help="comma-separated devices, e.g. cuda:0,cuda:1 (default: all GPUs, else cpu)")
    st = sub.add_parser(
        "status", help="pending, running, done and failed runs of a suite", formatter_class=HelpFormatter,
        description="Where each run of a suite stands (done, diverged, running, pending, failed, "
                    "cancelled, not submitted), from the sweep manifest, SLURM's job states "
                    "(sacct, else squeue) and the run records.",
        epilog="examples:\n  python -m harness status benchmarks/mnist-table1.toml\n"
               "  python -m harness status benchmarks/smoke.toml --budget smoke --json")
    st.add_argument("suite", help="suite TOML file (or an installed suite's name)")
    st.add_argument("--budget", default=None, help="suite budget (default: the suite's default_budget)")
    st.add_argument("--results-dir", default=None,
                    help="results directory (overrides $SPECTRAL_BENCH_RESULTS; default ./results)")
    st.add_argument("--json", action="store_true", help="print the rows as JSON")


def cmd_list() -> None:
    import methods
    from harness import data

    shapes = list(dict.fromkeys(tuple(shape) for shape, _ in data.SHAPES.values()))
    print("methods:")
    for name in methods.names():
        info = methods.get(name)
        tag = " [reconstruction]" if info.reconstruction else ""
        print(f"  {name:<26} archs: {', '.join(info.archs)}{tag}")
        # what `run` picks when --arch is not given, for each input shape
        print(f"  {'':<26} default arch: " + ", ".join(
            f"{'x'.join(map(str, sh))} -> {methods.resolve_arch(name, None, sh)}" for sh in shapes))
        if info.description:
            print(f"  {'':<26} {info.description}")
        groups: dict[str, list[str]] = {}    # the options (default, choices), by architecture
        for arch in info.archs:
            line = ", ".join(f"{k}={o.describe(arch)}" for k, o in info.options_for(arch).items())
            groups.setdefault(line or "none", []).append(arch)
        for line, archs in groups.items():
            where = f" ({', '.join(archs)})" if len(groups) > 1 else ""
            print(f"  {'':<26} options{where}: {line}")
    print("datasets:")
    for name, (shape, k) in data.SHAPES.items():
        print(f"  {name:<26} {'x'.join(map(str, shape))}, {k} classes")
    print(f"  {'path/to/file.npz':<26} x_train, y_train, x_test, y_test (uint8, NHWC or NCHW)")


def cmd_run(args) -> None:
    from harness import data, runner, store
    from harness.spec import parse_assignments
    from harness.suite import load_suite, make_spec

    from harness import livelog
    from harness.text import plural

    livelog.check(args.log)       # before anything runs: one line naming the extra
    sets = parse_assignments(args.sets)
    common = dict(data_dir=args.data_dir, results_dir=args.results_dir, device=args.device,
                  force=args.force, progress=not args.quiet, log=args.log)
    if args.suite:
        given = [flag for flag, value in (
            ("--method", args.method != "cnn"), ("--arch", args.arch), ("--dataset", args.dataset),
            ("--epochs", args.epochs), ("--batch-size", args.batch_size), ("--lr", args.lr),
            ("--seed", args.seed), ("--subset", args.subset), ("--set", args.sets),
            ("--threads", args.threads is not None)) if value]
        if given:
            raise UserError(f"{', '.join(given)} cannot be combined with --suite: the suite file "
                            f"defines its runs; edit it or add a budget")
        suite = load_suite(args.suite, args.budget)
        print(f"suite {suite.name} (budget {suite.budget or '-'}): {plural(len(suite.specs), 'run')}",
              file=sys.stderr)
        failed, refused, elsewhere = 0, [], 0
        for i, spec in enumerate(suite.specs, 1):
            print(f"[{i}/{len(suite.specs)}] {spec.method}/{spec.arch} {spec.dataset} seed {spec.seed}",
                  file=sys.stderr)
            try:
                print(runner.summary_line(runner.execute(spec, **common)))
            except store.RunLocked as exc:    # another process trains it: not a failure
                elsewhere += 1
                print(f"skipped: {exc}", file=sys.stderr)
            except UserError as exc:          # one line now, counted at the end; go on
                refused.append(spec.run_id)
                print(f"run {spec.run_id} refused: {exc}", file=sys.stderr)
            except Exception as exc:  # recorded as 'failed' in its result.json; go on
                failed += 1
                print(f"run {spec.run_id} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        if elsewhere:
            print(f"{plural(elsewhere, 'run')} running elsewhere "
                  f"{'was' if elsewhere == 1 else 'were'} skipped", file=sys.stderr)
        if failed or refused:
            raise UserError(f"{failed + len(refused)} of {len(suite.specs)} runs did not finish "
                            f"({failed} failed, {len(refused)} refused, reasons above); "
                            f"python -m harness status {args.suite} shows them")
        return
    if args.dataset is None:   # check everything else before MNIST is looked for (or downloaded)
        make_spec(args.method, args.arch, "synthetic", sets, epochs=args.epochs,
                         batch_size=args.batch_size, lr=args.lr, seed=args.seed, subset=args.subset,
                         threads=args.threads)
        store.results_root(args.results_dir)
        from harness.device import resolve_device
        resolve_device(args.device)
    dataset = args.dataset or data.default_dataset(args.data_dir)
    spec = make_spec(args.method, args.arch, dataset, sets, epochs=args.epochs,
                            batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                            subset=args.subset, threads=args.threads)
    record = runner.execute(spec, **common)
    print(runner.summary_line(record))
    print(f"record: {store.RunDir.of(store.results_root(args.results_dir), spec).result}")


def cmd_ops(args) -> None:
    from harness import data, ops
    from harness.spec import parse_assignments
    from harness.suite import make_spec

    spec = make_spec(args.method, args.arch, args.dataset, parse_assignments(args.sets))
    shape, k = data.dataset_shape(args.dataset)
    print(ops.ops_command(spec.method, spec.arch, shape, k, hparams=spec.hparams))


def cmd_report(args) -> None:
    from reports.render import write_report

    md, htm = write_report(args.source, args.out, results_dir=args.results_dir, budget=args.budget,
                           baseline=args.baseline, progress=not args.quiet,
                           all_budgets=args.all_budgets)
    print(f"wrote {md} and {htm}")


def cmd_sweep(args) -> int:
    from harness import schedule
    from harness.schedule import options

    overrides = options.from_args(args)
    devices = None
    if args.devices is not None:
        devices = [d.strip() for d in args.devices.split(",")]
        if not all(devices):
            raise UserError(f"--devices {args.devices!r} names an empty device; give devices comma "
                            f"separated, e.g. --devices cuda:0,cuda:1 (or leave it out for all)")
    summary = schedule.sweep(args.suite, budget=args.budget, executor=args.executor,
                             results_dir=args.results_dir, data_dir=args.data_dir, device=args.device,
                             slurm=overrides, max_parallel=args.max_parallel, devices=devices,
                             dry_run=args.dry_run, rerun_stale=args.rerun_stale, log=args.log,
                             out=lambda line: print(line, flush=True))
    return 1 if summary.get("local", {}).get("failed") else 0


def cmd_status(args) -> None:
    import json

    from harness import schedule

    report = schedule.suite_status(args.suite, budget=args.budget, results_dir=args.results_dir)
    if args.json:
        print(json.dumps({**report, "rows": [r.to_dict() for r in report["rows"]]}, indent=2))
    else:
        print(schedule.format_status(report))


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        code = _dispatch(args)
        sys.stdout.flush()      # a closed pipe shows up here, not at interpreter exit
        return code
    except BrokenPipeError:
        # `status | head`: the reader went away. Point stdout at /dev/null so that the
        # interpreter's final flush does not complain, and exit as SIGPIPE would.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            pass
        return 141


def _dispatch(args) -> int:
    from harness.files import disk_error

    try:
        if args.command == "list":
            cmd_list()
        elif args.command == "run":
            cmd_run(args)
        elif args.command == "ops":
            cmd_ops(args)
        elif args.command == "sweep":
            return cmd_sweep(args)
        elif args.command == "status":
            cmd_status(args)
        elif args.command == "report":
            cmd_report(args)
        elif args.command == "check":
            from harness import check
            return check.main(args.device, args.results_dir)
        else:
            parser().print_help()
            return 2
    except UserError as exc:   # one line, also when it quotes text from a file
        print("error: " + " ".join(str(exc).splitlines()), file=sys.stderr)
        return 2
    except OSError as exc:   # disk full, read-only, a file where a folder belongs: one line
        if isinstance(exc, BrokenPipeError) or disk_error(exc.filename or "", exc) is None:
            raise
        print(f"error: {disk_error(exc.filename or '', exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:    # SIGTERM to a local sweep too (exit_status 143)
        print("interrupted; run the same command again to resume from the last checkpoint",
              file=sys.stderr)
        return getattr(exc, "exit_status", 130)
    return 0


if __name__ == "__main__":
    sys.exit(main())
