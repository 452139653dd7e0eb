"""The ``losslab`` command.

::

    losslab train [CONFIG.yaml] [--out DIR] [--set KEY=VALUE ...]
    losslab resume RUN_DIR [--from-checkpoint]
    losslab run STUDY.yaml [--out DIR] [--backend local|ray] [--workers N] [--address ADDR]
                [--set KEY=VALUE ...] [--force]
    losslab report STUDY_DIR|RUN_DIR|RESULT.json|RESULTS_DIR
    losslab findings SUITE.yaml [--out DIR] [--only STUDY ...] [--backend local|ray] [--workers N]
    losslab demo [--out DIR] [--backend local|ray] [--workers N]
    losslab ensemble CHECKPOINT_OR_RUN_DIR... [--role ROLE] [--out DIR] [--split test]
    losslab landscape surface|line|trajectory|hessian|ratio_map|curvature RUN_OR_CKPT [RUN_OR_CKPT]
                [--out DIR] [--operator hessian|ggn|fisher|empirical_fisher] [--per-layer]
                [--backend local|ray] [--workers N] [--address ADDR]
    losslab curve fit START END [--bends 1] [--kind bezier] [--out DIR] [--set KEY=VALUE ...]
    losslab curve evaluate|plane CURVE_RUN [--points 61] [--grid 21] [--out DIR]
                [--backend local|ray] [--workers N] [--address ADDR]
    losslab models
    losslab datasets

Errors in what the user gave (a config key, a value, a missing data set, a corrupt
checkpoint: the :class:`~losslab.errors.LosslabError` family) are printed as one clear line and
exit with status 2 (``-v`` shows their traceback); any other exception is a bug and shows its
traceback.
"""

from __future__ import annotations

import argparse
import functools
import logging
import shlex
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NoReturn

from losslab.result_commands import cmd_curve, cmd_ensemble, cmd_landscape, time_stamp

__all__ = ["main"]


def _default_out(config) -> Path:
    return Path("runs") / f"{time_stamp()}-{config.model.name}-{config.data.name}-s{config.seed}"


def _summary(run_dir: Path) -> str:
    from losslab.runs.metrics import read_metrics

    records = read_metrics(run_dir)
    if not records:
        return f"run directory: {run_dir}"
    last = records[-1]
    parts = [f"epochs {last['epoch']}"]
    for key in ("train_loss", "val_acc", "test_acc"):
        if isinstance(last.get(key), (int, float)):
            parts.append(f"{key} {last[key]:.4f}")
    best = [r for r in records if "val_acc" in r]
    if best:
        b = max(best, key=lambda r: r["val_acc"])
        parts.append(f"best val_acc {b['val_acc']:.4f} (epoch {b['epoch']})")
    return f"run directory: {run_dir}\n" + ", ".join(parts)


def _printed(command: Callable[[argparse.Namespace], Iterable[str]]):
    """A result command (:mod:`losslab.result_commands`) as a CLI command: the lines it yields
    are printed as they come, before its work goes on."""
    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        for text in command(args):
            print(text)
        return 0
    return run


def cmd_train(args: argparse.Namespace) -> int:
    from losslab.runs.config import load_config
    from losslab.train.run import train_run

    config = load_config(args.config, args.set)
    out = Path(args.out) if args.out else _default_out(config)
    args.remedy = f"losslab resume {shlex.quote(str(out))}"
    run_dir = train_run(config, out)
    print(_summary(run_dir))
    _run_page(run_dir)
    return 0


def _run_page(run_dir: Path) -> None:
    from losslab.report.result_page import write_run_page

    print(f"page: {write_run_page(run_dir)}")


def cmd_resume(args: argparse.Namespace) -> int:
    from losslab.train.run import resume_run

    args.remedy = f"losslab resume {shlex.quote(args.run_dir)}"
    run_dir = resume_run(args.run_dir, from_checkpoint=args.from_checkpoint)
    print(_summary(run_dir))
    _run_page(run_dir)
    return 0


def _study_summary(outcome) -> str:
    counts = ", ".join(f"{n} {status}" for status, n in sorted(outcome.counts.items()))
    lines = [f"study directory: {outcome.directory} ({counts})"]
    lines += [f"analysis {key} failed: {error}" for key, error in outcome.failed_analyses.items()]
    return "\n".join([*lines, f"report: {outcome.report}"])


def _study_status(outcome) -> int:
    """0 when every run finished and every analysis ran; else 1 (the rest was still done)."""
    finished = outcome.counts.get("finished", 0) == sum(outcome.counts.values())
    return 0 if finished and not outcome.failed_analyses else 1


def cmd_run(args: argparse.Namespace) -> int:
    from losslab.studies import run_study

    outcome = run_study(args.study, args.out, backend=args.backend, workers=args.workers,
                        overrides=args.set, force=args.force, address=args.address)
    print(_study_summary(outcome))
    return _study_status(outcome)


def cmd_findings(args: argparse.Namespace) -> int:
    from losslab.studies import run_suite

    outcome = run_suite(args.suite, args.out, backend=args.backend, workers=args.workers,
                        only=args.only or None, force=args.force)
    counts = ", ".join(f"{n} {v}" for v, n in sorted(outcome.counts.items()))
    minutes = sum(outcome.times.values()) / 60
    print(f"{len(outcome.findings)} findings: {counts or 'none'} ({minutes:.1f} min)\n"
          f"table: {outcome.directory / 'findings.md'}")
    return 0 if outcome.failed_runs == 0 else 1


def cmd_report(args: argparse.Namespace) -> int:
    """A study's report, or the page of any stored result, drawn from what is stored."""
    path = Path(args.path)
    if (path / "plan.json").exists():
        from losslab.studies import finish_study

        outcome = finish_study(path, compute=False)
        print(_study_summary(outcome))
        return 0
    from losslab.report.result_page import report_any

    for page in report_any(path):
        print(f"report: {page}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from losslab.studies import DEMO_STUDY, run_study

    outcome = run_study(str(DEMO_STUDY), args.out or "studies/demo", backend=args.backend,
                        workers=args.workers, force=args.force, address=args.address)
    print(_study_summary(outcome))
    return _study_status(outcome)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def _backend_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="local worker processes (default) or Ray tasks")
    p.add_argument("--workers", type=_positive_int, default=None,
                   help="runs at a time (default: as many as fit the cores or GPUs)")
    p.add_argument("--address", default=None,
                   help="Ray cluster address (e.g. HEAD:6379 or auto); default: a local instance")
    p.add_argument("--force", action="store_true",
                   help="reuse a study directory that holds a different study (changed runs are "
                        "archived, not deleted)")


def _map_backend_args(p: argparse.ArgumentParser, kinds: str) -> None:
    p.add_argument("--backend", choices=["local", "ray"], default="local",
                   help=f"{kinds}: this process (default) or the map's points spread over Ray "
                   "workers (the same numbers)")
    p.add_argument("--workers", type=_positive_int, default=None,
                   help="Ray workers sharing the map's points (default 2)")
    p.add_argument("--worker-threads", type=_positive_int, default=1,
                   help="torch threads (and Ray CPUs) per worker (default 1)")
    p.add_argument("--address", default=None,
                   help="Ray cluster address (e.g. HEAD:6379 or auto); default: a local instance")


def cmd_models(args: argparse.Namespace) -> int:
    from losslab.models import list_models

    for name, description in list_models().items():
        print(f"{name:<16} {description}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from losslab.data import list_datasets

    for name, description in list_datasets().items():
        print(f"{name:<16} {description}")
    return 0


class _Parser(argparse.ArgumentParser):
    """Command-line mistakes are user errors too: one line, naming the option, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="losslab", description="Study and exploit the loss "
                                     "landscape of neural networks.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train one run from a config")
    p.add_argument("config", nargs="?", help="YAML config (default: a small CNN on digits)")
    p.add_argument("--out", help="run directory (default: runs/<time>-<model>-<data>-s<seed>)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, dotted for nested keys (e.g. optimizer.lr=0.1)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("resume", help="continue a killed or interrupted run")
    p.add_argument("run_dir")
    p.add_argument("--from-checkpoint", action="store_true",
                   help="the newest training state is corrupt: continue from the newest one "
                        "that reads back intact (the state of the epoch before)")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("run", help="run a study: variants x seeds, then analyses and a report")
    p.add_argument("study", help="study file (YAML)")
    p.add_argument("--out", help="study directory (default: studies/<name>)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the study's base config (all runs)")
    _backend_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("findings", help="run a suite of studies and write one table of their "
                       "findings with verdicts (reproduced / not resolved / contradicted)")
    p.add_argument("suite", help="suite file (YAML listing study files)")
    p.add_argument("--out", help="suite directory (default: studies/<suite name>)")
    p.add_argument("--only", action="append", default=[], metavar="STUDY",
                   help="run only this study of the suite (repeatable); the table still "
                        "gathers every study already in the directory")
    _backend_args(p)
    p.set_defaults(func=cmd_findings)

    p = sub.add_parser("report", help="draw a study's report, or the page of any result (a run "
                       "directory, a landscape, curve or ensemble JSON, or a directory of them), "
                       "from what is stored: nothing is computed")
    p.add_argument("path", help="a study directory, run directory, result file or a directory "
                   "holding result files")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("demo", help="run the built-in demo study on digits and print its report")
    p.add_argument("--out", help="study directory (default: studies/demo)")
    _backend_args(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("ensemble", help="ensemble checkpoints: accuracy as members are added, "
                       "diversity, weight distances, weight average")
    p.add_argument("paths", nargs="+", help="checkpoint files (.safetensors) or run directories")
    p.add_argument("--role", default=None, help="checkpoints of run directories to use: final "
                   "(default), best, snapshot, fge, epoch")
    p.add_argument("--out", default=".", help="directory for ensemble.json (default: here)")
    p.add_argument("--split", default="test", choices=["test", "val", "train"])
    p.add_argument("--combine", default="probs", choices=["probs", "logits"],
                   help="average probabilities (default) or logits")
    p.add_argument("--no-swa", action="store_true", help="skip the weight-averaged model")
    p.set_defaults(func=_printed(cmd_ensemble))

    p = sub.add_parser("curve", help="mode-connecting curves: fit between two models, "
                       "evaluate along t, the plane with the path")
    p.add_argument("action", choices=["fit", "evaluate", "plane"])
    p.add_argument("paths", nargs="+", help="fit: START END (run directories or checkpoints); "
                   "evaluate/plane: the curve run")
    p.add_argument("--out", help="fit: the curve's run directory; else where the JSON goes")
    p.add_argument("--bends", type=int, default=1, help="fit: trainable interior points")
    p.add_argument("--kind", default="bezier", choices=["bezier", "polychain"])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="fit: override the start run's config (e.g. epochs=20)")
    p.add_argument("--points", type=_positive_int, default=None,
                   help="values of t evaluated (evaluate: 61; fit: 11, after fitting)")
    p.add_argument("--grid", type=int, default=21, help="plane: grid points per axis")
    p.add_argument("--split", default="train", choices=["train", "test", "val"],
                   help="plane: the split of the loss grid")
    _map_backend_args(p, "plane")
    p.set_defaults(func=_printed(cmd_curve))

    p = sub.add_parser("landscape", help="loss surfaces, interpolations, PCA trajectories, "
                       "Hessian spectra of trained runs")
    p.add_argument("kind", choices=["surface", "line", "trajectory", "hessian", "ratio_map",
                                    "curvature"])
    p.add_argument("runs", nargs="+", help="run directories (their final model) or checkpoint "
                   "files (two for line: start and end)")
    p.add_argument("--out", default=".", help="directory for landscape_<kind>.json (a "
                   "surface keeps its finished points in landscape_surface.partial.npz there "
                   "until it is complete: the same command run again continues it)")
    p.add_argument("--split", default="train", choices=["train", "test", "val"],
                   help="the data the loss is of (default: train, as Li et al.)")
    p.add_argument("--examples", type=int, default=0, help="a fixed random subset (0: all; "
                   "more than the split has: all of it); hessian and ratio_map: default 512 "
                   "and 256")
    p.add_argument("--points", type=int, default=11, help="grid points per axis (odd)")
    p.add_argument("--span", type=float, default=1.0, help="grid half width")
    p.add_argument("--normalization", default="filter", choices=["filter", "layer", "none"])
    p.add_argument("--bn", default=None, choices=["keep", "recompute", "interpolate"],
                   help="BatchNorm statistics at each point (default: interpolate for line, "
                   "keep otherwise)")
    p.add_argument("--operator", default="hessian",
                   choices=["hessian", "ggn", "fisher", "empirical_fisher"],
                   help="hessian: the curvature whose spectrum is computed (ggn: generalized "
                   "Gauss-Newton; fisher: Monte-Carlo Fisher; empirical_fisher)")
    p.add_argument("--directions", default="random", metavar="random|OPERATOR_top2|OPERATOR_bottom2",
                   help="surface: the plane's directions: random (default) or the top / bottom "
                   "two eigenvectors of a curvature operator (hessian_top2, ggn_top2, ...)")
    p.add_argument("--per-layer", action="store_true",
                   help="curvature: a row per module (its block's top eigenvalue, trace and "
                   "their shares of the whole); without it, the whole model only")
    p.add_argument("--lanczos-steps", type=_positive_int, default=30,
                   help="ratio_map: the most Hessian-vector products per point and eigenvalue")
    p.add_argument("--uncentered", action="store_true",
                   help="trajectory: PCA of the offsets from the final model as they are "
                   "(default: centred on their mean, as Li et al.'s code)")
    _map_backend_args(p, "surface, line, trajectory and ratio_map")
    p.set_defaults(func=_printed(cmd_landscape))

    sub.add_parser("models", help="list the registered models").set_defaults(func=cmd_models)
    sub.add_parser("datasets", help="list the data sets").set_defaults(func=cmd_datasets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from losslab.signals import sigterm_as_interrupt

    with sigterm_as_interrupt():  # `kill`, a scheduler or a backend stopping us: as Ctrl-C
        return _run(args, argv)


# The commands that compute in this process (a study's runs are in workers; its analyses here).
_COMPUTING = ("train", "resume", "run", "demo", "findings", "ensemble", "curve", "landscape")


def _run(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    from losslab.errors import LosslabError, message_of
    from losslab.signals import Terminated

    try:
        if args.command in _COMPUTING:  # torch's pool sized to this process's cores
            from losslab.threads import set_main_threads

            set_main_threads()
        return args.func(args)
    except LosslabError as e:  # the user's input; anything else is a bug and keeps its traceback
        if args.verbose:
            raise
        print(f"losslab: error: {message_of(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (a Terminated, a KeyboardInterrupt)
        print(f"losslab: {'terminated' if isinstance(e, Terminated) else 'interrupted'}; "
              f"continue with `{_remedy(args, argv)}`", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130


def _remedy(args: argparse.Namespace, argv: Sequence[str] | None) -> str:
    """The command that continues interrupted work: a run resumes; a study, a suite or a map
    continues when the same command runs again (it skips what is finished)."""
    remedy = getattr(args, "remedy", None)
    if remedy:
        return remedy
    words = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["losslab", *map(shlex.quote, words)])


if __name__ == "__main__":
    sys.exit(main())
