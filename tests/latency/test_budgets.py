"""Latency budgets through ``find``, on the fake device of test_latency_model (timing is
faked so that the test cannot flake; the real clock is exercised by the benchmark)."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

import prunesearch as ps
from prunesearch.find.find import FindOptions, find
from prunesearch.latency import budgets as latency_search
from prunesearch.latency import measure as latency
from prunesearch.space import load_space

from ..helpers import run_cli
from .test_predictor import FakeDevice

TINY = str(Path(__file__).parents[1] / "spaces" / "tiny.yaml")


@pytest.fixture
def device(monkeypatch, tmp_path):
    """The fake device for tables, fits and the final measurements; a private cache."""
    # a device where width, not dispatch, costs time
    fake = FakeDevice(overhead=0.2e-6, network_constant=1e-6)
    monkeypatch.setattr(latency, "measure", fake)
    monkeypatch.setattr(latency_search, "measure", fake)
    monkeypatch.setenv("PRUNESEARCH_CACHE", str(tmp_path / "cache"))
    return fake


def _space():
    space = load_space(TINY)
    return space.replace("search", latency_format="nchw", latency_threads=1)


def test_a_latency_budget_exports_a_spec_measured_within_it(device, tiny_base, tmp_path):
    slow = {"calls": 0}

    def slower_once(model, *args, **kwargs):  # the first real timing is 25% over prediction
        lat = device(model, *args, **kwargs)
        slow["calls"] += 1
        factor = 1.25 if slow["calls"] == 1 else 1.0
        return latency.Latency(
            **{**lat.__dict__, "samples": tuple(t * factor for t in lat.samples)}
        )

    latency_search.measure = slower_once  # monkeypatch restores the module attribute
    out = tmp_path / "run"
    result = find(_space(), FindOptions("60%latency", base=str(tiny_base), trials=3), out=out)
    (member,) = result["members"]
    spec = ps.ArchSpec.load(out / member["spec"])
    budget = spec.budget
    assert budget["kind"] == "latency" and budget["text"] == "60%latency"
    lat = budget["latency"]
    assert lat["measured_ms"] * 1e6 <= budget["target"]  # truth over prediction
    assert lat["memory_format"] == "nchw" and lat["batch"] == 1 and lat["threads"] == 1
    (first,) = lat["reprojections"]  # 25% over at first: projected again, then met
    assert first["measured_ms"] * 1e6 > budget["target"]
    assert spec.widths != first["widths"]
    for path in member["baseline_specs"].values():  # the controls are timed too
        assert ps.ArchSpec.load(out / path).budget["latency"]["measured_ms"] > 0
    storage = f"sqlite:///{out / 'study.db'}"
    name = optuna.get_all_study_summaries(storage)[0].study_name
    assert ":60pct-latency@cpu-1t-b1-nchw-" in name  # what its milliseconds are of
    done = [
        t
        for t in optuna.load_study(study_name=name, storage=storage).trials
        if t.state == optuna.trial.TrialState.COMPLETE
    ]
    assert all(
        t.user_attrs["latency_ms"] > 0 and t.user_attrs["memory_format"] == "nchw" for t in done
    )
    assert {t.params.get("round_to") for t in done} <= {1, 8, None}

    def three_times_slower(model, *args, **kwargs):  # would re-project, if timed again
        lat = device(model, *args, **kwargs)
        return latency.Latency(**{**lat.__dict__, "samples": tuple(3 * t for t in lat.samples)})

    latency_search.measure = three_times_slower
    find(_space(), FindOptions("60%latency", base=str(tiny_base), trials=3), out=out)
    again = ps.ArchSpec.load(out / member["spec"])  # a finished search run again: the same spec
    assert again.widths == spec.widths and again.budget["latency"] == lat


def test_a_latency_study_is_named_for_what_its_milliseconds_are_of():
    from prunesearch.engine.budget import parse_budgets
    from prunesearch.find.find import study_name

    (lat,), (flops,) = parse_budgets("4ms"), parse_budgets("50%FLOPs")
    space = _space()
    name = study_name("p", lat, space, "cpu")
    assert name.startswith("p:4ms-latency@cpu-1t-b1-nchw-")
    assert study_name("p", lat, space, "cpu") == name  # resumable: the same settings
    others = {
        study_name("p", lat, space.replace("search", **change), "cpu")
        for change in (
            {"latency_threads": 2},
            {"latency_batch": 8},
            {"latency_format": "channels-last"},
        )
    }
    assert name not in others and len(others) == 3  # a resumed search never mixes timings
    assert study_name("p", flops, space, "cpu") == "p:50pct-flops"


def test_latency_budget_errors_exit_2(device, tiny_base, tmp_path):
    for budget, message in (
        ("0ms", "a latency must be positive"),
        ("-3ms", "a latency must be positive"),
        ("4min", "not understood"),
        ("10s", "is not below the base model's"),
    ):
        out = tmp_path / budget
        proc = run_cli(
            "find", "--space", TINY, "--budget", budget, "--base", tiny_base, "--out", out
        )
        err = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, proc.stderr
        assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
        assert not out.exists()


def test_a_budget_within_the_timings_noise_of_the_base_is_judged_by_the_prediction(
    device, tiny_base, tmp_path
):
    """5% above one quick measurement of the base is not refused before the tables (a second
    measurement may fall either side); the prediction then finds it not below the base."""
    space = _space()
    base_ms = device.seconds(space.create_model(), (1, 3, 16, 16)) * 1e3
    out = tmp_path / "run"
    proc = run_cli(
        "find",
        "--space",
        TINY,
        "--budget",
        f"{1.05 * base_ms:.4f}ms",
        "--base",
        tiny_base,
        "--out",
        out,
    )
    assert proc.returncode == 2, proc.stderr
    assert "(predicted); nothing to prune" in proc.stderr.strip().splitlines()[-1]
    assert device.calls > 10  # the tables were built: the quick check let it through
    assert not out.exists()


def test_the_spec_format_checks_latency_records(tmp_path):
    graph = ps.trace(ps.create_model("resnet20"), _zeros())
    latency = {"target_ms": 1.0, "measured_ms": 0.9, "measured_iqr_ms": [0.8, 1.1]}
    spec = ps.ArchSpec.from_graph(  # what find records: scalars and spreads in milliseconds
        graph, {}, model="resnet20", budget={"kind": "latency", "target": 10, "latency": latency}
    )
    path = spec.save(tmp_path / "s.json")
    assert ps.ArchSpec.load(path).budget["latency"] == latency  # what save writes, load reads
    for bad in ({"measured_ms": -1}, {"measured_iqr_ms": [0.8, -1]}, {"round_ms": "fast"}):
        key = next(iter(bad))
        with pytest.raises(ps.PrunesearchError, match=rf"\$\.budget\.latency\.{key}"):
            ps.ArchSpec.from_graph(
                graph,
                {},
                model="resnet20",
                budget={"kind": "latency", "target": 10, "latency": bad},
            )
        path.write_text(json.dumps(spec.to_dict() | {"budget": {"kind": "latency", "target": 10,
                                                                  "latency": bad}}))  # fmt: skip
        with pytest.raises(ps.PrunesearchError, match=rf"\$\.budget\.latency\.{key}"):
            ps.ArchSpec.load(path)


def _zeros():
    import torch

    return torch.zeros(1, 3, 32, 32)


def test_a_family_of_latency_budgets_from_the_cli(device, tiny_base, tmp_path):
    space = tmp_path / "tiny-latency.yaml"
    text = (
        Path(TINY)
        .read_text()
        .replace("search: {", "search: {latency_format: nchw, latency_threads: 1, ")
    )
    space.write_text(text)
    out = tmp_path / "run"
    proc = run_cli(
        "find",
        "--space",
        space,
        "--budget",
        "40%,60%latency",
        "--base",
        tiny_base,
        "--trials",
        "2",
        "--out",
        out,
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    targets = [m["target"] for m in summary["members"]]
    assert targets[0] < targets[1]
    for m in summary["members"]:
        assert m["latency_ms"] * 1e6 <= m["target"]
    bad = run_cli(
        "find",
        "--space",
        space,
        "--budget",
        "50%latency",
        "--latency-batch",
        "0",
        "--base",
        tiny_base,
        "--out",
        tmp_path / "bad",
    )
    assert (
        bad.returncode == 2 and bad.stderr.strip() == "error: --latency-batch must be >= 1, got 0"
    )
    assert not (tmp_path / "bad").exists()
