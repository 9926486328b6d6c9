"""A base trained elsewhere: the files ``--base`` reads, and the ones it refuses in one line."""

import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import prunesearch as ps
from prunesearch.errors import PrunesearchError
from prunesearch.space import load_space
from prunesearch.training.base_weights import base_epochs, load_base, load_space_base
from prunesearch.training.loop import load_weights

from ..helpers import run_cli

TINY = str(Path(__file__).parents[1] / "spaces" / "tiny.yaml")


def _state(tiny_base) -> dict[str, torch.Tensor]:
    return load_weights(tiny_base)[0]


def _foreign_files(tiny_base, folder: Path) -> dict[str, Path]:
    """The tiny base's weights as a user trained elsewhere saves them."""
    state = _state(tiny_base)
    files = {name: folder / name for name in ("sd.pt", "sd.pth", "ckpt.pt", "ddp.pt", "plain.st")}
    torch.save(state, files["sd.pt"])
    torch.save(state, files["sd.pth"], _use_new_zipfile_serialization=False)  # older format
    torch.save({"state_dict": state, "epoch": 3}, files["ckpt.pt"])
    torch.save({f"module.{k}": v for k, v in state.items()}, files["ddp.pt"])
    save_file({k: v.contiguous() for k, v in state.items()}, files["plain.st"])
    return files


def test_every_accepted_format_reads_the_same_weights(tiny_base, tmp_path):
    space = load_space(TINY)
    ours = load_space_base(tiny_base, space)
    assert ours.source == "prunesearch" and not ours.foreign and ours.meta["recipe"]["epochs"] == 2
    sources = {}
    for name, path in _foreign_files(tiny_base, tmp_path).items():
        base = load_space_base(path, space)
        assert base.foreign and base.meta == {}
        assert list(base.state) == list(ours.state)
        assert all(torch.equal(base.state[k], ours.state[k]) for k in ours.state)
        sources[name] = base.source
    assert sources == {
        "sd.pt": "torch.save",
        "sd.pth": "torch.save",
        "ckpt.pt": "torch.save['state_dict']",
        "ddp.pt": "torch.save + strip 'module.'",
        "plain.st": "safetensors",  # by content: the name says nothing
    }


def test_foreign_formats_prune_to_the_prunesearch_bases_model(tiny_base, tmp_path):
    """train-arch --init inherit from each file gives the same pruned model."""
    from prunesearch.training.runs import inherit_weights

    space = load_space(TINY)
    graph = ps.trace(space.create_model(), torch.zeros(1, 3, 16, 16))
    widths = {g.name: max(1, g.size // 2) for g in graph.groups}
    spec = ps.ArchSpec.from_graph(
        graph, widths, model=space.model.name, model_args=space.model.args
    )
    want = inherit_weights(spec, tiny_base, "l1").state_dict()
    for path in _foreign_files(tiny_base, tmp_path).values():
        got = inherit_weights(spec, path, "l1").state_dict()
        assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in want)


def test_a_missing_bn_counter_is_tolerated_and_nothing_else(tiny_base, tmp_path):
    space = load_space(TINY)
    state = _state(tiny_base)
    no_counter = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(no_counter, tmp_path / "old.pt")
    assert len(load_space_base(tmp_path / "old.pt", space).state) == len(state)
    del no_counter["bn1.running_mean"]
    torch.save(no_counter, tmp_path / "bad.pt")
    with pytest.raises(PrunesearchError, match=r"missing bn1\.running_mean$"):
        load_space_base(tmp_path / "bad.pt", space)


def test_mismatches_are_named_first_few_and_counted(tiny_base, tmp_path):
    model = ps.create_model("resnet20", num_classes=4, in_channels=1)  # conv1 takes 1 channel
    state = _state(tiny_base) | {f"extra{i}": torch.zeros(1) for i in range(5)}
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(PrunesearchError) as err:
        load_base(tmp_path / "w.pt", model)
    assert str(err.value) == (
        f"--base {tmp_path / 'w.pt'} does not fit the space's model (ResNet): "
        "unexpected extra0, extra1, extra2 (and 2 more); "
        "shape conv1.weight [16, 3, 3, 3] (the model's: [16, 1, 3, 3])"
    )


def test_base_epochs_come_from_the_flag_the_base_or_the_space(tiny_base, tmp_path, caplog):
    space = load_space(TINY)
    ours = load_space_base(tiny_base, space)
    torch.save(_state(tiny_base), tmp_path / "w.pt")
    foreign = load_space_base(tmp_path / "w.pt", space)
    with caplog.at_level(logging.INFO, logger="prunesearch"):
        assert base_epochs(ours, None, space) == (2, "the base's recipe")
        assert base_epochs(foreign, 30, space) == (30, "--base-epochs")
        epochs, how = base_epochs(foreign, None, space)
    assert epochs == space.train.epochs and how.startswith(
        "the space's train.epochs; --base-epochs"
    )
    assert "base epochs for Scratch-B's budget: 30 (from --base-epochs)" in caplog.text
    with pytest.raises(PrunesearchError, match="--base-epochs must be >= 1, got 0"):
        base_epochs(foreign, 0, space)


def _refused(proc, starts):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(starts), proc.stderr[:500]
    assert "Traceback" not in proc.stderr + proc.stdout


def test_unusable_base_files_are_one_error_line(tiny_base, tmp_path):
    state = _state(tiny_base)
    model = ps.create_model("resnet20", num_classes=4, in_channels=3)
    model.load_state_dict(state)
    torch.save(model, tmp_path / "whole.pt")  # a pickled whole model
    ten = ps.create_model("resnet20", num_classes=10, in_channels=3).state_dict()
    torch.save(ten, tmp_path / "ten.pt")
    torch.save({k: v for k, v in state.items() if k != "conv1.weight"}, tmp_path / "missing.pt")
    torch.save(state, tmp_path / "full.pt")
    blob = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(blob[: len(blob) // 2])
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "full.safetensors")
    blob = (tmp_path / "full.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(blob[: len(blob) // 2])
    (tmp_path / "notes.pt").write_text("these are my notes, not weights\n")
    torch.save({"epoch": 3, "optimizer": {"lr": torch.tensor(0.1)}}, tmp_path / "nostate.pt")
    cases = {
        "whole.pt": "pickled Python objects (a whole model?), which are not loaded for safety: "
        "save it with torch.save(model.state_dict(), PATH)",
        "ten.pt": "its classifier (fc.weight) has 10 outputs but the dataset has 4 classes",
        "missing.pt": "does not fit the space's model (ResNet): missing conv1.weight",
        "cut.pt": "a damaged or truncated torch.save file",
        "cut.safetensors": "a damaged or truncated safetensors file",
        "notes.pt": "not a weights file (32 bytes). --base takes a prunesearch base",
        "nostate.pt": "a dict (epoch, optimizer) with no state dict under state_dict",
    }
    for name, says in cases.items():
        path = tmp_path / name
        proc = run_cli(
            "find", "--space", TINY, "--base", path, "--budget", "50%FLOPs", "--out", tmp_path / "r"
        )
        _refused(proc, "error: --base " + str(path))
        assert says in proc.stderr, proc.stderr
    assert not (tmp_path / "r").exists()  # nothing half-written


def test_find_on_a_foreign_base_says_its_accuracy_and_records_it(tiny_base, tmp_path):
    torch.save(_state(tiny_base), tmp_path / "mynet.pt")
    proc = run_cli(
        "find", "--space", TINY, "--base", tmp_path / "mynet.pt", "--budget", "50%FLOPs",
        "--trials", "2", "--base-epochs", "7", "--out", tmp_path / "run", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "base mynet.pt: validation accuracy 0." in proc.stderr
    assert "on 64 images" in proc.stderr
    assert "base epochs for Scratch-B's budget: 7 (from --base-epochs)" in proc.stderr
    assert "its sparsity is unknown" in proc.stderr  # the space's slimming signal, said weak
    import json

    family = json.loads((tmp_path / "run" / "family.json").read_text())
    info = family["base_info"]
    assert info["format"] == "torch.save" and info["epochs"] == 7 and info["val_images"] == 64
    assert 0 <= info["val_accuracy"] <= 1
    spec = ps.ArchSpec.load(tmp_path / "run" / family["members"][0]["spec"])
    assert spec.search["base"] == info
    assert spec.search["base_checkpoint_sha256"] == info["sha256"]


class _Constant(torch.nn.Module):
    """Says class 0 whatever the image: a base at chance level."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.classes = classes

    def forward(self, x):
        return torch.nn.functional.one_hot(
            torch.zeros(len(x), dtype=torch.long), self.classes
        ).float()


@pytest.mark.parametrize("n, classes, warned", [(400, 4, True), (8, 2, False)])
def test_a_base_at_chance_level_is_warned_of_when_the_split_can_tell(n, classes, warned, caplog):
    """Within three standard errors of guessing: a warning; on a split too small to tell any
    accuracy from chance (8 images of 2 classes), a note instead of a false alarm."""
    from prunesearch.data.datasets import load_dataset
    from prunesearch.training.base_weights import base_accuracy

    val = load_dataset("synthetic", "test", test_size=n, num_classes=classes)
    with caplog.at_level(logging.INFO, logger="prunesearch"):
        base_accuracy(_Constant(classes), val, batch_size=64, device=torch.device("cpu"), name="b")
    assert ("at chance level" in caplog.text) == warned
    assert ("too few to tell" in caplog.text) == (not warned)
