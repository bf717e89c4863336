"""Shared test set-up: one CPU thread (the machine has two cores shared by CI) and a fixed seed per test."""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
