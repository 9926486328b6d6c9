"""Atomic writes, bounded reads and the inter-process lock."""

import json
import logging
import re
import threading

import pytest

from prunesearch.errors import PrunesearchError
from prunesearch.fileio import atomic_write_json, held_lock, read_json


def test_a_second_holder_waits_and_says_what_for(tmp_path, caplog):
    lock, order = tmp_path / ".base.lock", []
    first_in, release = threading.Event(), threading.Event()

    def first():
        with held_lock(lock, "the first"):
            order.append("first in")
            first_in.set()
            release.wait(10)
            order.append("first out")

    holder = threading.Thread(target=first)
    holder.start()
    first_in.wait(10)
    threading.Timer(0.3, release.set).start()
    with caplog.at_level(logging.INFO, logger="prunesearch"), held_lock(lock, "the first"):
        order.append("second in")
    holder.join()
    assert order == ["first in", "first out", "second in"]
    assert [r.getMessage() for r in caplog.records] == ["waiting for the first"]


def test_an_uncontended_lock_says_nothing(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="prunesearch"), held_lock(tmp_path / "l", "x"):
        pass
    assert caplog.records == []


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "is empty"),
        ("[1, 2]", "must hold an object, not list"),
        ("[" * 100_000, "nested too deeply"),
        ('{"n": ' + "7" * 5000 + "}", "Exceeds the limit (4300 digits)"),
        ('{"a": 1', "Expecting ',' delimiter at line 1 column 8"),
    ],
    ids=["empty", "array", "deep", "digits", "truncated"],
)
def test_read_json_refuses_what_is_not_a_json_object(tmp_path, text, message):
    path = tmp_path / "f.json"
    path.write_text(text)
    with pytest.raises(PrunesearchError, match=f"^thing {path}.*{re.escape(message)}"):
        read_json(path, "thing")


def test_read_json_bounds_the_size_before_reading(tmp_path):
    path = atomic_write_json(tmp_path / "big.json", {"x": "y" * 2000})
    assert read_json(path, "thing")["x"] == "y" * 2000
    with pytest.raises(PrunesearchError, match=r"is 0\.0 MiB; the most read is 0 MiB"):
        read_json(path, "thing", limit=1000)
    assert json.loads(path.read_text())  # written whole
    with pytest.raises(PrunesearchError, match="thing file not found"):
        read_json(tmp_path / "missing.json", "thing")
