"""Knowledge distillation in the training loop: the loss is the formula, the teacher's settings
are part of the run, and a distilled run resumes exactly."""

import math
from pathlib import Path

import pytest
import torch

import prunesearch as ps
from prunesearch.errors import PrunesearchError
from prunesearch.space import load_space
from prunesearch.training.loop import (
    Progress,
    Recipe,
    RunOptions,
    Teacher,
    distillation_loss,
    fit,
)
from prunesearch.training.runs import DataOptions, load_splits, recipe_from_space

SPACES = Path(__file__).parents[1] / "spaces"


def test_the_loss_is_the_formula_on_a_hand_made_example():
    student = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
    teacher = torch.tensor([[4.0, 1.0, 0.0], [0.0, 2.0, 2.0]])
    y = torch.tensor([0, 2])
    t, w = 2.0, 0.3

    def softmax(row, temp):
        e = [math.exp(v / temp) for v in row]
        return [v / sum(e) for v in e]

    ce = (
        -sum(math.log(softmax(s, 1)[c]) for s, c in zip(student.tolist(), y.tolist(), strict=True))
        / 2
    )
    kl = (
        sum(
            sum(p * math.log(p / q) for p, q in zip(softmax(tr, t), softmax(sr, t), strict=True))
            for sr, tr in zip(student.tolist(), teacher.tolist(), strict=True)
        )
        / 2
    )
    expected = (1 - w) * ce + w * t * t * kl
    assert distillation_loss(student, teacher, y, t, w).item() == pytest.approx(expected, rel=1e-6)
    # the soft term vanishes when the student matches the teacher; w = 0 is cross-entropy
    assert distillation_loss(teacher, teacher, y, t, 1.0).item() == pytest.approx(0, abs=1e-6)
    ce_only = torch.nn.functional.cross_entropy(student, y).item()
    assert distillation_loss(student, teacher, y, t, 0.0).item() == pytest.approx(ce_only)


@pytest.fixture(scope="module")
def setting():
    space = load_space(SPACES / "tiny.yaml")
    splits = load_splits(space, DataOptions(limit_train=128))
    recipe = Recipe(**{**recipe_from_space(space).__dict__, "epochs": 2, "sparsity": 0.0})
    return splits, recipe


def _student():
    torch.manual_seed(1)
    return ps.create_model("resnet20", num_classes=4)


def _teacher(weight=0.7):
    torch.manual_seed(2)
    return Teacher(ps.create_model("resnet20", num_classes=4), temperature=4.0, weight=weight)


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_a_teacher_changes_what_is_learned_and_is_recorded(setting, tmp_path):
    splits, recipe = setting
    plain = _student()
    fit(plain, splits, recipe, RunOptions(), tmp_path / "plain")
    mute = _student()  # weight 0: the same steps as without a teacher
    fit(mute, splits, recipe, RunOptions(), tmp_path / "mute", teacher=_teacher(0.0))
    a, b = _weights(plain), _weights(mute)
    assert all(torch.equal(a[k], b[k]) for k in a)
    taught = _student()
    teacher = _teacher()
    before = _weights(teacher.model)
    metrics = fit(taught, splits, recipe, RunOptions(), tmp_path / "taught", teacher=teacher)
    assert metrics["distillation"] == {"temperature": 4.0, "weight": 0.7}
    assert not torch.equal(plain.conv1.weight, taught.conv1.weight)
    after = _weights(teacher.model)  # the teacher only taught
    assert all(torch.equal(before[k], after[k].cpu()) for k in before)
    assert sum(h["images"] for h in metrics["history"]) == 2 * 128


def test_a_distilled_run_resumes_exactly_and_only_with_its_teacher(setting, tmp_path):
    splits, recipe = setting
    ref = _student()
    fit(ref, splits, recipe, RunOptions(), tmp_path / "ref", teacher=_teacher())

    class StopInEpoch2(ps.progress.Reporter):
        def batch(self, epoch, *args):
            if epoch == 1:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(
            _student(),
            splits,
            recipe,
            RunOptions(),
            tmp_path / "run",
            progress=Progress(StopInEpoch2()),
            teacher=_teacher(),
        )
    with pytest.raises(PrunesearchError, match="different configuration"):
        fit(_student(), splits, recipe, RunOptions(resume=True), tmp_path / "run")
    resumed = _student()
    fit(resumed, splits, recipe, RunOptions(resume=True), tmp_path / "run", teacher=_teacher())
    a, b = _weights(ref), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
