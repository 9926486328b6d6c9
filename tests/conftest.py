"""Shared fixtures."""

import logging

import pytest


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
