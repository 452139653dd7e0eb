"""Reading the files losslab stores, with errors that name the file.

Every record a run or a study keeps (``config.yaml``, ``meta.json``, ``metrics.jsonl``,
``plan.json``, ``status.json``, ``analyses/*.json``) is read through these functions. A file
that is binary, truncated or syntactically broken raises :class:`~losslab.errors.CorruptFileError`
with the file's path, where in it the reader stopped and what was expected there, instead of
a decoder's message that says nothing of which file it read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from losslab.errors import CorruptFileError, MissingFileError

__all__ = ["read_text", "read_json", "read_yaml", "parse_json_line"]


def read_text(path: str | Path, *, what: str = "a text file") -> str:
    """The UTF-8 text of ``path``; a missing file or one that is not UTF-8 text is a user error."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MissingFileError(f"{path} is missing (expected {what})") from None
    except UnicodeDecodeError as e:
        raise CorruptFileError(f"{path} is not UTF-8 text (byte {e.start}); expected {what}") \
            from None
    except IsADirectoryError:
        raise CorruptFileError(f"{path} is a directory; expected {what}") from None


def read_json(path: str | Path, *, what: str = "a JSON document") -> Any:
    """The JSON document in ``path``, or a one-line error naming the file and the position."""
    text = read_text(path, what=what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise CorruptFileError(f"{path} is not valid JSON at line {e.lineno} column {e.colno} "
                               f"({e.msg}); expected {what}") from None


def read_yaml(path: str | Path, *, what: str = "a YAML mapping") -> dict[str, Any]:
    """The YAML mapping in ``path`` (empty file: ``{}``), or a one-line error naming the file."""
    text = read_text(path, what=what)
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
