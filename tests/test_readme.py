"""The README's Python examples run as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no Python example"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(README), "exec"), {"__name__": "__readme__"})
    assert (tmp_path / "runs" / "quick" / "metrics.jsonl").exists()


def test_repulsion_doc_example_runs():
    doc = README.parent / "docs" / "repulsion.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
    assert len(blocks) == 1
    scope = {"__name__": "__doc_example__"}
    exec(compile(blocks[0], str(doc), "exec"), scope)
    assert scope["penalty"].ndim == 0 and scope["penalty"] > 0
