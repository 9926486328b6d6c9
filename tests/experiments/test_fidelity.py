"""``prunesearch fidelity``: statistics on known rankings, figures from real trained cells."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prunesearch.cli.app import app
from prunesearch.experiments.fidelity import (
    FidelityOptions,
    fidelity,
    halton,
    headroom_text,
    rank_summary,
)
from prunesearch.experiments.report import render_report
from prunesearch.experiments.stats import headroom
from prunesearch.space import load_space
from prunesearch.training.runs import DataOptions

# one worker runs the module: its module-scoped fixtures (trained runs) are built once,
# not once per pytest-xdist worker (pyproject.toml: --dist loadgroup)
pytestmark = pytest.mark.xdist_group("fidelity")

TINY = str(Path(__file__).parents[1] / "spaces" / "tiny.yaml")
# two batches of training images: every cell trains, none of the checks needs more
DATA = DataOptions(limit_train=64)


def _archs(truth, scores, seeds=((0.0, 0.0),)):
    return [
        {
            "name": f"a{i}",
            "origin": "spread:group",
            "mean": t,
            "scores": {"x": s},
            "test_accuracy": [t + d for d in seeds[i % len(seeds)]],
        }
        for i, (t, s) in enumerate(zip(truth, scores, strict=True))
    ]


def test_a_perfect_objective_and_a_reversed_one():
    truth = [0.70, 0.72, 0.75, 0.78, 0.80, 0.81, 0.83]
    perfect = rank_summary(_archs(truth, truth), ("x",))["objectives"]["x"]
    assert perfect["kendall_tau"]["value"] == 1 and perfect["spearman_rho"]["value"] == 1
    assert perfect["regret"] == 0 and perfect["top5_precision"] == 1
    worst = rank_summary(_archs(truth, [-t for t in truth]), ("x",))["objectives"]["x"]
    assert worst["kendall_tau"]["value"] == -1
    assert worst["regret"] == pytest.approx(0.83 - 0.70)
    assert worst["top5_precision"] == 3 / 5  # 7 archs: top-5 sets share 3
    assert worst["top_pick"] == "a0"


def test_noise_ceiling_from_two_seeds():
    truth = [0.70, 0.72, 0.75, 0.78]
    same = rank_summary(_archs(truth, truth, seeds=((0.0, 0.0),)), ("x",))
    assert same["noise_ceiling"]["kendall_tau"]["value"] == 1
    one_seed = [a | {"test_accuracy": [a["mean"]]} for a in _archs(truth, truth)]
    assert "noise_ceiling" not in rank_summary(one_seed, ("x",))
    assert "headroom" not in rank_summary(one_seed, ("x",))


def test_headroom_in_points_from_the_seed_table():
    truth = [0.70, 0.72, 0.75, 0.78, 0.80]
    noisy = rank_summary(_archs(truth, truth, seeds=((0.004, -0.004), (-0.004, 0.004))), ("x",))
    h = noisy["headroom"]
    assert h["seeds"] == 2 and h["seed_sd"] > 0
    assert 3 < h["arch_sd"]["value"] < 5  # the truth's sd is 4.1 points
    assert "Headroom: the architectures' true accuracies differ" in headroom_text(h)


def test_halton_points_fill_the_cube():
    pts = [halton(i, 3) for i in range(1, 65)]
    assert all(0 <= v < 1 for p in pts for v in p)
    for d in range(3):  # low discrepancy: each half of every axis holds about half
        assert abs(sum(p[d] < 0.5 for p in pts) - 32) <= 2


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fidelity")
    space = load_space(TINY).replace("search", scratch_images=64, scratch_rungs=1)
    result = fidelity(
        space, FidelityOptions("50%FLOPs", archs=5, seeds=2), out=out, epochs=1, data=DATA
    )
    return space, out, result


def test_figures_come_from_trained_cells(run):
    _, out, result = run
    assert len(result["archs"]) == 5
    assert [a["origin"] for a in result["archs"][:3]] == ["baseline"] * 3
    assert {a["origin"] for a in result["archs"][3:]} <= {"spread:group", "spread:profile"}
    for a in result["archs"]:
        assert set(a["scores"]) == {"inherit", "scratch"}
        metrics = [json.loads((Path(c) / "metrics.json").read_text()) for c in a["cells"]]
        assert [m["test_accuracy"] for m in metrics] == a["test_accuracy"]
        assert [m["seed"] for m in metrics] == [0, 1]
        assert all(m["spec"]["widths"] == a["widths"] for m in metrics)
        assert abs(a["flops"] / result["target"] - 1) <= 0.01
    assert set(result["objectives"]) == {"inherit", "scratch"}
    assert "noise_ceiling" in result
    assert "| noise ceiling" in (out / "fidelity.md").read_text()
    acc = [[100 * v for v in a["test_accuracy"]] for a in result["archs"]]
    assert result["headroom"]["seed_sd"] == pytest.approx(headroom(acc).seed_sd)
    assert "Headroom:" in (out / "fidelity.md").read_text()
    report = render_report(out)
    assert report["kind"] == "fidelity" and len(report["figures"]) == 2
    assert Path(report["figures"][0]).read_bytes()[:4] == b"\x89PNG"


def test_rerun_trains_and_scores_nothing_again(run):
    space, out, first = run
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("model.safetensors")}
    scores = (out / "scores.json").stat().st_mtime_ns
    again = fidelity(
        space, FidelityOptions("50%FLOPs", archs=5, seeds=2), out=out, epochs=1, data=DATA
    )
    assert {p: p.stat().st_mtime_ns for p in out.rglob("model.safetensors")} == stamps
    assert (out / "scores.json").stat().st_mtime_ns == scores
    assert [a["test_accuracy"] for a in again["archs"]] == [
        a["test_accuracy"] for a in first["archs"]
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--archs", "2"], "--archs must be >= 3"),
        (["--seeds", "0"], "--seeds must be >= 1"),
        (["--objective", "oracle"], "unknown objective 'oracle'"),
        (["--schedule", "scratch-z"], "unknown schedule 'scratch-z'"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path, args, message):
    res = CliRunner().invoke(
        app,
        ["fidelity", "--space", TINY, "--budget", "50%FLOPs", *args, "--out", str(tmp_path / "f")],
    )
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("error: ") and message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "f").exists()


def test_unreachable_budget_exits_2_before_training(tmp_path):
    res = CliRunner().invoke(
        app, ["fidelity", "--space", TINY, "--budget", "2%FLOPs", "--out", str(tmp_path / "f")]
    )
    assert res.exit_code == 2 and "budget unreachable" in res.stderr
    assert not (tmp_path / "f").exists()
