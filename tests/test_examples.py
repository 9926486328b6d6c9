import contextlib
import importlib
import json
import subprocess
import sys
from pathlib import Path

import prunesearch as ps

from .helpers import run_cli, run_script

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_writes_a_half_flops_spec(tmp_path):
    proc = run_script(ROOT / "examples" / "quickstart.py", "--model", "resnet20", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    spec = ps.ArchSpec.load(tmp_path / "resnet20-uniform-50.json")
    assert 0.45 * spec.base_flops <= spec.flops <= 0.5 * spec.base_flops
    assert json.loads((tmp_path / "resnet20-uniform-50.json").read_text())["model"] == "resnet20"


CUSTOM = ROOT / "examples" / "custom_model"
# the example's space on synthetic images (tests/spaces/custom.yaml says why); the example's
# own file must stay the same space but for its data
CUSTOM_SPACE = ROOT / "tests" / "spaces" / "custom.yaml"


def test_the_custom_space_of_the_tests_is_the_examples_but_for_its_data():
    from prunesearch.space import load_space

    example, tests = load_space(str(CUSTOM / "space.yaml")), load_space(str(CUSTOM_SPACE))
    assert example.data.dataset == "fashion-mnist" and tests.data.dataset == "synthetic"
    assert (example.name, example.model, example.train, example.search) == (
        tests.name,
        tests.model,
        tests.train,
        tests.search,
    )


@contextlib.contextmanager
def custom_importable():
    """The example's package importable, as PYTHONPATH=examples/custom_model makes it; on the
    way out, neither on sys.path nor in sys.modules (as in a process without that path)."""
    sys.path.insert(0, str(CUSTOM))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(str(CUSTOM))
        for name in [n for n in sys.modules if n.split(".")[0] == "custom_cnn"]:
            del sys.modules[name]


def test_library_example_runs():
    proc = run_script(CUSTOM / "library.py")
    assert proc.returncode == 0, proc.stderr
    assert "stem.0" in proc.stdout


def test_custom_model_find_and_train(tmp_path):
    space = str(CUSTOM_SPACE)
    with custom_importable():
        find = run_cli(
            "find",
            "--space",
            space,
            "--budget",
            "50%FLOPs",
            "--trials",
            "3",
            "--epochs",
            "1",
            "--limit-train",
            "1024",
            "--out",
            "run",
            "--json",
            cwd=tmp_path,
        )
        assert find.returncode == 0, find.stderr
        spec_path = tmp_path / "run" / "spec-50pct-flops.json"
        assert json.loads(spec_path.read_text())["model"] == "custom_cnn.nets:branchy_se"
        # the spec names code: refused without --allow-import, with a message that says how
        refused = run_cli(
            "train-arch",
            spec_path,
            "--epochs",
            "1",
            "--limit-train",
            "512",
            "--out",
            "arch-refused",
            cwd=tmp_path,
        )
        assert refused.returncode == 2
        assert refused.stderr.startswith("error: ") and "--allow-import" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "arch-refused").exists()
        trained = run_cli(
            "train-arch",
            spec_path,
            "--epochs",
            "1",
            "--limit-train",
            "512",
            "--allow-import",
            "custom_cnn",
            "--out",
            "arch",
            "--json",
            cwd=tmp_path,
        )
        assert trained.returncode == 0, trained.stderr
        summary = json.loads(trained.stdout.strip().splitlines()[-1])
        assert summary["model"] == "custom_cnn.nets:branchy_se" and summary["epochs"] == 1
        spec = ps.ArchSpec.load(spec_path, allow_import=True)
        model = ps.build(spec)
        import torch

        assert ps.count_flops(model, torch.zeros(1, 1, 28, 28)) == spec.flops
        # deployed: exported and verified on the space's validation images; the run's
        # weights name code too, so the same opt-in applies
        refused = run_cli("export", "arch", "--format", "pt2", cwd=tmp_path)
        assert refused.returncode == 2 and "--allow-import" in refused.stderr
        assert not (tmp_path / "arch" / "export-pt2").exists()
        exported = run_cli(
            "export",
            "arch",
            "--format",
            "pt2",
            "--allow-import",
            "custom_cnn",
            "--verify-images",
            "128",
            "--repeats",
            "2",
            "--latency-batch",
            "4",
            "--threads",
            "1",
            "--json",
            cwd=tmp_path,
        )
        assert exported.returncode == 0, exported.stderr
        card = json.loads(exported.stdout.strip().splitlines()[-1])
        assert card["model"] == "custom_cnn.nets:branchy_se" and card["verification"]["passed"]
        assert card["verification"]["images_from"] == "128 images of the synthetic validation split"
        assert (tmp_path / "arch" / "export-pt2" / "model.pt2").is_file()
        assert (tmp_path / "arch" / "export-pt2" / "MODEL.md").is_file()


def test_custom_model_report_and_compare(tmp_path):
    """A space naming its model by import path: report reads the specs' widths without
    importing anything; compare builds the space's own model (the space is the user's file)."""
    space = str(CUSTOM_SPACE)
    with custom_importable():
        proc = run_cli(
            "compare",
            "--space",
            space,
            "--budget",
            "50%FLOPs",
            "--seeds",
            "1",
            "--trials",
            "2",
            "--epochs",
            "1",
            "--limit-train",
            "512",
            "--rows",
            "base,scratch-b",  # the rows' training is tested in experiments/test_compare.py
            "--max-epoch-factor",
            "1",  # Scratch-B as long as the base: the rows' epochs are not what is tested here
            "--out",
            "cmp",
            "--json",
            cwd=tmp_path,
        )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {r["architecture"] for r in result["rows"]} >= {"base", "searched", "uniform"}
    for run_dir in ("cmp", "cmp/find"):  # the model's package neither on sys.path nor loaded
        report = run_cli("report", run_dir, cwd=tmp_path)
        assert report.returncode == 0, report.stderr
        assert "custom_cnn" not in sys.modules


def cli_in_this_process(cmd, check=False, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run`` for ``[python, -m, prunesearch, ARGS]``: the CLI run in this process
    (:func:`run_cli`, as the CLI tests run it; the real entry point in a fresh interpreter is
    tested in test_wheel.py), its output passed on; it saves an interpreter's start-up, torch's
    import, per command."""
    assert list(cmd[:3]) == [sys.executable, "-m", "prunesearch"] and not kwargs, cmd
    proc = run_cli(*cmd[3:])
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    if check and proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
    return proc


def test_own_data_walkthrough(tmp_path, monkeypatch):
    """examples/own_data: an image folder written with Pillow, a model trained by a plain loop
    and saved as a state dict, then find --base, train-arch, export and ps.search with a score
    of the user's; no conversion by hand anywhere."""
    monkeypatch.setenv("PRUNESEARCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(subprocess, "run", cli_in_this_process)
    proc = run_script(
        ROOT / "examples" / "own_data" / "walkthrough.py", "--out", tmp_path, "--tiny"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    spec = ps.ArchSpec.load(tmp_path / "find" / "spec-50pct-flops.json")
    assert spec.model_args["num_classes"] == 3  # from the folder's classes
    assert spec.flops <= 0.5 * spec.base_flops
    card = json.loads((tmp_path / "arch" / "export-pt2" / "model.json").read_text())
    assert card["preprocessing"]["classes"] == ["bars", "discs", "squares"]
    assert card["verification"]["passed"]
    assert "ps.search: score" in proc.stdout
