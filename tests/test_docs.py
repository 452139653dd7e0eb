"""Every Python block of README.md and docs/*.md runs as written.

One test per file: its ```python blocks run in order in one namespace (a later block may use
what an earlier one defined), in a fresh temporary working directory, with tracebacks at the
file's own line numbers. Blocks are meant to be cheap (seconds, on the embedded digits data or
small synthetic inputs); a block that is not meant to run (a cluster address, a CUDA-only
line) is fenced as ```text or ```bash, not skipped here. Where a file's result can be checked
cheaply, CHECKS below checks it.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# An opening fence ```python (optionally ```python3 / ```py, with trailing text) at the start of
# a line, up to the next closing fence at the start of a line.
PYTHON_BLOCK = re.compile(r"^```(?:python3?|py)\b[^\n]*\n(.*?)^```", re.S | re.M)


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """The Python blocks of a Markdown file: (line of the block's first code line, code)."""
    text = path.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in PYTHON_BLOCK.finditer(text)]


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


WITH_BLOCKS = [p for p in DOC_FILES if python_blocks(p)]
# Blocks that train a run or read a data set exercise the whole stack: end to end (marker e2e,
# run by `make test`, deselected by `make test-fast`); the others are unit-sized.
END_TO_END = re.compile(r"\b(train_run|load_dataset|fit)\(")


def _doc_param(path: Path):
    e2e = any(END_TO_END.search(code) for _, code in python_blocks(path))
    return pytest.param(path, id=_name(path), marks=[pytest.mark.e2e] if e2e else [])


# -- checks on what a file's blocks left in their namespace ------------------------------------

def _check_readme(ns: dict, cwd: Path) -> None:
    assert (cwd / "runs" / "quick" / "metrics.jsonl").exists()


def _check_repulsion(ns: dict, cwd: Path) -> None:
    assert ns["penalty"].ndim == 0 and ns["penalty"] > 0


def _check_annealing(ns: dict, cwd: Path) -> None:
    stats = ns["stats"]
    assert stats["steps"] == 1


def _check_training(ns: dict, cwd: Path) -> None:
    history = ns["history"]
    assert len(history) == ns["trainer"].epochs
    assert all("lr_end" in epoch and "val_acc" in epoch for epoch in history)


def _check_curves(ns: dict, cwd: Path) -> None:
    plane = ns["plane"]
    grid = len(plane.x)
    assert plane.train_loss_l2.shape == plane.test_error.shape == (grid, grid)


def _check_ensembles(ns: dict, cwd: Path) -> None:
    assert len(ns["CheckpointSet"].from_run(cwd / "runs" / "sse", role="snapshot")) == 2
    probs = ns["probs"]
    assert probs.shape == (ns["x"].shape[0], 10)
    assert probs.sum(dim=1).sub(1).abs().max() < 1e-5


def _check_report(ns: dict, cwd: Path) -> None:
    section = ns["section"]
    assert section.title == "Sharpness" and len(section.tables[0]) == 2


CHECKS: dict[str, Callable[[dict, Path], None]] = {
    "README.md": _check_readme,
    "docs/repulsion.md": _check_repulsion,
    "docs/annealing.md": _check_annealing,
    "docs/training.md": _check_training,
    "docs/curves.md": _check_curves,
    "docs/ensembles.md": _check_ensembles,
    "docs/report.md": _check_report,
}


def test_docs_blocks_are_found():
    """The fence pattern still finds the blocks (a silent miss would test nothing)."""
    names = {_name(p) for p in WITH_BLOCKS}
    assert {"README.md", "docs/repulsion.md"} <= names
    assert set(CHECKS) <= names, f"checks for files without Python blocks: {set(CHECKS) - names}"


@pytest.fixture
def _restore_report_sections(monkeypatch):
    """docs/report.md registers a section builder: keep it out of the other tests."""
    sections = importlib.import_module("losslab.report.sections")
    sections.section_builder("")  # the entry points' sections are in the copy restored after
    monkeypatch.setattr(sections, "_BUILDERS", dict(sections._BUILDERS))


@pytest.mark.parametrize("doc", [_doc_param(p) for p in WITH_BLOCKS])
def test_doc_python_blocks_run(doc, tmp_path, monkeypatch, request):
    monkeypatch.chdir(tmp_path)
    if _name(doc) == "docs/report.md":
        request.getfixturevalue("_restore_report_sections")
    namespace = {"__name__": "__docs__"}
    for line, code in python_blocks(doc):
        # Pad so that tracebacks point at the Markdown file's own lines.
        exec(compile("\n" * (line - 1) + code, str(doc), "exec"), namespace)
    check = CHECKS.get(_name(doc))
    if check is not None:
        check(namespace, tmp_path)
