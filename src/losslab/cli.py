"""The ``losslab`` command.

::

    losslab train [CONFIG.yaml] [--out DIR] [--set KEY=VALUE ...]
    losslab resume RUN_DIR
    losslab models
    losslab datasets

Errors in what the user gave (a config key, a value, a missing data set, a corrupt
checkpoint) are printed as one clear message and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _default_out(config) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{config.model.name}-{config.data.name}-s{config.seed}"


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


def cmd_train(args: argparse.Namespace) -> int:
    from losslab.runs.config import load_config
    from losslab.train.run import train

    config = load_config(args.config, args.set)
    out = Path(args.out) if args.out else _default_out(config)
    run_dir = train(config, out)
    print(_summary(run_dir))
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from losslab.train.run import resume

    run_dir = resume(args.run_dir)
    print(_summary(run_dir))
    return 0


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="losslab", description="Study and exploit the loss "
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
    p.set_defaults(func=cmd_resume)

    sub.add_parser("models", help="list the registered models").set_defaults(func=cmd_models)
    sub.add_parser("datasets", help="list the data sets").set_defaults(func=cmd_datasets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from losslab.runs.checkpoints import CheckpointCorruptError
    from losslab.runs.config import ConfigError

    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, CheckpointCorruptError, ValueError, TypeError,
            KeyError) as e:
        if args.verbose:
            raise
        print(f"losslab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("losslab: interrupted; continue with `losslab resume RUN_DIR`", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
