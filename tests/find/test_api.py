"""``ps.search`` on the user's own objects: a toy model, a score function or tensor datasets."""

import json
import math

import pytest
import torch
from torch.utils.data import TensorDataset

import prunesearch as ps

from ..toy_models import Plain

X = torch.zeros(1, 3, 16, 16)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(123)  # not the scratch objective's init seed (0)
    return Plain()


@pytest.fixture(scope="module")
def data():
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(96, 3, 16, 16, generator=gen)
    labels = torch.randint(0, 5, (96,), generator=gen)
    return TensorDataset(images[:64], labels[:64]), TensorDataset(images[64:], labels[64:])


def first_width(net) -> float:
    """Prefers a wider first layer, and nothing else."""
    return float(net.c1[0].out_channels)


def test_a_user_score_is_maximised(model):
    seen = []

    def score(net):
        seen.append(net)
        return first_width(net)

    result = ps.search(model, X, "50%FLOPs", score=score, trials=6)
    widths, base = result.widths["50%FLOPs"], result.spec.base_widths
    assert result.scores["50%FLOPs"] == widths["c1.0"]
    assert all(widths["c1.0"] >= b["widths"]["c1.0"] for b in result.baselines["50%FLOPs"].values())
    assert set(result.baselines["50%FLOPs"]) >= {"uniform", "l1", "global"}
    assert result.spec.flops <= result.spec.budget["target"] and widths["c1.0"] < base["c1.0"]
    trials = result.study.get_trials(states=(ps.find.api.optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 6 and max(t.value for t in trials) <= widths["c1.0"]
    # inherited weights: the kept filters are the base's, in eval mode
    net = seen[0]
    assert not net.training
    kept = net.c1[0].weight
    assert all(any(torch.equal(k, w) for w in model.c1[0].weight) for k in kept)
    assert result.run_dir is None


def test_the_scratch_objective_gives_the_score_untrained_models(model):
    seen = []

    def score(net):
        seen.append(net)
        return first_width(net)

    ps.search(model, X, "50%FLOPs", score=score, trials=2, objective="scratch", scratch_confirm=0)
    net = seen[0]
    assert net.training
    assert not any(torch.equal(net.c1[0].weight[0], w) for w in model.c1[0].weight)


def test_data_with_the_inherit_objective_and_a_family(model, data):
    result = ps.search(
        model, X, "25%,50%FLOPs", data=data, trials=3, batch_size=16, calib_batches=2
    )
    assert list(result.specs) == ["25%FLOPs", "50%FLOPs"]
    for text, spec in result.specs.items():
        assert spec.budget["text"] == text and spec.flops <= spec.budget["target"]
        assert spec.search["objective"] == "inherit" and spec.model == "tests.toy_models:Plain"
        assert 0 <= result.scores[text] <= 1
        assert result.scores[text] >= max(b["score"] for b in result.baselines[text].values())
        assert len(result.studies[text].trials) == 3
    assert result.specs["25%FLOPs"].flops < result.specs["50%FLOPs"].flops


def test_data_with_the_scratch_objective_sizes_the_rungs_from_the_data(model, data):
    result = ps.search(
        model, X, "50%FLOPs", data=data, trials=2, batch_size=16, objective="scratch"
    )
    settings = result.spec.search["objective_settings"]
    assert settings["rung_images"] == [21, 63]  # a third of the 64 images, then 3x that
    assert settings["rung_images"][-1] <= 64


def test_a_resumed_study_continues(model, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    first = ps.search(model, X, "50%FLOPs", score=first_width, trials=3, storage=storage)
    old = [t.params for t in first.study.get_trials()]
    again = ps.search(model, X, "50%FLOPs", score=first_width, trials=5, storage=storage)
    assert first.study.study_name == again.study.study_name
    done = again.study.get_trials(states=(ps.find.api.optuna.trial.TrialState.COMPLETE,))
    assert len(done) == 5
    assert [t.params for t in again.study.get_trials()][:3] == old


def test_exported_specs_reload_and_build(model, tmp_path):
    out = tmp_path / "run" / "deeper"
    result = ps.search(model, X, "50%FLOPs", score=first_width, trials=2, out=out)
    assert result.run_dir == out
    family = json.loads((out / "family.json").read_text())
    path = out / family["members"][0]["spec"]
    assert path.name == "spec-50pct-flops.json" and (out / "study.db").is_file()
    assert sorted(p.name for p in (out / "baselines").iterdir())[0].startswith("spec-50pct")
    spec = ps.ArchSpec.load(path)
    assert spec.to_dict() == result.spec.to_dict()
    net = ps.build(spec, allow_import="tests")
    assert net(torch.zeros(2, 3, 16, 16)).shape == (2, 5)
    assert ps.count_flops(net, X) == spec.flops


@pytest.mark.parametrize("bad", [math.nan, math.inf, "high", None])
def test_a_score_that_is_not_a_finite_number_is_an_error(model, bad):
    with pytest.raises(ps.PrunesearchError, match="score function returned"):
        ps.search(model, X, "50%FLOPs", score=lambda net: bad, trials=2)


def test_a_nan_in_a_trial_names_the_trial(model):
    calls = []

    def score(net):
        calls.append(1)
        return math.nan if len(calls) > 4 else 1.0  # the baselines are fine

    with pytest.raises(ps.PrunesearchError, match=r"50%FLOPs, trial \d+: the score function"):
        ps.search(model, X, "50%FLOPs", score=score, trials=3)


def test_what_the_score_raises_reaches_the_caller(model):
    def score(net):
        raise KeyError("my bug")

    with pytest.raises(KeyError, match="my bug"):
        ps.search(model, X, "50%FLOPs", score=score, trials=2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "score=callable, or data=\\(train, val\\)"),
        ({"score": first_width, "colour": 3}, "unknown option 'colour'"),
        ({"score": first_width, "objective": "guess"}, "objective"),
        ({"score": first_width, "trials": 0}, "trials must be >= 1"),
        (
            {"data": (TensorDataset(torch.zeros(4, 1, 16, 16), torch.zeros(4).long()),) * 2},
            r"images of shape \[1, 16, 16\]",
        ),
        (
            {"data": (TensorDataset(torch.zeros(4, 3, 16, 16), torch.zeros(4)),) * 2},
            "class indices",
        ),
    ],
)
def test_bad_arguments_are_refused(model, kwargs, message):
    with pytest.raises(ps.PrunesearchError, match=message):
        ps.search(model, X, "50%FLOPs", **kwargs)
