"""Shared test set-up."""
import random

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
