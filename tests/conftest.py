"""Shared fixtures.

The suite runs on pytest-xdist workers (``-n auto`` in pyproject.toml), one per core, each with
one torch thread: the tests train tiny models, where a second thread per process only adds
contention (measured in BENCHMARKS.md, "Test suite time"). Set before torch is imported;
subprocesses the tests start inherit it. An explicit ``OMP_NUM_THREADS`` wins.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import logging
from pathlib import Path

import pytest

TINY = str(Path(__file__).parent / "spaces" / "tiny.yaml")


@pytest.fixture(autouse=True)
def _restore_prunesearch_logger():
    """In-process CLI calls install a stderr handler and stop propagation on the ``prunesearch``
    logger; undo that after each test so that ``caplog`` in later tests still sees records."""
    logger = logging.getLogger("prunesearch")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory) -> Path:
    """The folder of the tiny space's base model (``train_base`` with the space's defaults:
    2 epochs, seed 0), trained once for the whole session. Tests only read it; one that
    writes into a base folder copies this one first."""
    from prunesearch.space import load_space
    from prunesearch.training.runs import train_base

    out = tmp_path_factory.mktemp("tiny-base")
    train_base(load_space(TINY), out=out)
    return out


@pytest.fixture(scope="session")
def tiny_base(tiny_base_dir) -> Path:
    """The tiny space's base weights file (see ``tiny_base_dir``)."""
    return tiny_base_dir / "model.safetensors"
