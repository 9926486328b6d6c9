import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import prunesearch as ps
from prunesearch.cli.app import app

from ..helpers import run_cli

runner = CliRunner()


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory):
    graph = ps.trace(ps.create_model("vgg11"), torch.zeros(1, 3, 32, 32))
    widths = {g.name: g.size // 2 for g in graph.groups}
    path = tmp_path_factory.mktemp("spec") / "vgg11-half.json"
    ps.ArchSpec.from_graph(graph, widths, model="vgg11").save(path)
    return path


def test_show_table_and_json(spec_file):
    result = runner.invoke(app, ["show", str(spec_file), "--json"])
    assert result.exit_code == 0, result.output
    assert "features.0" in result.output and "50%" in result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    spec = ps.ArchSpec.load(spec_file)
    assert summary["flops"] == spec.flops and summary["params"] == spec.params
    assert summary["groups"][0] == {
        "group": "features.0",
        "base": 64,
        "width": 32,
        "keep_ratio": 0.5,
    }
    assert summary["base_params"] == ps.count_params(ps.create_model("vgg11"))


def test_models_lists_the_zoo():
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0
    assert "resnet56" in json.loads(result.output.strip().splitlines()[-1])["models"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["show", "does-not-exist.json"], "error: spec file not found"),
        (["show"], "error: Missing argument"),
        (["show", "x.json", "--bogus"], "error: No such option"),
        (["frobnicate"], "error: No such command"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, message):
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith(message)
    assert "Traceback" not in proc.stderr + proc.stdout


def test_invalid_spec_is_one_line_exit_2(spec_file, tmp_path):
    data = json.loads(spec_file.read_text())
    data["widths"]["features.0"] = 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    proc = run_cli("show", str(bad))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: spec {bad}: $.widths['features.0']: must be >= 1, got 0"


SPACES = __import__("pathlib").Path(__file__).parents[1] / "spaces"


def test_train_base_and_arch_from_the_cli(tmp_path):
    tiny = str(SPACES / "tiny.yaml")
    result = runner.invoke(
        app,
        [
            "train-base",
            "--space",
            tiny,
            "--out",
            str(tmp_path / "b"),
            "--epochs",
            "1",
            "--limit-train",
            "64",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["epochs"] == 1 and summary["kind"] == "base"
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["space"]["name"] == "tiny" and config["options"]["seed"] == 0
    assert config["data"]["limit_train"] == 64 and "torch" in config["versions"]

    graph = ps.trace(ps.create_model("resnet20", num_classes=4), torch.zeros(1, 3, 16, 16))
    spec = ps.ArchSpec.from_graph(
        graph,
        {g.name: 3 for g in graph.groups},
        model="resnet20",
        model_args={"num_classes": 4, "in_channels": 3},
        search={"space": tiny, "signal": "slimming"},
    )
    spec.save(tmp_path / "s.json")
    result = runner.invoke(
        app,
        [
            "train-arch",
            str(tmp_path / "s.json"),
            "--init",
            "inherit",
            "--base",
            str(tmp_path / "b" / "model.safetensors"),
            "--out",
            str(tmp_path / "ft"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["kind"] == "finetune" and summary["epochs"] == 1  # the space's finetune
    result = runner.invoke(
        app,
        [
            "train-arch",
            str(tmp_path / "s.json"),
            "--schedule",
            "scratch-b",
            "--max-epoch-factor",
            "2",
            "--out",
            str(tmp_path / "sb"),
            "--json",
            "--epochs",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["epochs"] == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["train-base", "--space", "nope"], "error: unknown space 'nope'"),
        (
            ["train-base", "--space", str(SPACES / "tiny.yaml"), "--epochs", "0"],
            "error: --epochs must be >= 1",
        ),
        (
            ["train-base", "--data-dir", "/nonexistent", "--out", "/tmp/x-ps-none"],
            "error: fashion-mnist not found in /nonexistent: expected files",
        ),
        (
            ["train-base", "--space", str(SPACES / "tiny.yaml"), "--device", "tpu"],
            "error: --device must be auto, cpu or cuda",
        ),
    ],
)
def test_training_bad_input(args, message, tmp_path):
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith(message) and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_train_arch_bad_schedule(spec_file, tmp_path):
    proc = run_cli(
        "train-arch",
        str(spec_file),
        "--schedule",
        "scratch-c",
        "--space",
        "vgg16-cifar10",
        "--out",
        str(tmp_path / "r"),
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: unknown schedule 'scratch-c'; choose scratch-e, scratch-b"
    assert not (tmp_path / "r").exists()


def test_torchrun_two_cpu_processes(tmp_path):
    import os

    out = tmp_path / "ddp"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "prunesearch",
            "train-base",
            "--space",
            str(SPACES / "tiny.yaml"),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--limit-train",
            "128",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    jsons = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(jsons) == 1  # only rank 0 reports
    assert json.loads(jsons[0])["world_size"] == 2
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.pt",
        "config.json",
        "metrics.json",
        "model.safetensors",
    ]


# -- hostile input: every case is one error line, exit code 2, nothing written ---------------

TINY = str(Path(__file__).parents[1] / "spaces" / "tiny.yaml")


def _spec_json(tmp_path, name, **changes):
    """A valid vgg11 spec file with some fields replaced (as raw JSON text where a value is
    a str starting with '@')."""
    graph = ps.trace(ps.create_model("vgg11"), torch.zeros(1, 3, 32, 32))
    data = ps.ArchSpec.from_graph(
        graph, {g.name: g.size // 2 for g in graph.groups}, model="vgg11"
    ).to_dict()
    raw = {k: v for k, v in changes.items() if isinstance(v, str) and v.startswith("@")}
    data.update({k: v for k, v in changes.items() if k not in raw})
    text = json.dumps(data)
    for k, v in raw.items():
        text = text.replace(f'"{k}": {json.dumps(data[k])}', f'"{k}": {v[1:]}')
    (tmp_path / name).write_text(text)
    return str(tmp_path / name)


def _space(tmp_path, old, new):
    path = tmp_path / "space.yaml"
    text = Path(TINY).read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return str(path)


def _refused(proc, starts):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(starts), proc.stderr[:500]
    assert len(lines[0]) < 400  # a huge value is never echoed whole
    assert "Traceback" not in proc.stderr + proc.stdout


def test_a_spec_nested_too_deeply_or_with_a_huge_number_is_refused(tmp_path):
    (tmp_path / "deep.json").write_text('{"a":' * 100_000 + "1" + "}" * 100_000)
    _refused(run_cli("show", tmp_path / "deep.json"), "error: spec ")
    digits = _spec_json(tmp_path, "digits.json", flops="@" + "9" * 5000)
    _refused(run_cli("show", digits), f"error: spec {digits} is not valid JSON")


def test_a_huge_string_is_not_echoed_and_a_huge_input_is_refused_before_tracing(tmp_path):
    big = _spec_json(tmp_path, "big.json", model="x" * 10_000_000)
    _refused(run_cli("show", big), f"error: spec {big}: $.model: unknown model 'xxx")
    for shape in ([3, 2000, 2000], [3, 100_000, 100_000]):  # used to take 35 s and 1.6 GB
        path = _spec_json(tmp_path, "shape.json", input_shape=shape)
        _refused(run_cli("show", path), f"error: spec {path}: $.input_shape: {shape} is ")


def test_an_input_the_model_cannot_take_is_one_line_without_fx_tracebacks(tmp_path, capfd):
    path = _spec_json(tmp_path, "gray.json", input_shape=[1, 32, 32])
    _refused(
        run_cli("show", path),
        f"error: spec {path}: $.input_shape: [1, 32, 32] does "
        "not fit 'vgg11': the example input does not run",
    )
    assert "Traceback" not in capfd.readouterr().err  # torch.fx prints to the real stderr


def test_a_space_with_aliases_is_refused_at_once(tmp_path):
    laughs = "\n".join([f"l{k}: &l{k} [{', '.join([f'*l{k - 1}'] * 9)}]" for k in range(1, 10)])
    path = tmp_path / "laughs.yaml"
    path.write_text(f"l0: &l0 [lol]\n{laughs}\nname: *l9\n")
    _refused(
        run_cli("find", "--space", path, "--budget", "50%FLOPs", cwd=tmp_path),
        f"error: space {path} is not valid YAML: aliases (*name) are not supported",
    )
    huge = tmp_path / "huge.yaml"
    huge.write_text("name: x\n" + "#" * (2 << 20))
    _refused(
        run_cli("find", "--space", huge, "--budget", "50%FLOPs", cwd=tmp_path),
        f"error: space {huge} is 2.0 MiB; the most read is 1 MiB",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.yaml", "laughs.yaml"]


@pytest.mark.parametrize(
    "old, new, starts",
    [
        (
            "synthetic: {image_size: 16,",
            "synthetic: {bogus: 1, image_size: 16,",
            ".data.synthetic.'bogus': unknown key",
        ),
        (
            "synthetic: {image_size: 16,",
            "synthetic: {image_size: 100000,",
            ".data.synthetic.image_size: must be an integer in [1, 1024]",
        ),
        (
            "train: {epochs: 2,",
            "train: {epochs: 2, momentum: -0.5,",
            ".train.momentum: must be in [0, 1), got -0.5",
        ),
        (
            "train: {epochs: 2,",
            "train: {epochs: 2, weight_decay: .inf,",
            ".train.weight_decay: must be a finite number, got inf",
        ),
    ],
)
def test_a_bad_space_value_is_refused_before_anything_is_written(tmp_path, old, new, starts):
    path = _space(tmp_path, old, new)
    _refused(
        run_cli("train-base", "--space", path, "--out", tmp_path / "run", cwd=tmp_path),
        f"error: space {Path(path).name}{starts}",
    )
    assert not (tmp_path / "run").exists()


def test_bad_paths_and_numbers_on_the_command_line(tiny_base, tmp_path):
    (tmp_path / "afile").write_text("x")
    find = ["find", "--space", TINY, "--base", tiny_base, "--budget", "50%FLOPs"]
    for argv, starts in [
        (
            ["train-base", "--space", TINY, "--out", "afile"],
            "error: --out afile: exists and is not a folder",
        ),
        ([*find, "--out", "afile"], "error: --out afile: exists and is not a folder"),
        ([*find, "--storage", "journal:"], "error: --storage 'journal:': name the journal"),
        ([*find, "--storage", "journal:/proc/no/study.log"], "error: cannot open storage"),
        (
            [*find, "--storage", "postgresql://u:p@[::1/db"],
            "error: --storage postgresql://***: not a valid database URL",
        ),
        (
            [*find, "--storage", "postgresql://u:p@host:abc/db"],
            "error: --storage postgresql://***: not a valid database URL",
        ),
        (
            ["train-base", "--space", TINY, "--out", "/proc/no"],
            "error: cannot write or read /proc/no",
        ),
        (
            ["find", "--space", TINY, "--budget", "1e309FLOPs"],
            "error: budget '1e309FLOPs': too large",
        ),
    ]:
        _refused(run_cli(*argv, cwd=tmp_path), starts)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_damaged_run_files_are_errors_that_name_them(tiny_base, tmp_path):
    from prunesearch.training.loop import load_weights, save_weights

    state, meta = load_weights(tiny_base)
    model = ps.create_model("resnet20", **meta["model_args"])
    model.load_state_dict(state)
    arch = tmp_path / "arch"  # what train-arch writes: a pruned model
    save_weights(
        model, arch / "model.safetensors", meta | {"kind": "scratch-b", "spec": {"widths": {}}}
    )
    _refused(
        run_cli(
            "find",
            "--space",
            TINY,
            "--base",
            arch,
            "--budget",
            "50%FLOPs",
            "--out",
            tmp_path / "find",
        ),
        f"error: --base {arch / 'model.safetensors'} holds a pruned architecture",
    )
    assert not (tmp_path / "find").exists()
    from safetensors.torch import save_file

    from prunesearch.training.loop import WEIGHTS_FORMAT

    bad = tmp_path / "bad.safetensors"  # prunesearch's metadata values are JSON: this is not
    save_file(state, str(bad), metadata={"format": WEIGHTS_FORMAT, "model_args": "{not json"})
    _refused(
        run_cli(
            "find",
            "--space",
            TINY,
            "--base",
            bad,
            "--budget",
            "50%FLOPs",
            "--out",
            tmp_path / "find",
        ),
        f"error: {bad}: its prunesearch metadata is not valid JSON",
    )
    done = tmp_path / "done"
    done.mkdir()
    (done / "model.safetensors").write_bytes(tiny_base.read_bytes())
    (done / "metrics.json").write_text("{bad")
    _refused(
        run_cli("train-base", "--space", TINY, "--out", done, "--resume"),
        f"error: metrics {done / 'metrics.json'} is not valid JSON",
    )
    (done / "metrics.json").write_text("{}")
    _refused(
        run_cli("report", done), f"error: {done / 'metrics.json'} is not as prunesearch writes it"
    )
    (done / "metrics.json").unlink()
    (done / "family.json").write_text("[]")
    _refused(
        run_cli("report", done), f"error: {done / 'family.json'} is not as prunesearch writes it"
    )
    assert not (done / "report").exists() and not (tmp_path / "find").exists()
