"""The speed reference: how much slower the machine runs now than its fastest on record."""

import json

import pytest

from prunesearch.latency.reference import SpeedReference


def test_factor_against_the_fastest_reading_on_record(tmp_path, monkeypatch):
    store = tmp_path / "speed.json"
    readings = iter([2.0e-3, 1.0e-3, 1.5e-3, 3.0e-3])
    monkeypatch.setattr(SpeedReference, "reading", lambda self: next(readings))
    ref = SpeedReference("cpu:x|1 threads|torch t", store)
    assert ref.factor() == 1.0  # the first reading is the record
    assert ref.factor() == 1.0  # faster: a new record, kept on disk
    assert json.loads(store.read_text()) == {"cpu:x|1 threads|torch t": 1.0e-3}
    assert ref.factor() == pytest.approx(1.5)
    again = SpeedReference("cpu:x|1 threads|torch t", store)  # another run reads the record
    assert again.factor() == pytest.approx(3.0)
    other = SpeedReference("cpu:x|2 threads|torch t", store)  # another key starts afresh
    assert other.best == float("inf")


def test_a_real_reading_is_a_positive_time(tmp_path):
    ref = SpeedReference("k", None)
    assert 0 < ref.reading() < 1
    assert ref.factor() >= 1.0
