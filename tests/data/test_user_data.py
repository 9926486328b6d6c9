import json
import os

import pytest
import torch
from PIL import Image

from prunesearch.data import image_folder
from prunesearch.data.datasets import load_train_test, split_validation, validation_size
from prunesearch.data.user_data import carve_test
from prunesearch.errors import PrunesearchError
from prunesearch.space import DataCfg

from ..helpers import write_image_folder


def folder_cfg(root, **kw) -> DataCfg:
    return DataCfg(dataset={"folder": str(root)}, **({"image_size": 8} | kw))


def test_folder_loads_with_classes_sizes_and_training_statistics(tmp_path):
    root = write_image_folder(tmp_path / "imgs")
    loaded = load_train_test(folder_cfg(root), channels=3)
    train, test, source = loaded.train, loaded.test, loaded.source
    assert train.images.shape[1:] == (3, 8, 8) and train.images.dtype == torch.uint8
    assert len(train) + len(test) == 18 and len(test) == 3  # round(0.1 * 6) -> 1 per class
    assert sorted(test.labels.tolist()) == [0, 1, 2]
    assert train.info.num_classes == 3 and train.info.classes == ("ant", "bee", "cat")
    x = train.images.double() / 255
    assert train.info.mean == pytest.approx(x.mean(dim=(0, 2, 3)).tolist(), abs=1e-5)
    assert train.info.std == pytest.approx(x.std(dim=(0, 2, 3), correction=0).tolist(), abs=1e-5)
    assert source["classes"] == ["ant", "bee", "cat"] and source["ignored_files"] == 2
    assert source["path"] == str(root) and len(source["digest"]) == 64
    # the class of each image: brighter with the class index (write_image_folder)
    means = [train.images[train.labels == c].float().mean() for c in range(3)]
    assert means[0] < means[1] < means[2]


def test_space_statistics_and_grayscale(tmp_path):
    root = write_image_folder(tmp_path / "imgs")
    loaded = load_train_test(folder_cfg(root, mean=(0.5,), std=(0.2,)), channels=1)
    assert loaded.train.images.shape[1] == 1
    assert loaded.train.info.mean == (0.5,) and loaded.source["mean_std_from"] == "space"
    with pytest.raises(PrunesearchError, match=r"data\.mean has 1 values"):
        load_train_test(folder_cfg(root, mean=(0.5,), std=(0.2,)), channels=3)


def test_validation_split_is_a_view_of_the_memory_mapped_cache(tmp_path):
    root = write_image_folder(tmp_path / "imgs")
    train = load_train_test(folder_cfg(root), channels=3).train
    rest, val = split_validation(train, 4)
    assert len(rest) == len(train) - 4 and len(val) == 4
    ptr = train.images.untyped_storage().data_ptr()
    assert val.images.untyped_storage().data_ptr() == ptr
    assert rest.images.untyped_storage().data_ptr() == ptr


def test_second_load_reuses_the_cache_and_a_changed_folder_rebuilds_it(tmp_path, _image_cache):
    root = write_image_folder(tmp_path / "imgs")
    first = load_train_test(folder_cfg(root), channels=3).source
    manifest = os.path.join(first["cache"], "manifest.json")
    stamp = os.stat(manifest).st_mtime_ns
    again = load_train_test(folder_cfg(root), channels=3).source
    assert again["cache"] == first["cache"] and os.stat(manifest).st_mtime_ns == stamp
    Image.new("RGB", (9, 9), (1, 2, 3)).save(root / "bee" / "new.png")
    changed = load_train_test(folder_cfg(root), channels=3).source
    assert changed["digest"] != first["digest"] and changed["n_train"] + changed["n_test"] == 19
    assert not os.path.exists(first["cache"])  # the stale cache of the folder is removed
    assert os.listdir(_image_cache / "images") == [changed["digest"]]
    other_size = load_train_test(folder_cfg(root, image_size=(6, 4)), channels=3)
    assert other_size.train.images.shape[2:] == (6, 4)
    # a cache of other settings is another cache, and both stay
    assert sorted(os.listdir(_image_cache / "images")) == sorted(
        [changed["digest"], other_size.source["digest"]]
    )


def test_killed_build_leaves_no_cache(tmp_path, monkeypatch, _image_cache):
    root = write_image_folder(tmp_path / "imgs")
    real, calls = image_folder.decode_sized, []

    def dies_on_the_fifth(*args):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr("prunesearch.data.image_cache.decode_sized", dies_on_the_fifth)
    with pytest.raises(KeyboardInterrupt):
        load_train_test(folder_cfg(root), channels=3)
    assert os.listdir(_image_cache / "images") == []


def test_corrupt_image_is_named_or_skipped_and_counted(tmp_path):
    root = write_image_folder(tmp_path / "imgs")
    Image.new("RGB", (32, 32), (9, 9, 9)).save(root / "cat" / "whole.jpg")
    data = (root / "cat" / "whole.jpg").read_bytes()
    (root / "cat" / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(PrunesearchError, match=r"cut\.jpg.*skip_bad_images"):
        load_train_test(folder_cfg(root), channels=3)
    loaded = load_train_test(folder_cfg(root, skip_bad_images=True), channels=3)
    assert loaded.source["skipped_images"] == 1
    assert len(loaded.train) + len(loaded.test) == 19
    manifest = json.loads(
        (tmp_path / "cache" / "images" / loaded.source["digest"] / "manifest.json").read_text()
    )
    assert manifest["skipped"] == [str(root / "cat" / "cut.jpg")]


def test_images_of_different_sizes_need_image_size(tmp_path):
    root = write_image_folder(tmp_path / "imgs")
    with pytest.raises(PrunesearchError, match=r"differ in size.*data\.image_size"):
        load_train_test(DataCfg(dataset={"folder": str(root)}), channels=3)


def test_train_and_test_folders(tmp_path):
    write_image_folder(tmp_path / "d" / "train", per_class=4)
    write_image_folder(tmp_path / "d" / "test", per_class=2)
    loaded = load_train_test(folder_cfg(tmp_path / "d"), channels=3)
    assert len(loaded.train) == 12 and len(loaded.test) == 6
    assert loaded.source["test_split"] == "the folder's test split"


def test_carve_test_is_seeded_stratified_and_disjoint():
    labels = [0] * 10 + [1] * 5 + [2]
    train, test = carve_test(labels, 0.2)
    assert carve_test(labels, 0.2) == (train, test)
    assert sorted(train + test) == list(range(16))
    assert [labels[i] for i in test].count(0) == 2 and [labels[i] for i in test].count(1) == 1
    assert 15 in train  # a class of one image stays in training


def test_val_size_error_names_the_key_and_its_default(tmp_path):
    root = write_image_folder(tmp_path / "imgs")
    train = load_train_test(folder_cfg(root), channels=3).train
    with pytest.raises(PrunesearchError, match=r"data\.val_size must be in 1\.\.14 .*default 10%"):
        split_validation(train, 5000)


def test_the_default_validation_split_is_sized_to_the_training_images():
    """data.val_size unset: 10% of the training images, at least one, at most 5000 (a small
    folder works without setting it; the built-in datasets keep their 5000)."""
    assert [validation_size(None, n) for n in (1, 2, 15, 400, 60_000)] == [0, 1, 1, 40, 5000]
    assert validation_size(7, 15) == 7 and validation_size(0, 400) == 0


def test_same_size_images_need_no_image_size_and_share_the_cache_of_that_size(tmp_path):
    root = tmp_path / "imgs"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (7, 5), (40 * i, 0, 0)).save(root / c / f"{i}.png")
    native = load_train_test(DataCfg(dataset={"folder": str(root)}), channels=3)
    assert native.train.images.shape[1:] == (3, 5, 7)
    sized = load_train_test(folder_cfg(root, image_size=(5, 7)), channels=3)
    assert sized.source["digest"] == native.source["digest"]  # a resolved space: same data
    Image.new("RGB", (9, 9)).save(root / "a" / "odd.png")
    resized = load_train_test(folder_cfg(root, image_size=(5, 7)), channels=3)
    assert len(resized.train) + len(resized.test) == 7
    with pytest.raises(PrunesearchError, match=r"1 of .* are not 5x7; set data\.image_size"):
        load_train_test(DataCfg(dataset={"folder": str(root)}), channels=3)
