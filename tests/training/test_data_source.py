import json

import pytest

from prunesearch.errors import PrunesearchError
from prunesearch.space import space_from_dict
from prunesearch.training.runs import DataOptions, check_same_source, prepare_data

from ..helpers import write_image_folder


def test_a_changed_or_moved_source_is_refused(tmp_path):
    source = {"kind": "folder", "path": "/d/imgs", "digest": "a" * 64}
    config = tmp_path / "config.json"
    check_same_source(source, config)  # no run folder: nothing to compare with
    config.write_text(json.dumps({"data_source": source}))
    check_same_source(dict(source), config)
    with pytest.raises(PrunesearchError, match="changed since"):
        check_same_source(source | {"digest": "b" * 64}, config)
    with pytest.raises(PrunesearchError, match="used /d/imgs"):
        check_same_source(source | {"path": "/e/imgs"}, config)


def test_prepare_fills_the_space_from_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNESEARCH_CACHE", str(tmp_path / "cache"))
    write_image_folder(tmp_path / "imgs", classes=("a", "b", "c", "d"), per_class=4)
    raw = {
        "name": "own",
        "model": {"name": "resnet20", "args": {"in_channels": 1}},
        "data": {"dataset": {"folder": "imgs"}, "image_size": [8, 6], "val_size": 2},
        "train": {"epochs": 1},
    }
    space = space_from_dict(raw, path=str(tmp_path / "own.yaml"))
    prepared = prepare_data(space, DataOptions())
    assert prepared.space.model.args == {"in_channels": 1, "num_classes": 4}
    assert prepared.space.data.image_size == (8, 6) and prepared.space.data.channels == 1
    assert prepared.splits.train.images.shape[1:] == (1, 8, 6)
    assert len(prepared.splits.val) == 2 and prepared.source["channel_order"] == "L"
    raw["model"]["args"]["num_classes"] = 10
    space = space_from_dict(raw, path=str(tmp_path / "own.yaml"))
    with pytest.raises(PrunesearchError, match="num_classes is 10 but the data has 4 classes"):
        prepare_data(space, DataOptions())
