"""The from-scratch objective: deterministic, rung by rung, stopped early by successive halving."""

import json

import optuna
import pytest
import torch

import prunesearch as ps
from prunesearch.data.datasets import load_dataset
from prunesearch.errors import PrunesearchError
from prunesearch.find.objectives import SGD, Feed, Rungs, ScratchScorer


@pytest.fixture(scope="module")
def setup():
    train = load_dataset("synthetic", "train", train_size=256, num_classes=4)
    val = load_dataset("synthetic", "test", test_size=128, num_classes=4)
    graph = ps.trace(ps.create_model("resnet20", num_classes=4), torch.zeros(1, 3, 16, 16))
    return graph, train, val


def scorer(setup, **rungs) -> ScratchScorer:
    graph, train, val = setup
    return ScratchScorer(
        graph,
        train,
        val,
        rungs=Rungs(**({"images": 64, "count": 2} | rungs)),
        sgd=SGD(lr=0.05),
        feed=Feed(32, 128, torch.device("cpu"), channels_last=False, augment=True),
    )


class Recorder:
    def __init__(self, prune_after: int | None = None):
        self.reports, self.prune_after = [], prune_after

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return self.prune_after is not None and len(self.reports) >= self.prune_after


def test_rung_sizes_and_pruner():
    rungs = Rungs(images=100, count=3, reduction=3)
    assert rungs.sizes == [100, 300, 900]
    pruner = rungs.pruner()
    assert isinstance(pruner, optuna.pruners.SuccessiveHalvingPruner)


def test_scores_are_deterministic_and_independent_of_reporting(setup):
    graph = setup[0]
    widths = {g.name: max(1, g.size // 2) for g in graph.groups}
    first = scorer(setup).score(widths)
    rec = Recorder()
    # a fresh scorer trains again: the cool-down branches leave the trunk untouched
    assert scorer(setup).score(widths, rec) == first
    assert [step for step, _ in rec.reports] == [64, 192]
    assert rec.reports[-1][1] == first
    assert 0 <= first <= 1


def test_widths_scored_once_are_replayed_not_retrained(setup, monkeypatch):
    graph = setup[0]
    widths = {g.name: max(1, g.size // 2) for g in graph.groups}
    s = scorer(setup)
    trained = []
    train = s._train
    monkeypatch.setattr(s, "_train", lambda *a: trained.append(a) or train(*a))
    first = s.score(widths)  # a baseline, scored without a trial
    rec = Recorder()
    assert s.score(dict(reversed(widths.items())), rec) == first  # the same widths, proposed
    assert len(trained) == 1
    assert [step for step, _ in rec.reports] == [64, 192]
    with pytest.raises(optuna.TrialPruned):  # a replay stops early like a training
        s.score(widths, Recorder(prune_after=1))
    s.score(widths, seed=1)  # another seed is another training
    assert len(trained) == 2


def test_a_weak_candidate_stops_at_the_first_rung(setup):
    graph = setup[0]
    rec = Recorder(prune_after=1)
    with pytest.raises(optuna.TrialPruned):
        scorer(setup).score({g.name: g.size for g in graph.groups}, rec)
    assert len(rec.reports) == 1


def test_divergence_is_an_error(setup):
    graph, train, val = setup
    s = ScratchScorer(
        graph,
        train,
        val,
        rungs=Rungs(images=64, count=1),
        sgd=SGD(lr=1e6),
        feed=Feed(32, 128, torch.device("cpu"), channels_last=False),
    )
    with pytest.raises(PrunesearchError, match="candidate diverged"):
        s.score({g.name: g.size for g in graph.groups})


def test_a_second_seed_without_a_trial_cools_down_only_the_last_rung(setup, monkeypatch):
    graph = setup[0]
    widths = {g.name: max(1, g.size // 2) for g in graph.groups}
    rec = Recorder()
    full = scorer(setup).score(widths, rec, seed=1)  # every rung, reported
    s = scorer(setup)
    cooled = []
    cool = s._cooled
    monkeypatch.setattr(s, "_cooled", lambda *a: cooled.append(a[2]) or cool(*a))
    assert s.score(widths, seed=1) == full  # a finalist's second opinion: the same last score
    assert cooled == [192]  # the first rung was trained through, not cooled down nor evaluated
    again = Recorder()
    assert s.score(widths, again, seed=1) == full  # a trial needs every rung: trained again
    assert [step for step, _ in again.reports] == [step for step, _ in rec.reports] == [64, 192]
    assert s.trainings == 2
    assert cooled == [192, 64, 192]


def test_scores_kept_by_one_scorer_are_replayed_by_another(setup):
    graph = setup[0]
    half = {g.name: max(1, g.size // 2) for g in graph.groups}
    quarter = {g.name: max(1, g.size // 4) for g in graph.groups}
    first = scorer(setup)
    scores = (first.score(half), first.score(quarter, seed=1))
    records = json.loads(json.dumps(first.memo()))  # as scores.json keeps them
    later = scorer(setup)
    later.remember(records)
    rec = Recorder()
    assert (later.score(half, rec), later.score(quarter, seed=1)) == scores
    assert later.trainings == 0 and [step for step, _ in rec.reports] == [64, 192]
    other = scorer(setup, count=3)  # records of another rung count are not scores of these rungs
    other.remember(records)
    other.score(half)
    assert other.trainings == 1
