"""Reading the files losslab stores, with errors that name the file.

Every record a run or a study keeps (``config.yaml``, ``meta.json``, ``metrics.jsonl``,
``plan.json``, ``status.json``, ``analyses/*.json``) is read through these functions. A file
that is binary, truncated or syntactically broken raises :class:`~losslab.errors.CorruptFileError`
with the file's path, where in it the reader stopped and what was expected there, instead of
a decoder's message that says nothing of which file it read.

``complete=True`` is for files losslab itself wrote whole (through an atomic write, which
always ends the text with a newline): an empty file, or one whose last line has no newline,
was cut short, and is refused even where the part that is left still parses, since a value
cut in two (``lr: 0.05`` -> ``lr: 0.0``) would otherwise be read as another value.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import yaml

from losslab.errors import CorruptFileError, MissingFileError

__all__ = ["read_bytes", "read_text", "read_json", "read_yaml", "parse_json_line",
           "read_json_lines"]

log = logging.getLogger(__name__)


def read_bytes(path: str | Path, *, what: str = "a file") -> bytes:
    """The bytes of ``path``; a missing file or a directory is a user error naming it."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise MissingFileError(f"{path} is missing (expected {what})") from None
    except IsADirectoryError:
        raise CorruptFileError(f"{path} is a directory; expected {what}") from None


def _check_complete(path: Path, text: str, what: str) -> None:
    if not text.strip():
        raise CorruptFileError(f"{path} is empty; expected {what}")
    if not text.endswith("\n"):
        last = text.count("\n") + 1
        raise CorruptFileError(f"{path} is truncated: its last line ({last}) ends without a "
                               f"newline, so the file was cut short; expected {what}")


def read_text(path: str | Path, *, what: str = "a text file", complete: bool = False) -> str:
    """The UTF-8 text of ``path``; a missing file or one that is not UTF-8 text is a user error
    (with ``complete``, so is an empty or cut-short one: module docstring)."""
    path = Path(path)
    raw = read_bytes(path, what=what)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise CorruptFileError(f"{path} is not UTF-8 text (byte {e.start}, line {line}); "
                               f"expected {what}") from None
    if "\x00" in text:  # valid UTF-8, but no text file losslab writes holds a NUL
        offset = text.index("\x00")
        raise CorruptFileError(f"{path} holds binary data (a NUL at character {offset}); "
                               f"expected {what}")
    if complete:
        _check_complete(path, text, what)
    return text


def read_json(path: str | Path, *, what: str = "a JSON document", complete: bool = False) -> Any:
    """The JSON document in ``path``, or a one-line error naming the file and the position."""
    text = read_text(path, what=what, complete=complete)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise CorruptFileError(f"{path} is not valid JSON at line {e.lineno} column {e.colno} "
                               f"({e.msg}); expected {what}") from None


def read_yaml(path: str | Path, *, what: str = "a YAML mapping",
              complete: bool = False) -> dict[str, Any]:
    """The YAML mapping in ``path`` (empty file: ``{}``), or a one-line error naming the file."""
    text = read_text(path, what=what, complete=complete)
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise CorruptFileError(f"{path} is not valid YAML{where} ({problem}); expected {what}") \
            from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise CorruptFileError(f"{path} holds a YAML {type(tree).__name__}; expected {what}")
    return tree


def parse_json_line(line: str, path: str | Path, lineno: int,
                    *, what: str = "one JSON object per line") -> dict[str, Any]:
    """One line of a JSON-lines file; an unreadable one names the file and the line number."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise CorruptFileError(f"{path} line {lineno} is not valid JSON (column {e.colno}: "
                               f"{e.msg}); expected {what}") from None
    if not isinstance(record, dict):
        raise CorruptFileError(f"{path} line {lineno} holds a JSON {type(record).__name__}; "
                               f"expected {what}")
    return record


def read_json_lines(path: str | Path, *, what: str = "one JSON object per line",
                    missing_ok: bool = True) -> list[dict[str, Any]]:
    """Every record of a JSON-lines file that a process appends to.

    A process killed mid-append leaves a torn last line: it is dropped with a warning (the
    epoch it belonged to is redone on resume). Any earlier line that does not read is damage
    the appends cannot explain, and a :class:`CorruptFileError` names the file and the line.
    A missing file is no records (``missing_ok``) or a :class:`MissingFileError`.
    """
    path = Path(path)
    try:
        raw = read_bytes(path, what=what)
    except MissingFileError:
        if missing_ok:
            return []
        raise
    lines = raw.split(b"\n")
    # the index of the last line holding anything: only that one can be torn by a kill
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    records = []
    for i, line in enumerate(lines[:last + 1]):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
            if "\x00" in text:
                raise CorruptFileError(f"{path} line {i + 1} holds binary data; expected {what}")
            records.append(parse_json_line(text, path, i + 1, what=what))
        except (UnicodeDecodeError, CorruptFileError) as e:
            if i == last and not raw.endswith(b"\n"):
                log.warning("dropping a torn last line (%d) of %s", i + 1, path)
                break
            if isinstance(e, UnicodeDecodeError):
                raise CorruptFileError(f"{path} line {i + 1} is not UTF-8 text (byte "
                                       f"{e.start} of the line); expected {what}") from None
            raise
    return records
