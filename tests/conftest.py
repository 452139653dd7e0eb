"""Shared test set-up."""
import random
import warnings

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded_global_rngs():
    """Seed the global generators before every test.

    A test's unseeded draws then do not depend on which tests ran before it, so a result that
    holds once holds on every run and in every order (CI once failed on such a draw).
    """
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


# End-to-end tests inside modules that are otherwise unit tests (whole end-to-end modules carry
# `pytestmark = pytest.mark.e2e` instead): each runs a study, the CLI in a subprocess, or trains
# whole runs to compare their records (resume, seeds, learning). `make test-fast` deselects
# them; `make test` runs them.
E2E_TESTS = {
    "test_trainer.py": ["test_killed_process_resumes_exactly",
                        "test_same_seed_same_numbers_different_seed_different",
                        "test_interrupted_run_resumes_to_the_uninterrupted_numbers",
                        "test_torn_metrics_line_is_dropped_on_resume"],
    "test_restarts.py": ["test_a_run_with_restarts_records_them_and_keeps_the_best",
                         "test_a_resumed_run_restarts_the_same_way"],
    "test_models.py": ["test_small_cnn_learns_digits_quickly"],
    "test_findings.py": ["test_study_writes_findings_and_the_report_shows_them",
                         "test_suite_gathers_every_studys_findings"],
    "test_mnist1d.py": ["test_train_cnn1d_end_to_end"],
}


@pytest.hookimpl(tryfirst=True)  # before -m deselects
@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module of tiny tensors (restored after it): on a busy machine
    with few cores, torch's thread pool makes a 10 x 3 product cost ~20 ms, not ~1 ms. Used as
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_collection_modifyitems(config, items):
    seen = set()
    for item in items:
        names = E2E_TESTS.get(item.path.name)
        base = getattr(item, "originalname", item.name)
        if names and base in names:
            item.add_marker(pytest.mark.e2e)
            seen.add((item.path.name, base))
    collected = {item.path.name for item in items}
    missing = [f"{module}::{name}" for module, names in E2E_TESTS.items() if module in collected
               for name in names if (module, name) not in seen]
    if missing:  # renamed or removed: keep the list true, or the fast loop slows down unnoticed
        warnings.warn(pytest.PytestWarning(f"conftest.E2E_TESTS names no collected test: {missing}"),
                      stacklevel=1)
