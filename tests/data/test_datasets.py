import gzip
import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from prunesearch.data.datasets import (
    DATASETS,
    DatasetInfo,
    download,
    load_dataset,
    read_cifar_batch,
    read_idx,
    split_validation,
)
from prunesearch.errors import PrunesearchError

FMNIST = Path("/usr/share/datasets/fashion-mnist")


def write_idx(path: Path, array: np.ndarray, compress: bool) -> Path:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def fake_mnist(folder: Path, n: int = 20, compress: bool = True) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    sfx = ".gz" if compress else ""
    for split, count in (("train", n), ("t10k", n // 2)):
        write_idx(
            folder / f"{split}-images-idx3-ubyte{sfx}",
            rng.integers(0, 256, (count, 28, 28)),
            compress,
        )
        write_idx(folder / f"{split}-labels-idx1-ubyte{sfx}", rng.integers(0, 10, count), compress)
    return folder


@pytest.mark.parametrize("compress", [True, False])
def test_idx_gz_and_raw(tmp_path, compress):
    fake_mnist(tmp_path, compress=compress)
    data = load_dataset("mnist", "train", data_dir=tmp_path)
    assert data.images.shape == (20, 1, 28, 28) and data.images.dtype == torch.uint8
    assert (
        data.labels.dtype == torch.int64
        and len(load_dataset("mnist", "test", data_dir=tmp_path)) == 10
    )


def test_truncated_idx_is_a_user_error(tmp_path):
    path = write_idx(tmp_path / "x", np.zeros((4, 28, 28)), compress=False)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(PrunesearchError, match="truncated or corrupt"):
        read_idx(path)
    (tmp_path / "y").write_bytes(b"PK\x03\x04 not an idx")
    with pytest.raises(PrunesearchError, match="not an IDX file"):
        read_idx(tmp_path / "y")


def test_explicit_data_dir_without_files_lists_them(tmp_path):
    with pytest.raises(
        PrunesearchError,
        match=r"fashion-mnist not found in .*"
        r"expected files train-images-idx3-ubyte",
    ):
        load_dataset("fashion-mnist", "train", data_dir=tmp_path)
    with pytest.raises(PrunesearchError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet", "train")


def test_lookup_order_env_before_system(tmp_path, monkeypatch):
    fake_mnist(tmp_path / "fashion-mnist", n=6)
    monkeypatch.setenv("PRUNESEARCH_DATA", str(tmp_path))
    assert len(load_dataset("fashion-mnist", "train")) == 6


@pytest.mark.skipif(not FMNIST.is_dir(), reason="Debian's dataset-fashion-mnist not installed")
def test_debian_fashion_mnist_found_without_flags(monkeypatch, tmp_path):
    monkeypatch.delenv("PRUNESEARCH_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    train = load_dataset("fashion-mnist", "train")
    assert train.images.shape == (60000, 1, 28, 28)
    assert torch.bincount(train.labels).tolist() == [6000] * 10


def cifar_batch(path: Path, n: int, fine: bool = False) -> None:
    rng = np.random.default_rng(n)
    obj = {
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"fine_labels" if fine else b"labels": rng.integers(0, 100 if fine else 10, n).tolist(),
    }
    path.write_bytes(pickle.dumps(obj, protocol=2))


def test_cifar_batches_through_restricted_unpickler(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        cifar_batch(folder / f"data_batch_{i}", 4)
    cifar_batch(folder / "test_batch", 3)
    train = load_dataset("cifar10", "train", data_dir=tmp_path)
    assert train.images.shape == (20, 3, 32, 32)
    c100 = tmp_path / "c100"
    c100.mkdir()
    cifar_batch(c100 / "train", 5, fine=True)
    cifar_batch(c100 / "test", 2, fine=True)
    assert load_dataset("cifar100", "train", data_dir=c100).labels.max() < 100


def test_a_corrupt_gzip_stream_is_a_user_error(tmp_path):
    folder = fake_mnist(tmp_path / "fm")
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 6 + b"garbage, not deflate")
    with pytest.raises(PrunesearchError, match=r"cannot read .*train-images-idx3-ubyte\.gz"):
        load_dataset("fashion-mnist", "train", data_dir=folder)


def test_an_idx_file_without_images_is_a_user_error(tmp_path):
    folder = fake_mnist(tmp_path / "fm")
    write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((0, 28, 28)), True)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(0), True)
    with pytest.raises(PrunesearchError, match="the train split of fashion-mnist holds no images"):
        load_dataset("fashion-mnist", "train", data_dir=folder)
    write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((3, 32, 32)), True)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(3), True)
    with pytest.raises(PrunesearchError, match=r"images are \[1, 32, 32\], not \[1, 28, 28\]"):
        load_dataset("fashion-mnist", "train", data_dir=folder)


@pytest.mark.parametrize(
    "labels, message",
    [
        (["cat", "dog"], "CIFAR labels are not a list of integers"),
        ([[1, 2], [3]], "CIFAR labels are not a list of integers"),
        (7, "not a CIFAR batch"),
        ([1], "not a CIFAR batch"),  # one label for two images
        ([3, 10], r"labels of cifar10 out of range \(they must be 0..9\)"),
    ],
)
def test_a_cifar_batch_with_malformed_labels_is_a_user_error(tmp_path, labels, message):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        cifar_batch(folder / f"data_batch_{i}", 2)
    cifar_batch(folder / "test_batch", 2)
    (folder / "data_batch_3").write_bytes(
        pickle.dumps({b"data": np.zeros((2, 3072), dtype=np.uint8), b"labels": labels}, protocol=2)
    )
    with pytest.raises(PrunesearchError, match=message):
        load_dataset("cifar10", "train", data_dir=tmp_path)


class Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /tmp/prunesearch-pwned",))


def test_cifar_pickle_cannot_run_code(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Exploit(), b"labels": [1]}))
    with pytest.raises(PrunesearchError, match=r"refusing to load (posix|os)\.system"):
        read_cifar_batch(path)
    assert not Path("/tmp/prunesearch-pwned").exists()


def test_download_md5_checked(tmp_path):
    mirror = fake_mnist(tmp_path / "mirror")
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in mirror.iterdir()}
    info = DatasetInfo(**{**DATASETS["mnist"].__dict__, "md5": md5})
    folder = download(info, tmp_path / "cache", base_url=mirror.as_uri())
    assert sorted(p.name for p in folder.iterdir()) == sorted(md5)
    bad = DatasetInfo(**{**info.__dict__, "md5": {**md5, "t10k-labels-idx1-ubyte.gz": "0" * 32}})
    with pytest.raises(PrunesearchError, match="md5"):
        download(bad, tmp_path / "cache2", base_url=mirror.as_uri())
    assert not (tmp_path / "cache2" / "mnist" / "t10k-labels-idx1-ubyte.gz").exists()


def test_validation_split_is_deterministic_and_disjoint():
    data = load_dataset("synthetic", "train", train_size=100)
    a_train, a_val = split_validation(data, 20)
    _, b_val = split_validation(data, 20)
    assert torch.equal(a_val.images, b_val.images) and len(a_train) == 80
    seen = {tuple(x.flatten()[:16].tolist()) for x in a_train.images}
    assert not any(tuple(x.flatten()[:16].tolist()) in seen for x in a_val.images)
    with pytest.raises(PrunesearchError, match="val_size"):
        split_validation(data, 100)
