import pytest
import yaml

from prunesearch.errors import PrunesearchError
from prunesearch.space import list_spaces, load_space

PAPER = [
    f"{m}-{d}"
    for m in ("vgg16", "vgg19", "resnet56", "resnet110", "preresnet164", "densenet40")
    for d in ("cifar10", "cifar100")
]


def test_default_and_paper_spaces_load():
    default = load_space(None)
    assert default.name == "resnet20-fmnist" and default.data.dataset == "fashion-mnist"
    assert set(PAPER) <= set(list_spaces())
    for name in list_spaces():
        space = load_space(name)
        assert space.name == name
    vgg = load_space("vgg16-cifar10")
    assert (vgg.train.epochs, vgg.train.sparsity, vgg.search.round_to) == (160, 1e-4, 8)
    assert load_space("resnet56-cifar100").model.args["num_classes"] == 100


def write(tmp_path, data):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


BASE = {
    "name": "x",
    "model": {"name": "resnet20", "args": {"in_channels": 1}},
    "data": {"dataset": "fashion-mnist"},
    "train": {"epochs": 1},
}


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"colour": 1}, r"space s\.yaml\.colour: unknown key"),
        ({"data": {"dataset": "fashion-mnist", "vals": 3}}, r"data\.vals: unknown key"),
        ({"train": {}}, r"train\.epochs: missing"),
        ({"train": {"epochs": "3"}}, r"train\.epochs: must be an integer"),
        ({"train": {"epochs": True}}, r"train\.epochs: must be an integer"),
        ({"train": {"epochs": 0}}, r"train\.epochs: must be >= 1"),
        ({"train": {"epochs": 1, "schedule": "linear"}}, r"train\.schedule: must be one of"),
        ({"train": {"epochs": 1, "milestones": [0.5, 2]}}, r"train\.milestones: must lie in"),
        ({"search": {"signal": "taylor"}}, r"search\.signal: must be one of slimming, l1"),
        ({"search": {"min_ratio": 0}}, r"search\.min_ratio: must be in \(0, 1\]"),
        ({"model": "resnet20"}, r"model: must be a mapping"),
        (
            {"train": {"epochs": 1, "channels_last": "fast"}},
            r"train\.channels_last: must be true, false or auto, got 'fast'",
        ),
    ],
)
def test_invalid_space_names_the_key(tmp_path, patch, message):
    with pytest.raises(PrunesearchError, match=message):
        load_space(write(tmp_path, {**BASE, **patch}))


@pytest.mark.parametrize("value", ["auto", True, False])
def test_channels_last_is_a_boolean_or_auto(tmp_path, value):
    train = {"epochs": 1, "channels_last": value}
    assert load_space(write(tmp_path, {**BASE, "train": train})).train.channels_last == value
    assert load_space(write(tmp_path, BASE)).train.channels_last == "auto"  # the default


def test_missing_and_malformed(tmp_path):
    with pytest.raises(PrunesearchError, match=r"unknown space 'nope'; known: .*resnet20-fmnist"):
        load_space("nope")
    with pytest.raises(PrunesearchError, match="space file not found"):
        load_space(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(PrunesearchError, match="not valid YAML"):
        load_space(bad)


def test_float_fields_accept_ints(tmp_path):
    space = load_space(write(tmp_path, {**BASE, "train": {"epochs": 1, "lr": 1}}))
    assert space.train.lr == 1.0 and isinstance(space.train.lr, float)
    assert space.to_dict()["train"]["milestones"] == [0.5, 0.75]


def own(**data):
    return {**BASE, "data": {"dataset": {"folder": "imgs"}, **data}}


@pytest.mark.parametrize(
    "data, message",
    [
        ({"dataset": {"folder": "a", "arrays": "b"}}, r"data\.dataset: give exactly one of"),
        ({"dataset": {"fold": "a"}}, r"data\.dataset\.'fold': unknown key"),
        ({"dataset": {"callable": "nocolon"}}, r"data\.dataset\.callable: must be"),
        ({"dataset": {"folder": "a", "args": {}}}, r"data\.dataset\.args: only a callable"),
        ({"dataset": 3}, r"data\.dataset: must be a dataset name or a mapping"),
        ({"dataset": "x", "image_size": [8]}, r"data\.image_size: must be an integer N or"),
        ({"dataset": "x", "image_size": 0}, r"data\.image_size: must be an integer N or"),
        ({"dataset": "x", "mean": "0.5"}, r"data\.mean: must be a list of numbers"),
        ({"dataset": "x", "std": [0.2, 0]}, r"data\.std: must be > 0"),
        ({"dataset": "x", "mean": [0.5], "std": [0.2, 0.2]}, r"data\.mean: must have as many"),
        ({"dataset": "x", "test_size": 1.0}, r"data\.test_size: must be in \(0, 1\)"),
        ({"dataset": "x", "channels": 0}, r"data\.channels: must be in 1\.\.64"),
        ({"dataset": "x", "skip_bad_images": "yes"}, r"data\.skip_bad_images: must be true"),
    ],
)
def test_own_data_keys_are_validated(tmp_path, data, message):
    with pytest.raises(PrunesearchError, match=message):
        load_space(write(tmp_path, {**BASE, "data": data}))


def test_own_data_paths_resolve_against_the_space_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)
    space = load_space(write(tmp_path, own(image_size=[8, 6], mean=[0.5], std=[0.25])))
    assert space.data.dataset == {"folder": str(tmp_path / "imgs")}
    assert space.data.image_size == (8, 6) and space.data.mean == (0.5,)
    assert (space.data.test_size, space.data.skip_bad_images, space.data.channels) == (
        0.1,
        False,
        None,
    )
    callable_ref = {"callable": "pkg.mod:read", "args": {"n": 1}}
    data = {"dataset": callable_ref}
    assert load_space(write(tmp_path, {**BASE, "data": data})).data.dataset == callable_ref
