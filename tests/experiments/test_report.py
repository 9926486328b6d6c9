import json
import shutil
from pathlib import Path

import pytest

from prunesearch.errors import PrunesearchError
from prunesearch.experiments.report import pareto_front, render_report, search_data, training_data
from prunesearch.find.find import FindOptions, find
from prunesearch.space import load_space

from ..helpers import run_cli

# one worker runs the module: its module-scoped fixtures (trained runs) are built once,
# not once per pytest-xdist worker (pyproject.toml: --dist loadgroup)
pytestmark = pytest.mark.xdist_group("report")

TINY = str(Path(__file__).parents[1] / "spaces" / "tiny.yaml")


def test_pareto_front():
    pts = [(10, 0.5), (5, 0.4), (7, 0.6), (12, 0.55), (5, 0.45), (20, 0.9)]
    assert pareto_front(pts) == [4, 2, 5]
    assert pareto_front([]) == []


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_base_dir):
    root = tmp_path_factory.mktemp("report")
    # the session's tiny base (2 epochs); copied: the report below writes into its folder
    shutil.copytree(tiny_base_dir, root / "base")
    find(
        load_space(TINY),
        FindOptions("40%,70%FLOPs", base=str(root / "base"), trials=4),
        out=root / "find",
    )
    return root


def test_search_data(runs):
    data = search_data(runs / "find")
    family = json.loads((runs / "find" / "family.json").read_text())
    assert [m["budget"] for m in data["members"]] == ["40%FLOPs", "70%FLOPs"]
    for m, fm in zip(data["members"], family["members"], strict=True):
        assert len(m["trials"]) == 4
        assert all(0.99 * fm["target"] <= t["flops"] <= fm["target"] for t in m["trials"])
        assert [h["best"] for h in m["history"]] == sorted(h["best"] for h in m["history"])
        assert m["history"][-1]["best"] == max(t["value"] for t in m["trials"])
        p = m["profile"]
        assert len(p["groups"]) == len(p["width"]) == len(p["base"]) == len(p["uniform"])
        assert all(1 <= w <= b for w, b in zip(p["width"], p["base"], strict=True))
    # the front: no trial both cheaper and better than a front point
    everyone = [t for m in data["members"] for t in m["trials"]]
    for f in data["pareto"]:
        assert not any(t["flops"] < f["flops"] and t["value"] >= f["value"] for t in everyone)


def test_a_copied_run_folder_reports_from_anywhere_on_its_own_study(runs, tmp_path, monkeypatch):
    copy = tmp_path / "moved" / "find"
    shutil.copytree(runs / "find", copy)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # neither the directory find ran in nor the folder
    data = search_data(copy)
    assert [len(m["trials"]) for m in data["members"]] == [4, 4]
    assert all(Path(m["spec"]).is_relative_to(copy) for m in data["members"])
    (copy / "study.db").unlink()  # the original's is still there: it must not be read
    with pytest.raises(PrunesearchError, match=r"its study\.db is gone"):
        search_data(copy)


def test_training_data(runs):
    data = training_data(runs / "base")
    assert data["epoch"] == [1, 2] and len(data["train_loss"]) == 2
    assert all(v is not None for v in data["val_accuracy"])


@pytest.mark.parametrize(
    "folder, names",
    [("find", {"trials.png", "history.png", "widths.png"}), ("base", {"curves.png"})],
)
def test_render_report(runs, folder, names):
    result = render_report(runs / folder)
    assert {Path(f).name for f in result["figures"]} == names
    for f in result["figures"]:
        assert Path(f).read_bytes()[:4] == b"\x89PNG"
    assert Path(result["markdown"]).read_text().startswith("# ")


def test_report_refuses_other_folders(tmp_path):
    proc = run_cli("report", tmp_path)
    assert proc.returncode == 2 and "not a prunesearch run folder" in proc.stderr
