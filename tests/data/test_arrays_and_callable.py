import numpy as np
import pytest
import torch

from prunesearch.data.datasets import load_train_test
from prunesearch.errors import PrunesearchError
from prunesearch.space import DataCfg


def _images(n, layout="NHWC", dtype=np.uint8):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 6, 5, 3)).astype(np.uint8)
    if layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return x if dtype == np.uint8 else (x / 255.0).astype(dtype)


def test_nhwc_uint8_with_a_test_split(tmp_path):
    x = _images(12)
    np.savez(
        tmp_path / "d.npz",
        x_train=x,
        y_train=np.arange(12) % 3,
        x_test=x[:4],
        y_test=np.array([0, 1, 2, 0]),
        classes=np.array(["a", "b", "c"]),
    )
    loaded = load_train_test(DataCfg(dataset={"arrays": str(tmp_path / "d.npz")}, val_size=0))
    assert loaded.train.images.shape == (12, 3, 6, 5) and len(loaded.test) == 4
    assert loaded.source["layout"] == "NHWC" and loaded.source["classes"] == ["a", "b", "c"]
    assert torch.equal(loaded.test.images, torch.from_numpy(x[:4].transpose(0, 3, 1, 2)))
    assert len(loaded.source["digest"]) == 64


def test_nchw_float_is_scaled_and_a_test_split_carved(tmp_path):
    x = _images(20, "NCHW", np.float32)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.arange(20) % 2)
    loaded = load_train_test(DataCfg(dataset={"arrays": str(tmp_path / "d.npz")}))
    assert loaded.train.images.dtype == torch.uint8 and loaded.train.images.shape[1:] == (3, 6, 5)
    assert len(loaded.test) == 2 and sorted(loaded.test.labels.tolist()) == [0, 1]
    assert loaded.source["layout"] == "NCHW" and "carved" in loaded.source["test_split"]
    assert int(loaded.train.images.max()) > 200  # [0, 1] floats brought to 0..255


@pytest.mark.parametrize(
    ("arrays", "num_classes", "message"),
    [
        ({"x_train": _images(4), "y_train": np.array([0, 1, 5, 1])}, 3, "label 5 out of range"),
        ({"x_train": _images(4), "y_train": np.array([0, -1, 1, 1])}, None, "label -1"),
        ({"x_train": _images(4)}, None, "no 'y_train'"),
        ({"x_train": _images(4), "y_train": np.zeros(3, int)}, None, "4 labels"),
        ({"x_train": _images(4), "y_train": np.zeros(4, int)}, None, "one class"),
    ],
)
def test_bad_arrays(tmp_path, arrays, num_classes, message):
    np.savez(tmp_path / "d.npz", **arrays)
    cfg = DataCfg(dataset={"arrays": str(tmp_path / "d.npz")})
    with pytest.raises(PrunesearchError, match=message):
        load_train_test(cfg, num_classes=num_classes)


def test_unreadable_arrays_file(tmp_path):
    (tmp_path / "d.npz").write_text("not a zip")
    with pytest.raises(PrunesearchError, match="cannot read arrays file"):
        load_train_test(DataCfg(dataset={"arrays": str(tmp_path / "d.npz")}))
    with pytest.raises(PrunesearchError, match="not found"):
        load_train_test(DataCfg(dataset={"arrays": str(tmp_path / "none.npz")}))


READER = """
import torch

class Squares:
    classes = ["dark", "light"]

    def __init__(self, n, size):
        self.n, self.size = n, size

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.full((1, self.size, self.size), 0.9 if i % 2 else 0.1), i % 2


def read(n, size=4, with_test=True):
    return (Squares(n, size), Squares(4, size)) if with_test else Squares(n, size)


def broken():
    raise RuntimeError("no such disk")
"""


def test_callable_reader(tmp_path, monkeypatch):
    (tmp_path / "my_reader.py").write_text(READER)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = DataCfg(dataset={"callable": "my_reader:read", "args": {"n": 10}})
    loaded = load_train_test(cfg)
    assert loaded.train.images.shape == (10, 1, 4, 4) and len(loaded.test) == 4
    assert loaded.source["classes"] == ["dark", "light"]
    assert sorted(set(loaded.train.images.flatten().tolist())) == [26, 230]
    carved = load_train_test(
        DataCfg(dataset={"callable": "my_reader:read", "args": {"n": 10, "with_test": False}})
    )
    assert len(carved.train) + len(carved.test) == 10
    with pytest.raises(PrunesearchError, match="data reader my_reader:broken failed: no such"):
        load_train_test(DataCfg(dataset={"callable": "my_reader:broken"}))
    with pytest.raises(PrunesearchError, match="standard library"):
        load_train_test(DataCfg(dataset={"callable": "os:system"}))
