"""`prunesearch family` on the tiny space: a 2-budget find, then trained, exported, verified
members with their cards and costs; chain, resume after a kill, bad input."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import prunesearch as ps
from prunesearch.family.family import FamilyOptions, train_family
from prunesearch.family.inputs import read_find_run
from prunesearch.family.members import chain_start, trained_model
from prunesearch.fileio import file_digest
from prunesearch.find.find import FindOptions, find
from prunesearch.space import load_space
from prunesearch.training.runs import inherit_weights

from ..helpers import run_cli

# one worker runs the module: its module-scoped fixtures (trained runs) are built once,
# not once per pytest-xdist worker (pyproject.toml: --dist loadgroup)
pytestmark = pytest.mark.xdist_group("family")

TINY = str(Path(__file__).parents[1] / "spaces" / "tiny.yaml")
QUICK = {"format": "pt2", "repeats": 2}  # latency measured, briefly


@pytest.fixture(scope="module")
def find_run(tiny_base, tmp_path_factory) -> Path:
    """A finished 2-budget find on the tiny space (never written to by the tests)."""
    out = tmp_path_factory.mktemp("find")
    find(load_space(TINY), FindOptions("40%,70%FLOPs", base=str(tiny_base), trials=2), out=out)
    return out


@pytest.fixture(scope="module")
def finetuned(find_run, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("finetune")
    return train_family(find_run, FamilyOptions("finetune", out=out, **QUICK))


def _weights(member: dict) -> dict:
    return load_file(Path(member["run_dir"]) / "model.safetensors")


def test_every_member_is_trained_exported_verified_and_carded(finetuned, find_run):
    out = Path(finetuned["out"])
    assert [m["budget"] for m in finetuned["members"]] == ["40%FLOPs", "70%FLOPs"]
    written = json.loads((out / "family.json").read_text())
    assert written["members"] == finetuned["members"] and (out / "family.png").stat().st_size
    assert "| 40pct-flops | 40%FLOPs |" in (out / "family.md").read_text()
    for m in finetuned["members"]:
        spec = ps.ArchSpec.load(find_run / f"spec-{m['member']}.json")
        assert (m["flops"], m["params"]) == (spec.flops, spec.params)
        assert m["verified"] is True and Path(m["export"]).name == "model.pt2"
        card = json.loads(Path(m["export"]).with_name("model.json").read_text())
        assert card["training_cost"] == m["cost"] and card["run"]["kind"] == "finetune"
        assert card["accuracy"]["test"] == m["test_accuracy"]
        assert "## Training cost" in Path(m["card"]).read_text()
        assert m["latency_ms"] > 0 and m["init"] == {"from": "base", "signal": "slimming"}
        metrics = json.loads((Path(m["run_dir"]) / "metrics.json").read_text())
        assert metrics["recipe"]["lr"] == 0.01 and metrics["recipe"]["schedule"] == "cosine"
        # it trained: its weights are not the base's pruned ones
        pruned = inherit_weights(spec, read_find_run(find_run).base_path, "slimming")
        trained = _weights(m)
        assert not all(torch.equal(v, trained[k]) for k, v in pruned.state_dict().items())
    assert finetuned["base"]["latency_ms"] > 0 and finetuned["base"]["test_accuracy"] > 0


def test_the_costs_add_up(finetuned):
    base, total = finetuned["base"], finetuned["total"]
    costs = [m["cost"] for m in finetuned["members"]]
    assert total["total_macs"] == sum(c["total_macs"] for c in costs)
    # the tiny space: 256 training images per epoch, 2 base epochs, 1 epoch per member
    # (family_compute 0: a quarter of the base's epochs, rounded up)
    assert base["cost"]["train_macs"] == 3 * base["flops"] * 2 * 256
    for m, c, epochs in zip(finetuned["members"], costs, (1, 1), strict=True):
        assert c["train_macs"] == 3 * m["flops"] * epochs * 256 and c["teacher_macs"] == 0
        assert c["x_base"] == pytest.approx(c["total_macs"] / base["cost"]["train_macs"])
        assert c["x_scratch_b"] < 1  # a share of the base's compute, cheaper than Scratch-B
    assert total["x_base"] == pytest.approx(sum(c["x_base"] for c in costs))
    assert total["x_base"] < 1.0


def test_distillation_counts_the_teachers_forward(find_run, tmp_path, finetuned):
    result = train_family(find_run, FamilyOptions("distill", out=tmp_path, format=None))
    base_flops = result["base"]["flops"]
    for m, f in zip(result["members"], finetuned["members"], strict=True):
        c = m["cost"]
        assert c["epochs"] == f["cost"]["epochs"]  # the same share of the compute as finetune
        assert c["teacher_macs"] == base_flops * 256 * c["epochs"]
        assert (
            c["total_macs"]
            == c["train_macs"] + c["teacher_macs"]
            == f["cost"]["total_macs"] + (base_flops * 256 * c["epochs"])
        )
        assert m["export"] is None and m["latency_ms"] is None
        metrics = json.loads((Path(m["run_dir"]) / "metrics.json").read_text())
        assert metrics["distillation"] == {"temperature": 4.0, "weight": 0.7}
        assert not torch.equal(_weights(m)["conv1.weight"], _weights(f)["conv1.weight"])
    assert result["recipe_settings"]["temperature"] == 4.0


def test_controls_train_beside_each_member_exported_and_costed_apart(finetuned, tmp_path):
    out = tmp_path / "fam"
    shutil.copytree(finetuned["out"], out)  # the members are done: reused, not retrained
    stamps = {p: p.stat().st_mtime_ns for p in (out / "members").rglob("model.safetensors")}
    # one control per member: a second allocation is the same code with another spec
    options = FamilyOptions("finetune", out=out, baselines=("global",), **QUICK)
    result = train_family(finetuned["find_run"], options)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    got = [(m["member"], m["test_accuracy"]) for m in result["members"]]
    assert got == [(m["member"], m["test_accuracy"]) for m in finetuned["members"]]
    controls = {c["member"]: c for c in result["controls"]}
    assert list(controls) == ["40pct-flops-global", "70pct-flops-global"]
    family = json.loads((Path(finetuned["find_run"]) / "family.json").read_text())
    for c in controls.values():
        member = next(m for m in family["members"] if m["slug"] == c["of"])
        rel = member["baseline_specs"][c["control"]]
        spec = ps.ArchSpec.load(Path(finetuned["find_run"]) / rel)
        assert (c["flops"], c["params"]) == (spec.flops, spec.params)
        assert c["budget"] == member["budget"] and c["recipe"] == "finetune"
        assert Path(c["run_dir"]) == out / "members" / c["member"]
        assert c["verified"] is True and Path(c["export"]).name == "model.pt2"
        assert c["cost"]["train_macs"] == 3 * c["flops"] * 256 * c["cost"]["epochs"]
    # the family's total is the members' alone; the controls' is apart
    assert result["total"] == finetuned["total"]
    assert result["controls_total"]["total_macs"] == sum(
        c["cost"]["total_macs"] for c in controls.values()
    )
    md = (out / "family.md").read_text()
    assert "| 40pct-flops-global | 40%FLOPs |" in md and "counted apart" in md
    assert json.loads((out / "family.json").read_text())["controls"] == result["controls"]


def _nested_find_run(
    tiny_base: Path, out: Path, ratios: dict[str, float], full_first: str | None = None
) -> Path:
    """A find run folder by hand: uniform widths at each ratio, so that they nest (but for
    member ``full_first``, whose first group keeps all its channels)."""
    graph = ps.trace(ps.create_model("resnet20", num_classes=4), torch.zeros(1, 3, 16, 16))
    search = {"signal": "slimming", "base_checkpoint_sha256": file_digest(tiny_base)}
    search |= {"space": "tiny", "space_path": TINY}
    members = []
    for slug, r in ratios.items():
        widths = {g.name: max(1, round(g.size * r)) for g in graph.groups}
        if slug == full_first:
            widths[graph.groups[0].name] = graph.groups[0].size
        spec = ps.ArchSpec.from_graph(
            graph,
            widths,
            model="resnet20",
            model_args={"num_classes": 4, "in_channels": 3},
            budget={"kind": "flops", "target": 1, "text": slug},
            search=search,
        )
        spec.save(out / f"spec-{slug}.json")
        members.append({"budget": slug, "slug": slug, "spec": f"spec-{slug}.json"})
    family = {"space": "tiny", "signal": "slimming", "base": str(tiny_base), "members": members}
    (out / "family.json").write_text(json.dumps(family | {"base_info": {"epochs": 2}}))
    return out


def test_chain_prunes_each_member_from_the_trained_larger_one(tiny_base, tmp_path):
    run_dir = _nested_find_run(tiny_base, tmp_path / "find", {"small": 0.5, "large": 0.8})
    result = train_family(run_dir, FamilyOptions("chain", format=None))
    assert Path(result["out"]) == run_dir / "family-chain-s0"
    small, large = result["members"]  # listed in the find run's order, trained largest first
    assert large["init"] == {"from": "base", "signal": "slimming"}
    assert small["init"] == {"from": "member", "member": "large", "signal": "slimming"}
    run = read_find_run(run_dir)
    big = next(m for m in run.members if m.slug == "large")
    little = next(m for m in run.members if m.slug == "small")
    start, _ = chain_start(big, trained_model(Path(large["run_dir"]), big), little, "slimming")
    # the small member starts from filters of the large member once trained, not the base's
    kept = _weights(large)["conv1.weight"]
    for w in start.state_dict()["conv1.weight"]:
        assert any(torch.equal(w, k) for k in kept)
    base = inherit_weights(little.spec, tiny_base, "slimming").state_dict()["conv1.weight"]
    assert not torch.equal(start.state_dict()["conv1.weight"], base)
    # a member wider than the one before it somewhere is pruned from the base instead
    wide = read_find_run(
        _nested_find_run(tiny_base, tmp_path / "wide", {"a": 0.5, "b": 0.8}, full_first="a")
    )
    a, b = wide.members
    assert chain_start(b, trained_model(Path(large["run_dir"]), big), a, "slimming") is None


def _family_cli(find_run: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        # --no-export: the exports of finished members are tested above
        [
            sys.executable,
            "-m",
            "prunesearch",
            "family",
            str(find_run),
            "--out",
            str(out),
            "--no-export",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def test_a_killed_family_resumes_with_the_same_members(find_run, finetuned, tmp_path):
    out = tmp_path / "fam"
    first, second = (out / "members" / s for s in ("40pct-flops", "70pct-flops"))
    proc = _family_cli(find_run, out)
    deadline = time.time() + 240
    # killed once the first member is trained and the second has begun
    while not (second / "config.json").is_file():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (first / "model.safetensors").is_file() and not (second / "model.safetensors").exists()
    assert not (out / "family.json").exists()
    kept = (first / "model.safetensors").read_bytes()
    again = _family_cli(find_run, out)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert "reusing the finished run" in err
    assert (first / "model.safetensors").read_bytes() == kept
    # the same members as the uninterrupted run's, to the bit
    for m in json.loads((out / "family.json").read_text())["members"]:
        ref = next(f for f in finetuned["members"] if f["member"] == m["member"])
        a, b = _weights(m), _weights(ref)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _one_error_line(res) -> str:
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


def test_bad_input_is_one_line_and_writes_nothing(find_run, tiny_base, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no family.json" in _one_error_line(run_cli("family", empty))
    assert "not found" in _one_error_line(run_cli("family", tmp_path / "nowhere"))
    line = _one_error_line(run_cli("family", find_run, "--recipe", "nope"))
    assert "unknown recipe 'nope'" in line
    line = _one_error_line(run_cli("family", find_run, "--baselines", "uniform,nope"))
    assert "--baselines nope: the find run has no nope spec at 40%FLOPs" in line
    no_spec = _nested_find_run(tiny_base, tmp_path / "no-spec", {"a": 0.5})
    (no_spec / "spec-a.json").unlink()
    assert "spec spec-a.json is missing" in _one_error_line(run_cli("family", no_spec))
    no_base = tmp_path / "no-base"
    shutil.copytree(_nested_find_run(tiny_base, tmp_path / "nb", {"a": 0.5}), no_base)
    family = json.loads((no_base / "family.json").read_text())
    (no_base / "family.json").write_text(json.dumps(family | {"base": str(tmp_path / "x.st")}))
    assert "base checkpoint" in _one_error_line(run_cli("family", no_base))
    for folder in (empty, no_spec, no_base):
        assert not list(folder.glob("family-*"))
    assert not list(find_run.glob("family-*"))


def test_family_with_a_budget_searches_first_then_trains_inside_the_run(tiny_base, tmp_path):
    out = tmp_path / "fam"
    args = ["family", "--budget", "50%FLOPs", "--base", tiny_base, "--space", TINY]
    res = run_cli(*args, "--trials", "2", "--objective", "inherit", "--out", out, "--no-export")
    assert res.returncode == 0, res.stderr
    found = json.loads((out / "family.json").read_text())  # the find run's
    assert [m["budget"] for m in found["members"]] == ["50%FLOPs"]
    (member,) = json.loads((out / "family-finetune-s0" / "family.json").read_text())["members"]
    spec = json.loads((out / found["members"][0]["spec"]).read_text())
    assert member["flops"] == spec["flops"] and member["recipe"] == "finetune"
    # run again: the finished search and member are reused, nothing is trained again
    kept = (Path(member["run_dir"]) / "model.safetensors").read_bytes()
    res = run_cli(*args, "--trials", "2", "--objective", "inherit", "--out", out, "--no-export")
    assert res.returncode == 0, res.stderr
    assert "reusing the finished run" in res.stderr
    assert (Path(member["run_dir"]) / "model.safetensors").read_bytes() == kept


def test_report_draws_a_trained_family_again(finetuned, tmp_path):
    res = run_cli("report", finetuned["out"], "--out", tmp_path / "rep")
    assert res.returncode == 0, res.stderr
    md = (tmp_path / "rep" / "report.md").read_text()
    assert md == (Path(finetuned["out"]) / "family.md").read_text()  # the same table
    assert (tmp_path / "rep" / "family.png").stat().st_size > 0
    edited = tmp_path / "edited"
    edited.mkdir()
    data = json.loads((Path(finetuned["out"]) / "family.json").read_text())
    del data["base"]
    (edited / "family.json").write_text(json.dumps(data))
    line = _one_error_line(run_cli("report", edited))
    assert "family.json is not as prunesearch writes it" in line
    assert not (edited / "report").exists()


def test_jobs_train_members_in_processes_as_one_process_does(find_run, finetuned, tmp_path):
    out = tmp_path / "jobs"
    res = run_cli("family", find_run, "--out", out, "--jobs", "2", "--no-export")
    assert res.returncode == 0, res.stderr
    assert "training 2 unit(s) in 2 processes" in res.stderr
    assert res.stderr.count("reusing the finished run") == 2  # the report trains nothing more
    for m in json.loads((out / "family.json").read_text())["members"]:
        ref = next(f for f in finetuned["members"] if f["member"] == m["member"])
        a, b = _weights(m), _weights(ref)  # the same training; threads may round differently
        assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)
        assert m["cost"] == ref["cost"] | {"train_seconds": m["cost"]["train_seconds"]}


def test_a_shared_compute_gives_the_smaller_member_more_epochs(find_run, tmp_path):
    raw = load_space(TINY).to_dict()
    raw["train"]["family_compute"] = 1.0  # the family's compute: one base training, shared
    (tmp_path / "shared.yaml").write_text(yaml.safe_dump(raw))
    options = FamilyOptions(out=tmp_path / "fam", space=str(tmp_path / "shared.yaml"), format=None)
    result = train_family(find_run, options)
    epochs = {m["member"]: m["cost"]["epochs"] for m in result["members"]}
    assert epochs == {"40pct-flops": 2, "70pct-flops": 1}  # the base's 2 epochs, shared by FLOPs
    assert result["recipe_settings"] == {
        "init": "base",
        "schedule": "cosine",
        "lr": 0.01,
        "compute": 1.0,
        "epochs": epochs,
    }
    assert 0.5 < result["total"]["x_base"] <= 1.0


def test_a_finished_family_is_not_reused_with_other_data_or_seed(find_run, finetuned):
    out = Path(finetuned["out"])
    before = (out / "family.json").read_bytes()
    line = _one_error_line(run_cli("family", find_run, "--out", out, "--limit-train", "64"))
    assert "was trained with no --limit-train, not --limit-train 64" in line
    line = _one_error_line(run_cli("family", find_run, "--out", out, "--seed", "3"))
    assert "was trained with --seed 0, not --seed 3" in line
    assert (out / "family.json").read_bytes() == before


def test_the_scratch_references_train_as_train_arch(tiny_base, tmp_path):
    run_dir = _nested_find_run(tiny_base, tmp_path / "find", {"half": 0.5})
    result = train_family(run_dir, FamilyOptions("scratch-e", format=None))
    (m,) = result["members"]
    metrics = json.loads((Path(m["run_dir"]) / "metrics.json").read_text())
    assert metrics["kind"] == "scratch-e" and metrics["epochs"] == 2  # the base's epochs
    assert m["init"] == {"from": "scratch"} and m["cost"]["train_macs"] == 3 * m["flops"] * 512
