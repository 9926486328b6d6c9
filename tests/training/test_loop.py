import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import prunesearch as ps
from prunesearch.errors import PrunesearchError
from prunesearch.space import load_space
from prunesearch.training import loop as train
from prunesearch.training.loop import Progress, Recipe, RunOptions, fit, load_weights, lr_factor
from prunesearch.training.runs import DataOptions, load_splits, recipe_from_space, scratch_b_epochs

from ..helpers import interruptible, run_cli

SPACES = Path(__file__).parents[1] / "spaces"


def test_lr_schedules():
    step = Recipe(epochs=10)
    assert [lr_factor(step, p) for p in (0, 0.49, 0.5, 0.74, 0.75, 0.99)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01]
    )
    cos = Recipe(epochs=10, schedule="cosine")
    assert lr_factor(cos, 0) == 1 and lr_factor(cos, 0.5) == pytest.approx(0.5)
    assert lr_factor(cos, 1) == pytest.approx(0)
    assert lr_factor(Recipe(epochs=1, schedule="constant"), 0.9) == 1


def test_scratch_b_epochs():
    assert scratch_b_epochs(160, 200, 100) == 320
    assert scratch_b_epochs(3, 100, 40) == 8  # 7.5 rounds to 8
    assert scratch_b_epochs(3, 100, 10, max_factor=2) == 6
    assert scratch_b_epochs(3, 100, 99) == 3
    with pytest.raises(PrunesearchError):
        scratch_b_epochs(3, 100, 10, max_factor=0.5)


@pytest.fixture(scope="module")
def tiny():
    return load_space(SPACES / "tiny.yaml")


def train_tiny(tiny, run_dir, **recipe_changes):
    splits = load_splits(tiny, DataOptions())
    recipe = Recipe(**{**recipe_from_space(tiny).__dict__, **recipe_changes})
    torch.manual_seed(0)
    model = ps.create_model("resnet20", num_classes=4)
    metrics = fit(model, splits, recipe, RunOptions(), run_dir, metadata={"spec": {"x": 1}})
    return model, metrics


def test_fit_writes_run_files(tiny, tmp_path):
    model, _ = train_tiny(tiny, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint.pt",
        "metrics.json",
        "model.safetensors",
    ]
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["epochs"] == 2 and len(saved["history"]) == 2
    assert 0 <= saved["test_accuracy"] <= 1 and saved["images_per_s"] > 0
    assert {"train_loss", "train_accuracy", "val_accuracy", "lr", "seconds"} <= set(
        saved["history"][0]
    )
    state, meta = load_weights(tmp_path / "model.safetensors")
    assert meta["spec"] == {"x": 1}
    assert torch.equal(state["conv1.weight"], model.conv1.weight.detach().contiguous())
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and set(ckpt["rng"]) >= {"torch", "python", "numpy"}


def test_sparsity_shrinks_bn_scales(tiny, tmp_path):
    dense, _ = train_tiny(tiny, tmp_path / "a", sparsity=0.0)
    sparse, _ = train_tiny(tiny, tmp_path / "b", sparsity=0.5)

    def gamma(m):
        return (
            torch.cat([b.weight.abs() for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)])
            .mean()
            .item()
        )

    assert gamma(sparse) < 0.8 * gamma(dense)


def test_nan_loss_stops_with_a_clear_message(tiny, tmp_path):
    with pytest.raises(PrunesearchError, match=r"training diverged: loss is (nan|inf)"):
        train_tiny(tiny, tmp_path, lr=1e12)
    assert not (tmp_path / "model.safetensors").exists()


def test_foreign_checkpoint_and_weights_are_refused(tiny, tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    splits = load_splits(tiny, DataOptions())
    with pytest.raises(PrunesearchError, match="corrupt or not a prunesearch checkpoint"):
        fit(
            ps.create_model("resnet20", num_classes=4),
            splits,
            recipe_from_space(tiny),
            RunOptions(resume=True),
            tmp_path,
        )
    (tmp_path / "w.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(PrunesearchError, match="not a readable safetensors"):
        load_weights(tmp_path / "w.safetensors")


def test_auto_memory_format_is_measured_recorded_and_leaves_the_run_as_forced(
    tiny, tmp_path, monkeypatch
):
    monkeypatch.setattr(train, "PROBE_MIN_STEPS", 0)  # the tiny run is too short to probe
    model, metrics = train_tiny(tiny, tmp_path / "auto", channels_last="auto")
    choice = metrics["memory_format"]
    ms = choice["ms_per_step"]
    assert choice["how"] == "probe" and set(ms) == {"nchw", "channels-last"}
    assert choice["memory_format"] == min(ms, key=ms.get) and min(ms.values()) > 0
    assert json.loads((tmp_path / "auto" / "metrics.json").read_text())["memory_format"] == choice
    # the probe ran on copies and left the RNG streams alone: the same run, format forced
    forced, forced_metrics = train_tiny(
        tiny, tmp_path / "forced", channels_last=choice["memory_format"] == "channels-last"
    )
    assert forced_metrics["memory_format"]["how"] == "train.channels_last"
    for a, b in zip(model.state_dict().values(), forced.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_short_run_keeps_channels_last_and_a_resumed_run_its_first_choice(
    tiny, tmp_path, monkeypatch
):
    _, metrics = train_tiny(tiny, tmp_path / "short")
    assert metrics["memory_format"]["memory_format"] == "channels-last"
    assert metrics["memory_format"]["how"].startswith("default: 16 steps are too few")

    class StopInEpoch2(ps.progress.Reporter):
        def batch(self, epoch, *args):
            if epoch == 1:
                raise KeyboardInterrupt

    monkeypatch.setattr(train, "PROBE_MIN_STEPS", 0)
    monkeypatch.setattr(train, "_probe_formats", lambda *a: {"nchw": 1.0, "channels-last": 2.0})
    splits, recipe = load_splits(tiny, DataOptions()), recipe_from_space(tiny)
    with pytest.raises(KeyboardInterrupt):
        fit(
            ps.create_model("resnet20", num_classes=4),
            splits,
            recipe,
            RunOptions(),
            tmp_path / "run",
            progress=Progress(StopInEpoch2()),
        )

    def probed_again(*args):
        raise AssertionError("a resumed run must not probe again")

    monkeypatch.setattr(train, "_probe_formats", probed_again)
    model = ps.create_model("resnet20", num_classes=4)
    metrics = fit(model, splits, recipe, RunOptions(resume=True), tmp_path / "run")
    assert metrics["memory_format"] == {
        "memory_format": "nchw",
        "how": "probe",
        "ms_per_step": {"nchw": 1.0, "channels-last": 2.0},
        "probe_steps": 9,
    }
    assert model.conv1.weight.is_contiguous()  # trained in NCHW to the end


def cli(*args, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "prunesearch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


def checkpoint_epoch(run_dir: Path) -> int:
    try:
        return torch.load(run_dir / "checkpoint.pt", weights_only=True)["epoch"]
    except Exception:
        return 0


def kill_mid_epoch(proc: subprocess.Popen, run_dir: Path, problems: list[str]) -> None:
    """Kill -9 ``proc``, a run writing ``run_dir``, inside its second epoch (of three): one
    epoch's checkpoint, not the last; what went wrong goes to ``problems`` (this runs in a
    thread beside the reference run).

    It is killed as soon as the first checkpoint appears, with one short pause: a fixed wait
    raced past the end of the run on a fast machine (an epoch there took under 0.5 s)."""
    deadline = time.time() + 240
    while checkpoint_epoch(run_dir) < 1:
        if proc.poll() is not None or time.time() > deadline:
            problems.append(f"no checkpoint before the end: {proc.communicate()[1]}")
            proc.kill()
            return
        time.sleep(0.02)
    time.sleep(0.05)  # into the second epoch's batches
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    if not 1 <= checkpoint_epoch(run_dir) < 3 or (run_dir / "model.safetensors").exists():
        problems.append("the run was not killed mid-run")


@pytest.mark.parametrize("command", ["train-base", "train-arch"])
def test_kill_and_resume_gives_identical_weights(tmp_path, command):
    space = str(SPACES / "resume.yaml")
    args = ["train-base", "--space", space]
    if command == "train-arch":
        graph = ps.trace(ps.create_model("resnet20", num_classes=4), torch.zeros(1, 3, 16, 16))
        spec = ps.ArchSpec.from_graph(
            graph,
            {g.name: math.ceil(g.size * 0.6) for g in graph.groups},
            model="resnet20",
            model_args={"num_classes": 4, "in_channels": 3},
        )
        spec.save(tmp_path / "spec.json")
        args = ["train-arch", str(tmp_path / "spec.json"), "--space", space]
    # the run to kill is a process of its own; meanwhile the uninterrupted reference runs in
    # this process, as does the resumed run (an interpreter's start-up less for each)
    proc, problems = cli(*args, "--out", str(tmp_path / "run")), []
    killer = threading.Thread(target=kill_mid_epoch, args=(proc, tmp_path / "run", problems))
    killer.start()
    ref = run_cli(*args, "--out", tmp_path / "ref")
    killer.join()
    assert not problems, problems
    assert ref.returncode == 0, ref.stderr
    resumed = run_cli(*args, "--out", tmp_path / "run", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    a = load_file(tmp_path / "ref" / "model.safetensors")
    b = load_file(tmp_path / "run" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ma = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    mb = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert ma["test_accuracy"] == mb["test_accuracy"]
    assert [h["train_loss"] for h in ma["history"]] == [h["train_loss"] for h in mb["history"]]


def test_identical_weights_are_identical_bytes(tmp_path):
    from prunesearch.training.loop import load_weights, save_weights

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3))
    meta = {f"key{i}": {"b": i, "a": [i, "x"]} for i in range(8)}
    digests = set()
    for k in range(4):  # insertion order, like a resumed run's, must not matter either
        order = dict(reversed(meta.items())) if k % 2 else meta
        path = save_weights(model, tmp_path / f"m{k}.safetensors", order)
        digests.add(path.read_bytes())
    assert len(digests) == 1
    state, read = load_weights(tmp_path / "m0.safetensors")
    assert read == meta
    assert all(torch.equal(state[n], t) for n, t in model.state_dict().items())


def test_ctrl_c_says_where_the_run_stopped_and_how_to_resume(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prunesearch",
            "train-base",
            "--space",
            str(SPACES / "resume.yaml"),
            "--out",
            str(run_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        preexec_fn=interruptible,
    )
    deadline = time.time() + 240
    while checkpoint_epoch(run_dir) < 1:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"error: interrupted; {run_dir} holds the last finished epoch: run the same command "
        "with --resume to go on from it"
    )
    assert not (run_dir / "model.safetensors").exists()


@pytest.mark.parametrize(
    "args, error",
    [
        ({"in_chans": 3, "n": 4}, None),  # right, though it has no in_channels argument
        ({"in_chans": 1, "n": 4}, "does not take synthetic images (3x16x16): Given groups=1"),
        ({"in_chans": 3, "n": 2}, "gives 2 logits but synthetic has 4 classes"),
    ],
)
def test_the_model_is_checked_against_the_data_by_running_it(tiny, args, error):
    space = tiny.replace("model", name="tests.toy_models:in_chans_net", args=args)
    if error is None:
        assert len(load_splits(space, DataOptions()).train) > 0
    else:
        with pytest.raises(ps.PrunesearchError, match=re.escape(error)):
            load_splits(space, DataOptions())


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs (a disk that fills up), where the test may mount one (root)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_one_error_line_and_leaves_whole_files(small_tmpfs):
    run = small_tmpfs / "run"  # the checkpoint (about 2 MB) does not fit in 1 MiB
    proc = run_cli("train-base", "--space", SPACES / "tiny.yaml", "--epochs", "1", "--out", run)
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()[-1:]
    assert "Traceback" not in proc.stderr
    assert line.startswith("error: cannot write or read ") and "No space left on device" in line
    assert "rerun with --resume" in line
    leftovers = [p.name for p in run.iterdir()]
    assert not [n for n in leftovers if n.endswith(".tmp")]  # no half-written file
    assert json.loads((run / "config.json").read_text())  # what was written is whole
