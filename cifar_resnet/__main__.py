"""Command line: `python -m cifar_resnet train --depth 56 --version 2`.

A thin layer over the library: it parses flags into a Config (config.resolve), and maps the
library's errors onto one line and an exit status (2: bad input, 1: training failed,
130 or 143: interrupted by SIGINT or SIGTERM; rerun the same command to resume).

Flags, config files, experiment files and `train`'s data files are checked before TensorFlow is
imported (config, architecture, presets and datasets import none), so bad input is refused at
once; `sweep --dry-run` never imports it.
"""

from __future__ import annotations

import argparse
import os
import sys

# Before TensorFlow is imported: keep its C++ start-up chatter out of the user's terminal.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _import_tensorflow_quietly():
    """Imports TensorFlow with file descriptor 2 closed.

    TensorFlow 2.21 writes start-up lines to fd 2 before any log level applies, which would
    bury the one-line errors this CLI promises. Python exceptions are still raised as usual.
    """
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import keras  # noqa: F401  (imports tensorflow)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, with a "did you mean" for an unknown flag near a known one;
    abbreviated flags are refused (`--iteration` is not `--iterations`). `lazy_epilog`, a
    callable, is run only when help is shown."""

    lazy_epilog = None

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        self._argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def _known_flags(self) -> list:
        """This parser's flags, and those of the subcommand named on the command line."""
        flags = list(self._option_string_actions)
        argv = getattr(self, "_argv", [])
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, parser in action.choices.items():
                    if name in argv:
                        flags += parser._option_string_actions
        return flags

    def error(self, message):
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            from cifar_resnet.spec.choices import closest
            known = self._known_flags()
            notes = []
            for word in message[len(prefix):].split():
                flag = word.split("=", 1)[0]
                near = closest(flag, known) if flag.startswith("-") else None
                notes.append(f"{word} (did you mean {near}?)" if near else word)
            message = prefix + " ".join(notes)
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def format_help(self):
        if self.lazy_epilog is not None:
            self.epilog = self.lazy_epilog()
        return super().format_help()


def _experiments_epilog() -> str:
    """The experiments of the registry (experiments/*.py), for `sweep --help`."""
    from cifar_resnet.spec import experiments  # no TensorFlow
    return (f"experiments (in {experiments.experiments_dir()}): "
            f"{', '.join(experiments.list_experiments())}")


def _add_set_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config field, e.g. --set val_fraction=0.1 (YAML value)")


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    flag = p.add_argument
    flag("--config", help="JSON or YAML file of settings (flags override it)")
    flag("--workdir", help="run directory (default runs/<net>/seed<k>); rerun to resume")
    flag("--depth", type=int, help="6n+2 (basic blocks) or 9n+2 (bottleneck)")
    flag("--version", type=int, help="1: original ResNet, 2: pre-activation")
    flag("--plain", action=argparse.BooleanOptionalAction, default=None,
         help="the paper's plain net (no shortcuts)")
    flag("--shortcut", help="A (zero-padding identity, paper), B or C (projections)")
    flag("--block", help="basic or bottleneck (default: basic for v1, bottleneck for v2)")
    flag("--preset", help="paper (default) or keras-example")
    flag("--epochs", type=int, help="train this many passes over the training images, the lr "
                                    "drops at 50%% and 75%% of them (default: 64k iterations)")
    flag("--iterations", type=int,
         help="train exactly this many iterations, the last pass partial if need be, the lr "
              "drops at 50%% and 75%% of them. The paper's \"64k iterations\": --iterations "
              "64000 (the default), or as the experiment files and the README's results train "
              "it, in whole passes: --iterations 64000 --whole-passes (164 passes of 391 = "
              "64,124 iterations, the drops at 32k and 48k)")
    flag("--whole-passes", action=argparse.BooleanOptionalAction, default=None,
         help="round --iterations up to whole passes (whole --set log_every periods), the lr "
              "drops kept at their fractions of --iterations; a run directory made before "
              "this flag keeps its whole passes")
    flag("--batch-size", type=int,
         help="images per iteration, the global batch over all devices (paper: 128)")
    flag("--lr", type=float, help="base learning rate")
    flag("--dataset", help="cifar10 (default), cifar100 (--set label_mode=coarse for its 20 "
                           "superclasses) or synthetic")
    flag("--data-dir", help="the data set's official folder or archive (else $CIFAR10_DIR or "
                            "$CIFAR100_DIR, else ~/.keras/datasets)")
    flag("--seed", type=int, help="seed of the initialization, shuffling and augmentation "
                                   "(default 0); runs land in runs/<net>/seed<k>")
    flag("--jit-compile", action=argparse.BooleanOptionalAction, default=None, help="XLA")
    from cifar_resnet.spec import config as config_lib, cpu, rundir  # none imports TensorFlow
    flag("--precision", choices=("auto", *cpu.PRECISIONS),
         help="Keras dtype policy: float32 (default, the paper's), mixed_bfloat16, "
              "mixed_float16, or auto: float16 on GPU, bfloat16 on a CPU with native bf16 "
              "(avx512_bf16 or AMX), float32 on a CPU without (it says so). "
              f"{rundir.CONFIG} records the one used; a resumed run keeps it")
    flag("--strategy", choices=config_lib.STRATEGIES,
         help="auto (default: mirrored if >1 GPU), one, mirrored (local GPUs), multiworker "
              "(TF_CONFIG); --batch-size is the global batch, --lr is not rescaled")
    _add_set_flag(p)


def _config_from_args(args):
    from cifar_resnet.spec import config as config_lib
    overrides = dict(config_lib.parse_override(s) for s in args.set)
    for name in config_lib.FIELDS:
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return config_lib.resolve(args.config, overrides)


def _train(args) -> int:
    config = _config_from_args(args)
    from cifar_resnet.spec import config as config_lib, cpu, dataid, datasets, files, rundir
    from cifar_resnet.spec import preflight
    workdir = args.workdir or config_lib.default_workdir(config)
    # The one pre-flight, before the slow import: a finished run answers in well under 2 s; a
    # link, a foreign folder, another config or precision is refused. The precision is compared
    # where it resolves without the backend (not where a GPU may be: training does it then).
    pre = preflight.check(config, workdir, precision=cpu.precision_without_backend(
        config.precision), asked=config.precision)
    if pre.finished is not None and pre.precision_known and dataid.same_source(pre.config,
                                                                               workdir):
        print(f"{workdir}: already complete; nothing to do", file=sys.stderr)
        metrics = pre.finished
    else:
        # Refused before the slow TensorFlow import: a read-only mount or a file in the way, a
        # held lock, an input setting this backend lacks, a bad data file.
        config_lib.check_input_pipeline(config)  # as training will, without TensorFlow
        files.check_writable(workdir)
        holder = rundir.lock_holder(workdir)
        if holder is not None:
            raise config_lib.ConfigError(f"{workdir} is in use by process {holder}; wait for it "
                                         "to finish or use another --workdir")
        splits = datasets.load_splits(pre.config)  # the settings the folder's run keeps
        _import_tensorflow_quietly()
        _say_how_long(config, workdir)
        from cifar_resnet.run import train
        metrics = train.train_and_evaluate(config, workdir, splits=splits, preflight=pre)
    err = metrics.get("best_test_error")
    print(f"{workdir}: final test error {100 * metrics['final_test_error']:.2f}%"
          + (f", best-by-validation {100 * err:.2f}%" if err is not None else ""))
    return 0


def _say_how_long(config, workdir) -> None:
    """One line on stderr before a run of more than about 10 minutes: its estimated duration
    (spec/estimate.py). Never stops a run: an estimate that fails is left out."""
    try:
        from cifar_resnet.run import distribute
        from cifar_resnet.spec import cpu, estimate
        gpu = distribute.gpu_count() > 0
        precision, _ = cpu.resolve_precision(config.precision, gpu=gpu)
        said = estimate.line(config, workdir, precision, gpu=gpu)
    except Exception:
        return
    if said:
        print(said, file=sys.stderr)


def _report(args) -> int:
    _import_tensorflow_quietly()
    from cifar_resnet.results import plots
    report = plots.write_report(args.runs_dir, args.out, experiment=args.experiment,
                                evaluate=args.evaluate, data_dir=args.data_dir)
    print(report["markdown"], end="")
    for note in report["broken"]:  # left out, the healthy runs reported: one line each
        print(f"left out the damaged run {note}", file=sys.stderr)
    for note in report["skipped"]:
        print(f"skipped {note}", file=sys.stderr)
    print(f"wrote {', '.join(str(p) for p in report['files'])}", file=sys.stderr)
    return 0


def _add_evaluate_flags(p: argparse.ArgumentParser) -> None:
    from cifar_resnet.spec import config as config_lib, rundir  # no TensorFlow
    flag = p.add_argument
    flag("run_dir", metavar="RUN_DIR", help=f"a run directory ({rundir.CONFIG} and a checkpoint)")
    flag("--checkpoint", default="auto", choices=config_lib.EVAL_CHECKPOINTS,
         help="best: best validation accuracy; final: the end of training; auto (default): best "
              "if the run has a validation split, else final")
    flag("--tta", choices=[t for t in config_lib.EVAL_TTAS if t],
         help="flip: average with the mirrored image")
    flag("--split", default="test", choices=config_lib.EVAL_SPLITS,
         help="test (default) or val, the held-out tail of the training set")
    flag("--head", type=int, metavar="N",
         help="also the error on the split's first N images, with its standard error (1000: "
              "the exact test images of the project's shared copy)")
    flag("--out", help="output folder (default RUN_DIR/eval)")
    _add_data_dir_flag(p)


def _add_data_dir_flag(p: argparse.ArgumentParser) -> None:
    from cifar_resnet.spec import rundir  # no TensorFlow
    p.add_argument("--data-dir", help="the data set's folder or archive (default: where the "
                                      f"run's {rundir.DATA} says it was read from; its content "
                                      "must be the run's)")


def _evaluate(args) -> int:
    _import_tensorflow_quietly()
    from cifar_resnet.results import evaluate
    # EvaluationError is a ConfigError: one line, exit 2.
    r = evaluate.evaluate(args.run_dir, checkpoint=args.checkpoint, tta=args.tta,
                          split=args.split, out=args.out, head=args.head,
                          data_dir=args.data_dir)
    tta = (f" (without flip TTA {100 * r['error_without_tta']:.2f}%, change "
           f"{100 * r['tta_effect']:+.2f} points)" if args.tta else "")
    print(f"{args.run_dir}: {r['split']} error {100 * r['error']:.2f}% on {r['num_images']} "
          f"images, {r['checkpoint']} checkpoint ({r['checkpoint_rule']}){tta}; wrote {', '.join(r['files'].values())}")
    if args.head:
        h = r["head"]
        print(f"  first {h['num_images']} images: error {100 * h['error']:.2f}% "
              f"(standard error {100 * h['std_error']:.2f} points)")
    print(evaluate.format_per_class(r))
    return 0


def _export(args) -> int:
    _import_tensorflow_quietly()
    from cifar_resnet.results import export
    # ExportError is a ConfigError: one line, exit 2.
    exported = export.export_weights(args.run_dir, args.out, data_dir=args.data_dir)
    entry = exported["entry"]
    exact = (f", first 1,000 images {entry['exact1000_error']:.2f}%"
             if entry["exact1000_error"] is not None else "")
    print(f"{args.run_dir}: wrote {exported['path']} (SHA-256 {entry['sha256']}); test error "
          f"{entry['test_error']:.2f}%{exact}, flip TTA {entry['tta_error']:.2f}% (float32)",
          file=sys.stderr)
    # stdout: what a user pastes to load the file, or with --entry the maintainers'
    # nets/pretrained.CIFAR10 item that ships it as weights="cifar10".
    print(export.format_entry(exported) if args.entry else export.format_usage(exported))
    return 0


def _add_sweep_flags(p: argparse.ArgumentParser) -> None:
    flag = p.add_argument
    flag("experiment", help="an experiment's name (listed below) or a path to an experiment "
                            "file")
    flag("--seeds", type=int, default=1, help="K: train seeds 0..K-1 of every net")
    flag("--jobs", type=int, default=1, help="runs at a time (N > 1: one process per run)")
    flag("--shard", help="i/N: only every N-th run starting at i (0-based)")
    flag("--dry-run", action="store_true", help="list the runs, their state and command; train nothing")
    flag("--runs-dir", default="runs", help="runs land in RUNS_DIR/<experiment>/<net>/seed<k>")
    flag("--data-dir", help="the data set's official folder or archive, for every run")
    flag("--nets", help="comma-separated subset of the experiment's nets")
    _add_set_flag(p)


def _sweep(args) -> int:
    from cifar_resnet.run import sweep
    from cifar_resnet.spec import config as config_lib
    overrides = dict(config_lib.parse_override(s) for s in args.set)
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    runs = sweep.plan(args.experiment, seeds=args.seeds, runs_dir=args.runs_dir,
                      overrides=overrides, nets=args.nets.split(",") if args.nets else None,
                      shard=sweep.parse_shard(args.shard) if args.shard else None)
    print(sweep.format_status(runs))
    if args.dry_run:
        return 0
    _import_tensorflow_quietly()
    result = sweep.run_sweep(runs, jobs=args.jobs)
    print(result.summary())
    return 1 if result.failed else 0


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser: train, sweep, report and evaluate."""
    parser = _Parser(prog="python -m cifar_resnet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train_flags(sub.add_parser("train", help="train one net into a run directory"))
    sweep = sub.add_parser("sweep", help="train every net of an experiment file")
    sweep.lazy_epilog = _experiments_epilog
    _add_sweep_flags(sweep)
    report = sub.add_parser("report", help="results table and Figures 6 and 7 of a sweep")
    report.add_argument("runs_dir", metavar="RUNS_DIR",
                        help="a sweep's folder (e.g. runs/table6), a net's folder, one run "
                             "directory, or an earlier report's folder")
    report.add_argument("--out", help="output folder (default report/<name> beside RUNS_DIR, "
                                      "e.g. runs/report/table6); nothing is written elsewhere "
                                      "but with --evaluate")
    report.add_argument("--evaluate", action="store_true",
                        help="first evaluate each complete run's final model on the test set "
                             "(as evaluate --checkpoint final --head 1000, with and without "
                             "--tta flip) into the run's eval/, for results.csv's exact-1000 "
                             "and TTA errors")
    report.add_argument("--experiment", help="experiment name or file for the paper's numbers "
                                             "and panels (default: RUNS_DIR's name)")
    _add_data_dir_flag(report)
    _add_evaluate_flags(sub.add_parser(
        "evaluate", help="error, per-class accuracy, confusion matrix of a trained run"))
    export = sub.add_parser("export", help="a finished run's final weights as a float32 "
                                           ".weights.h5 file, and its pretrained entry")
    export.add_argument("run_dir", metavar="RUN_DIR", help="a run directory whose training is "
                                                           "complete")
    export.add_argument("--out", help="a .weights.h5 path, or a folder for "
                                      "<net>_<dataset>.weights.h5 (default RUN_DIR; "
                                      "cifar_resnet/nets/weights to ship it)")
    export.add_argument("--entry", action="store_true",
                        help="print the file's nets/pretrained.CIFAR10 entry (to ship it as "
                             "weights=\"cifar10\") instead of the code that loads it")
    _add_data_dir_flag(export)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        commands = {"evaluate": _evaluate, "train": _train, "sweep": _sweep, "report": _report,
                    "export": _export}
        return commands[args.command](args)
    except KeyboardInterrupt as e:  # reliability.Interrupted carries 143 for SIGTERM
        iteration = getattr(e, "iteration", None)  # its saved state's (resume.py)
        print("interrupted; rerun the same command to resume from "
              + (f"iteration {iteration}" if iteration is not None else
                 "the last finished logging period (a pass unless log_every; the iterations "
                 "after it are trained again)"), file=sys.stderr)
        status = getattr(e, "exit_status", 130)
        if argv is None:  # the command line, not a caller in this process
            _exit_now(status)
        return status
    except Exception as e:
        status = _exit_status(e)
        if status is None:
            raise
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)  # one line, whatever e says
        return status


def _exit_now(status: int) -> None:
    """Ends the process with `status` at once, its output flushed: after an interrupt the run's
    state is on disk (resume.py), and the interpreter's teardown that would follow (TensorFlow's
    thread pools and input pipeline, the net's objects) took seconds, and up to a minute with
    stdout piped into `grep`, between the message and the exit. A stdout whose reader is gone
    (the pipe's other end also got the Ctrl-C) is not an error here."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # BrokenPipeError; a closed stream
            pass
    os._exit(status)


# The library's errors and their exit status: 2 bad input (nothing was changed), 1 training
# failed. Looked up among the modules already imported: an error can only come from one of
# those, and importing the others (train: TensorFlow) would make every refusal slow.
_ERRORS = (("cifar_resnet.spec.config", "ConfigError", 2), ("cifar_resnet.spec.datasets", "DataError", 2),
           ("cifar_resnet.run.reliability", "RunLocked", 2), ("cifar_resnet.run.train", "TrainingError", 1),
           ("cifar_resnet.spec.rundir", "HistoryError", 1), ("cifar_resnet.spec.files", "LinkError", 2),
           ("cifar_resnet.spec.files", "WriteError", 1),
           ("cifar_resnet.run.reliability", "ResumeError", 1))


def _exit_status(error: Exception):
    for module, name, status in _ERRORS:
        kind = getattr(sys.modules.get(module), name, None)
        if kind is not None and isinstance(error, kind):
            return status
    if isinstance(error, OSError) and (error.filename or error.errno):
        # "[Errno 30] ...: 'path'", or h5py's "[Errno 30] Unable to synchronously create file
        # (unable to open file: name = 'path', ...)" (export on a read-only mount, issue #38):
        # an environment failure during work, in one line that names the file.
        return 1
    return None


if __name__ == "__main__":
    sys.exit(main())
