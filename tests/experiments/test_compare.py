import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prunesearch.experiments.compare import DEFAULT_TRAININGS, ROWS, CompareOptions, compare
from prunesearch.experiments.report import render_report
from prunesearch.experiments.run_store import ArchCell, CellStore
from prunesearch.fileio import file_digest
from prunesearch.space import load_space
from prunesearch.spec import ArchSpec
from prunesearch.training.runs import DataOptions

from ..helpers import run_cli

# one worker runs the module: its module-scoped fixtures (trained runs) are built once,
# not once per pytest-xdist worker (pyproject.toml: --dist loadgroup)
pytestmark = pytest.mark.xdist_group("compare")

TINY = str(Path(__file__).parents[1] / "spaces" / "tiny.yaml")
# two batches of training images: every cell trains, none of the checks needs more
DATA = DataOptions(limit_train=64)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    result = compare(
        load_space(TINY),
        CompareOptions("50%FLOPs", seeds=2, trials=3),
        out=out,
        epochs=1,
        data=DATA,
    )
    return out, result


def test_every_row_with_every_seed(run):
    out, result = run
    assert [r["row"] for r in result["rows"]] == [r[0] for r in ROWS if r[2] in DEFAULT_TRAININGS]
    assert result["seeds"] == [0, 1]
    for r in result["rows"]:
        assert r["seeds"] == 2 and len(r["test_accuracy"]) == 2
        assert 0 <= r["mean"] <= 1 and r["std"] >= 0
    rows = {r["row"]: r for r in result["rows"]}
    base, searched = rows["base"], rows["searched / Scratch-B"]
    assert base["flops"] > searched["flops"]
    assert (
        searched["flops"]
        <= json.loads((out / "find" / "family.json").read_text())["members"][0]["target"]
    )
    # Scratch-B trains the pruned net for the base's compute: more epochs, same budget
    assert rows["searched / Scratch-E"]["epochs"] == 1
    assert searched["epochs"] == round(base["flops"] / searched["flops"])
    assert abs(searched["compute_vs_base"] - 1) < 0.35
    assert rows["searched / fine-tuned"]["epochs"] == 1  # the space's finetune_epochs
    # the uniform and L1 per-layer architectures are the same: trained once (the uniform row,
    # or the searched one when the search exported that baseline)
    l1 = rows["L1 per-layer / Scratch-B"]
    assert l1["same_as"] in ("uniform / Scratch-B", "searched / Scratch-B")
    assert l1["test_accuracy"] == rows[l1["same_as"]]["test_accuracy"]
    assert rows["searched / Scratch-E"]["same_as"] is None
    saved = json.loads((out / "compare.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(result["rows"]))
    assert "| searched / Scratch-B |" in (out / "compare.md").read_text()


def test_rerun_reuses_every_cell(run):
    out, first = run
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("model.safetensors")}
    again = compare(
        load_space(TINY),
        CompareOptions("50%FLOPs", seeds=2, trials=3),
        out=out,
        epochs=1,
        data=DATA,
    )
    assert {p: p.stat().st_mtime_ns for p in out.rglob("model.safetensors")} == stamps
    assert [r["test_accuracy"] for r in again["rows"]] == [
        r["test_accuracy"] for r in first["rows"]
    ]


def test_compare_report_figure(run):
    out, _ = run
    result = render_report(out)
    assert result["kind"] == "compare"
    png = Path(result["figures"][0])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "searched / Scratch-E" in Path(result["markdown"]).read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--budget", "25%,50%FLOPs"], "compare takes one budget"),
        (["--budget", "50%FLOPs", "--seeds", "0"], "--seeds must be >= 1"),
        (["--budget", "50%FLOPs", "--base", "/nonexistent"], "--base /nonexistent"),
        (["--budget", "50%FLOPs", "--extra", "no-equals-sign"], "expected NAME=SPEC.json"),
        (["--budget", "50%FLOPs", "--extra", "x=/nonexistent.json"], "spec file not found"),
        (["--budget", "50%FLOPs", "--rows", "scratch-z"], "--rows scratch-z: choose from"),
        (["--budget", "50%FLOPs", "--rows", "base,finetune"], "--rows must include scratch-b"),
    ],
)
def test_bad_compare_input(tmp_path, args, message):
    proc = run_cli("compare", "--space", TINY, *args, "--out", tmp_path / "c")
    assert proc.returncode == 2 and proc.stderr.startswith("error: ")
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()


def _extra_spec(out: Path, path: Path, **change) -> Path:
    """The searched spec with one group a channel narrower: another architecture near the
    same FLOPs (as another tool would find)."""
    spec = ArchSpec.load(out / "find" / "spec-50pct-flops.json")
    widths = dict(spec.widths)
    name = max(widths, key=widths.get)
    widths[name] -= 1
    graph = spec.graph()
    new = ArchSpec.from_graph(graph, widths, model=spec.model, model_args=spec.model_args)
    data = new.to_dict() | change
    path.write_text(json.dumps(data))
    return path


def test_extra_spec_is_one_more_row(run, tmp_path):
    out, first = run
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("model.safetensors")}
    extra = _extra_spec(out, tmp_path / "other.json")
    result = compare(
        load_space(TINY),
        CompareOptions("50%FLOPs", seeds=2, trials=3, extra=(("other tool", str(extra)),)),
        out=out,
        epochs=1,
        data=DATA,
    )
    rows = {r["row"]: r for r in result["rows"]}
    row = rows["other tool / Scratch-B"]
    assert row["seeds"] == 2 and row["flops"] == ArchSpec.load(extra).flops
    assert row["epochs"] == rows["searched / Scratch-B"]["epochs"]
    assert row["score"] is None and row["same_as"] is None
    assert [Path(c).name.rsplit("-", 1)[0] for c in row["cells"]] == [
        "scratch-b-s0",
        "scratch-b-s1",
    ]
    assert all(Path(c).parent == out / "cells" for c in row["cells"])
    # every other cell was reused, untouched
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    assert [r["row"] for r in result["rows"]][:-1] == [r["row"] for r in first["rows"]]
    assert "| other tool / Scratch-B |" in (out / "compare.md").read_text()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model_args": {"num_classes": 5, "in_channels": 3}}, "not the space's resnet20"),
        ({"input_shape": [3, 32, 32]}, "the spec is for inputs [3, 32, 32]"),
    ],
)
def test_extra_spec_of_another_model_is_refused(run, tmp_path, change, message):
    out, _ = run
    extra = _extra_spec(out, tmp_path / "other.json", **change)
    proc = run_cli(
        "compare",
        "--space",
        TINY,
        "--budget",
        "50%FLOPs",
        "--extra",
        f"x={extra}",
        "--out",
        tmp_path / "c",
    )
    assert proc.returncode == 2 and message in proc.stderr
    assert not (tmp_path / "c").exists()


def test_paired_differences_against_every_scratch_b_row(run):
    out, result = run
    paired = result["paired"]
    rows = {r["row"]: r for r in result["rows"]}
    ref = rows["searched / Scratch-B"]["test_accuracy"]
    for row, d in paired["minus"].items():
        other = rows[row]["test_accuracy"]
        assert d["value"] == pytest.approx(sum(a - b for a, b in zip(ref, other, strict=True)) / 2)
        assert d["low"] <= d["value"] <= d["high"] and d["n"] == 2
        assert rows[row]["training"] == "scratch-b"
    assert "global threshold / Scratch-B" in rows
    assert paired["best_other"] in paired["minus"]
    assert "Paired differences" in (out / "compare.md").read_text()


def test_fidelity_reuses_the_cells_compare_trained(run, tmp_path):
    """The baselines' Scratch-B cells are the same runs in both experiments: trained once."""
    from prunesearch.experiments.fidelity import FidelityOptions, fidelity

    out, result = run
    base = next((out / "cells").glob("base-s0-*")) / "model.safetensors"
    stamps = {p: p.stat().st_mtime_ns for p in (out / "cells").rglob("model.safetensors")}
    fid = fidelity(
        load_space(TINY),
        FidelityOptions(
            "50%FLOPs",
            archs=3,
            seeds=2,
            objectives=("inherit",),
            base=str(base),
            cells=str(out / "cells"),
        ),
        out=tmp_path / "fid",
        epochs=1,
        data=DATA,
    )
    assert {
        p: p.stat().st_mtime_ns for p in (out / "cells").rglob("model.safetensors")
    } == stamps  # nothing trained, nothing overwritten
    rows = {r["architecture"]: r for r in result["rows"] if r["training"] == "scratch-b"}
    for a in fid["archs"]:
        assert a["cells"] == rows[a["name"]]["cells"]
        assert a["test_accuracy"] == rows[a["name"]]["test_accuracy"]


def test_rows_select_what_is_trained(run):
    out, first = run
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("model.safetensors")}
    result = compare(
        load_space(TINY),
        CompareOptions("50%FLOPs", seeds=2, trials=3, trainings=("scratch-b",)),
        out=out,
        epochs=1,
        data=DATA,
    )
    assert {r["training"] for r in result["rows"]} == {"scratch-b"}
    assert {p: p.stat().st_mtime_ns for p in out.rglob("model.safetensors")} == stamps
    assert result["paired"]["minus"] == first["paired"]["minus"]


def test_the_cheap_recipes_are_rows_trained_from_the_base_in_their_own_cells(run, tmp_path):
    out, first = run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("model.safetensors")}
    rows = ("base", "scratch-b", "finetune-cosine", "distill")
    options = CompareOptions("50%FLOPs", seeds=2, trials=3, trainings=rows)
    result = compare(load_space(TINY), options, out=out, epochs=1, data=DATA)
    got = {r["row"]: r for r in result["rows"]}
    searched_rows = ["searched / fine-tuned (cosine)", "searched / distilled"]
    assert list(got)[:4] == ["base", "searched / Scratch-B", *searched_rows]
    assert {r["training"] for r in result["rows"][4:]} == {"scratch-b"}
    tuned, taught = got["searched / fine-tuned (cosine)"], got["searched / distilled"]
    base, searched = got["base"], got["searched / Scratch-B"]
    # the base, Scratch-B cells were reused; only the new rows' cells trained
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert (
        searched["test_accuracy"]
        == next(r for r in first["rows"] if r["row"] == "searched / Scratch-B")["test_accuracy"]
    )
    base_path = Path(result["base"])
    for row in (tuned, taught):
        assert row["seeds"] == 2 and row["epochs"] == 1  # 0.25 of the 1-epoch base, at least 1
        assert row["flops"] == searched["flops"] and row["same_as"] is None
        for cell in row["cells"]:
            identity = json.loads((Path(cell) / "cell.json").read_text())
            assert identity["kind"] == row["training"]
            assert identity["base_sha256"] == file_digest(base_path)
            metrics = json.loads((Path(cell) / "metrics.json").read_text())
            assert metrics["recipe"]["schedule"] == "cosine" and metrics["recipe"]["lr"] == 0.01
            assert metrics["init"] == {"from": "base", "signal": "slimming"}
    assert json.loads((Path(taught["cells"][0]) / "cell.json").read_text())["recipe"]["teacher"]
    assert "teacher_sha256" in json.loads((Path(taught["cells"][0]) / "cell.json").read_text())
    assert "distillation" in json.loads((Path(taught["cells"][0]) / "metrics.json").read_text())
    assert set(tuned["cells"]).isdisjoint(taught["cells"])
    # the teacher changed what was learnt (the tiny data's accuracies may tie)
    a, b = (load_file(Path(r["cells"][0]) / "model.safetensors") for r in (tuned, taught))
    assert not all(torch.equal(a[k], b[k]) for k in a)
    # the cost: its epochs at its FLOPs; distillation adds the teacher's forward per image
    ratio = searched["flops"] / base["flops"]
    assert tuned["compute_vs_base"] == round(ratio, 3) and tuned["teacher_macs"] == 0
    assert taught["compute_vs_base"] == round(ratio + 1 / 3, 3)
    assert taught["teacher_macs"] == base["flops"] * result["n_train"]
    md = (out / "compare.md").read_text()
    assert f"| searched / distilled | {100 * taught['mean']:.2f}" in md
    # another teacher (base) is another cell
    store, spec = CellStore(result["cells"]), ArchSpec.load(out / "find" / "spec-50pct-flops.json")
    other = tmp_path / "other-base.safetensors"
    other.write_bytes(b"not the same base")
    space = load_space(TINY)
    folders = {
        store.arch_folder(ArchCell(spec, "distill", 0, epochs=1, base=b), space, DATA)
        for b in (base_path, other)
    }
    assert len(folders) == 2 and Path(taught["cells"][0]) in folders
