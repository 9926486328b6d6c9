"""The family's parts on hand-made data: recipes, costs, the report's figure data."""

from pathlib import Path

import pytest

from prunesearch.errors import PrunesearchError
from prunesearch.family.costs import TRAIN_FACTOR, base_cost, family_total, member_cost
from prunesearch.family.report import draw_figure, figure_data, latency_ms, markdown
from prunesearch.space import load_space, space_from_dict
from prunesearch.training.recipes import (
    RECIPES,
    member_epochs,
    member_recipe,
    share_epochs,
    training_recipe,
)
from prunesearch.vocab import FAMILY_RECIPES

TINY = Path(__file__).parents[1] / "spaces" / "tiny.yaml"


def test_every_recipe_is_data_and_named_in_the_vocabulary():
    assert tuple(RECIPES) == FAMILY_RECIPES
    assert [RECIPES[n].init for n in FAMILY_RECIPES] == [
        "base",
        "base",
        "previous",
        "scratch",
        "scratch",
    ]
    assert [n for n in FAMILY_RECIPES if RECIPES[n].teacher] == ["distill"]
    with pytest.raises(PrunesearchError, match="unknown recipe 'nope'; choose finetune"):
        member_recipe("nope")


def test_a_member_trains_a_fraction_of_the_bases_epochs_at_the_family_lr():
    assert [member_epochs(0.25, e) for e in (1, 2, 4, 5, 160)] == [1, 1, 1, 2, 40]
    assert member_epochs(0.5, 3) == 2 and member_epochs(1.0, 3) == 3
    space = load_space(TINY)
    r = training_recipe(RECIPES["distill"], space, base_epochs=8)
    assert (r.epochs, r.lr, r.schedule, r.sparsity) == (2, 0.01, "cosine", 0.0)
    assert r.batch_size == space.data.batch_size and r.momentum == space.train.momentum


def test_a_shared_family_compute_gives_smaller_members_more_epochs_within_it():
    ratios = (0.25, 0.5, 0.75)
    assert [share_epochs(1.0, 3, r, 2) for r in ratios] == [2, 1, 1]
    assert [share_epochs(1.0, 3, r, 3) for r in ratios] == [3, 2, 1]  # at most Scratch-E's 3
    for base_epochs in (2, 3, 10, 160):  # within the share, bar the at-least-one-epoch floor
        epochs = [share_epochs(1.0, 3, r, base_epochs) for r in ratios]
        cost = sum(e * r for e, r in zip(epochs, ratios, strict=True)) / base_epochs
        assert cost <= 1.0 + 1e-9 and all(e >= 1 for e in epochs)
    assert share_epochs(0.1, 3, 0.75, 2) == 1  # never 0 epochs
    space = load_space(TINY)
    r = training_recipe(RECIPES["finetune"], space, base_epochs=8, epochs=5)
    assert (r.epochs, r.lr) == (5, space.train.family_lr)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("family_compute", -0.5, r"train.family_compute: must be in \[0, 100\] \(0: off\)"),
        ("family_epochs", 0.0, r"train.family_epochs: must be in \(0, 1\]"),
        ("family_lr", -1.0, "train.family_lr: must be > 0"),
        ("distill_temperature", 0.0, "train.distill_temperature: must be > 0"),
        ("distill_weight", 1.5, r"train.distill_weight: must be in \[0, 1\]"),
        ("distill_weight", "high", "train.distill_weight: must be a number"),
    ],
)
def test_the_family_keys_of_a_space_are_checked(key, value, message):
    raw = load_space(TINY).to_dict()
    raw["train"][key] = value
    with pytest.raises(PrunesearchError, match=message):
        space_from_dict(raw)


def _metrics(flops, epochs, per_epoch, seconds=2.0):
    history = [{"images": per_epoch, "seconds": seconds / epochs}] * epochs
    return {"flops": flops, "epochs": epochs, "history": history, "train_seconds": seconds}


def test_costs_count_forward_backward_and_the_teacher_and_add_up():
    base = base_cost(1000, 4, _metrics(1000, 4, 100), per_epoch=50)
    assert base["train_macs"] == 3 * 1000 * 400 and base["images_from"].startswith("the base's")
    assumed = base_cost(1000, 4, None, per_epoch=50)
    assert assumed["images"] == 200 and assumed["images_from"].startswith("assumed")
    half = member_cost(_metrics(500, 1, 100), None, base)
    assert half["train_macs"] == TRAIN_FACTOR * 500 * 100 and half["teacher_macs"] == 0
    assert half["x_base"] == pytest.approx(150_000 / 1_200_000)
    # Scratch-B: 4 x 1000/500 = 8 epochs of 100 images at 500 MACs: the base's compute
    assert half["scratch_b_epochs"] == 8 and half["scratch_b_macs"] == base["train_macs"]
    taught = member_cost(_metrics(250, 1, 100), 1000, base)
    assert taught["teacher_macs"] == 1000 * 100
    assert taught["total_macs"] == 3 * 250 * 100 + 1000 * 100
    total = family_total([half, taught], base)
    assert total["total_macs"] == half["total_macs"] + taught["total_macs"]
    assert total["x_base"] == pytest.approx(half["x_base"] + taught["x_base"])
    assert total["scratch_b_macs"] == half["scratch_b_macs"] + taught["scratch_b_macs"]
    assert total["train_seconds"] == 4.0


def _card(spec_ms, base_ms):
    rows = [
        {"model": m, "memory_format": f, "batch": b, "median_ms_per_image": ms * k}
        for m, ms in (("spec", spec_ms), ("base", base_ms))
        for f, k in (("nchw", 1.0), ("channels-last", 1.5))
        for b in (1, 64)
    ]
    return {"latency": {"rows": rows}}


def test_the_figure_data_holds_members_base_and_scratch_b_points():
    assert latency_ms(_card(0.5, 1.0)) == 0.5 and latency_ms(_card(0.5, 1.0), "base") == 1.0
    assert latency_ms(None) is None and latency_ms({"latency": None}) is None
    base = base_cost(4_000_000, 2, None, per_epoch=10)
    member = {"cost": member_cost(_metrics(2_000_000, 1, 10), None, base), "member": "50pct"}
    report = {
        "space": "tiny",
        "recipe": "finetune",
        "seed": 0,
        "find_run": "find",
        "base": {
            "flops": 4_000_000,
            "params": 10,
            "epochs": 2,
            "test_accuracy": 0.9,
            "latency_ms": 1.0,
            "cost": base,
        },
        "members": [
            member
            | {"budget": "75%", "flops": 3_000_000, "params": 8, "test_accuracy": 0.88}
            | {"latency_ms": 0.8, "recipe": "finetune"},
            member
            | {"budget": "50%", "flops": 2_000_000, "params": 5, "test_accuracy": 0.85}
            | {"latency_ms": None, "recipe": "finetune"},
        ],
        "scratch_b": [{"budget": "50%", "flops": 2_000_000, "test_accuracy": 0.86}],
        "total": family_total([member["cost"]] * 2, base),
        "figure": "family.png",
    }
    data = figure_data(report)
    flops, params, latency = data["panels"].values()
    assert flops["members"] == [(2.0, 0.85, "50%"), (3.0, 0.88, "75%")]  # in FLOPs order
    assert flops["base"] == (4.0, 0.9, None)
    assert flops["scratch_b"] == [(2.0, 0.86, "50%")]
    assert params["members"] == [(5e-6, 0.85, "50%"), (8e-6, 0.88, "75%")]
    assert params["base"] == (1e-5, 0.9, None) and params["scratch_b"] == []  # no params given
    assert latency["members"] == [(0.8, 0.88, "75%")] and latency["base"] == (1.0, 0.9, None)
    assert latency["scratch_b"] == []  # not timed
    md = markdown(report)
    assert "| base | - | 4,000,000 |" in md and "**family**" in md and "(family.png)" in md
    no_latency = report | {"members": [m | {"latency_ms": None} for m in report["members"]]}
    assert list(figure_data(no_latency)["panels"]) == [
        "MFLOPs (fvcore MACs)",
        "parameters (millions)",
    ]


def test_controls_sit_beside_their_member_in_the_figure_and_table_costed_apart(tmp_path):
    base = base_cost(4_000_000, 2, None, per_epoch=10)
    cost = member_cost(_metrics(2_000_000, 1, 10), None, base)
    row = {"cost": cost, "params": 5, "recipe": "finetune", "latency_ms": None}
    members = [
        row | {"member": "75pct", "budget": "75%", "flops": 3_000_000, "test_accuracy": 0.88},
        row | {"member": "50pct", "budget": "50%", "flops": 2_000_000, "test_accuracy": 0.85},
    ]
    controls = [
        m
        | {"member": f"{m['member']}-{name}", "control": name, "of": m["member"]}
        | {"test_accuracy": m["test_accuracy"] - 0.01 * (k + 1)}
        for k, name in enumerate(("uniform", "global"))
        for m in members
    ]
    report = {
        "space": "tiny",
        "recipe": "finetune",
        "seed": 0,
        "find_run": "find",
        "base": {"flops": 4_000_000, "params": 10, "epochs": 2, "test_accuracy": 0.9}
        | {"latency_ms": None, "cost": base},
        "members": members,
        "controls": controls,
        "total": family_total([m["cost"] for m in members], base),
        "controls_total": family_total([c["cost"] for c in controls], base),
    }
    data = figure_data(report)
    assert data["budgets"] == ["50%", "75%"]  # colour i: the i-th budget by FLOPs
    flops = data["panels"]["MFLOPs (fvcore MACs)"]
    assert (2.0, 0.84, "50%", "uniform") in flops["controls"]
    assert (3.0, 0.86, "75%", "global") in flops["controls"] and len(flops["controls"]) == 4
    assert draw_figure(data, tmp_path / "f.png").stat().st_size > 0
    lines = markdown(report).splitlines()
    at = lines.index(next(x for x in lines if x.startswith("| 75pct |")))
    assert lines[at + 1].startswith("| 75pct-uniform | 75% |")
    assert "finetune (control: uniform)" in lines[at + 1]
    assert lines[at + 2].startswith("| 75pct-global | 75% |")
    # the family's total counts the members only; the controls' bill is said apart
    assert report["total"]["members"] == 2 and report["controls_total"]["members"] == 4
    assert "counted apart from the family's total" in markdown(report)
