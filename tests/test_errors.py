"""The error helpers: bounded echo of user values, and Ctrl-C never lost in a callback."""

import gc
import time
import weakref

import pytest

from prunesearch.errors import keep_interrupts, shown


@pytest.mark.parametrize("value, text", [
    ("abc", "'abc'"),
    ("x" * 10**6, "'" + "x" * 60 + "'... (1,000,000 characters)"),
    (10**5000, "an integer of about 5,000 digits"),
    ([3, 2000, 2000], "[3, 2000, 2000]"),
    ([[1]] * 3, "a list of 3 item(s)"),
    (list(range(20)), "a list of 20 item(s)"),
    ({"a": 1}, "{'a': 1}"),
    (1.5, "1.5"),
], ids=["short", "huge-str", "huge-int", "shape", "nested", "long", "dict", "float"])
def test_shown_is_bounded(value, text):
    assert shown(value) == text


def test_a_ctrl_c_inside_a_weakref_callback_is_raised_again_not_printed(capfd):
    keep_interrupts()
    keep_interrupts()  # idempotent

    class Thing:
        pass

    def interrupted(_):
        raise KeyboardInterrupt  # where a terminal's SIGINT may land

    thing = Thing()
    ref = weakref.ref(thing, interrupted)
    with pytest.raises(KeyboardInterrupt):
        del thing
        gc.collect()
        for _ in range(200):  # raised again within milliseconds
            time.sleep(0.01)
    assert ref() is None
    assert "Traceback" not in capfd.readouterr().err
