"""Every module is reachable by its dotted path, and no package member hides a module."""

import importlib
import pkgutil
import subprocess
import sys

import pytest

import losslab

MODULES = sorted(m.name for m in pkgutil.walk_packages(losslab.__path__, "losslab."))


def test_there_are_modules_to_check():
    assert {"losslab.train.schedules", "losslab.landscape.hessian.eigensolvers"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_module_imports_by_dotted_path_after_import_losslab(name):
    module = importlib.import_module(name)
    parent, _, child = name.rpartition(".")
    # the parent's attribute of that name is the module itself, not a function or class
    assert getattr(importlib.import_module(parent), child) is module


@pytest.mark.parametrize("package", ["losslab", "losslab.train", "losslab.runs", "losslab.data",
                                     "losslab.landscape", "losslab.landscape.hessian",
                                     "losslab.ensembles", "losslab.curves", "losslab.models",
                                     "losslab.studies", "losslab.report"])
def test_every_public_name_resolves(package):
    module = importlib.import_module(package)
    assert module.__doc__, f"{package} has no docstring"
    missing = [n for n in module.__all__ if getattr(module, n, None) is None]
    assert not missing, f"{package}.__all__ names what it does not have: {missing}"


def test_import_and_help_do_not_import_torch():
    """`import losslab` and `losslab --help` stay fast: torch is imported when first needed."""
    code = ("import sys, contextlib, io\n"
            "import losslab\n"
            "from losslab.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    try:\n"
            "        main(['--help'])\n"
            "    except SystemExit as e:\n"
            "        assert e.code == 0\n"
            "assert 'usage: losslab' in out.getvalue()\n"
            "print('torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_threads_follow_the_cpu_set_and_the_container_quota(tmp_path, monkeypatch):
    import torch

    from losslab import threads

    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")  # 1.5 cores: 2 threads may run
    assert threads._quota(quota) == 2
    quota.write_text("max 100000\n")
    assert threads._quota(quota) is None
    assert threads._quota(tmp_path / "absent") is None
    monkeypatch.setattr(threads, "_quota", lambda: 1)
    assert threads.usable_cores() == 1
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.delenv("LOSSLAB_THREADS", raising=False)
        assert threads.set_main_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("LOSSLAB_THREADS", "3")
        assert threads.set_main_threads() == 3 and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
