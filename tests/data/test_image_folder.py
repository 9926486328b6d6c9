import numpy as np
import pytest
from PIL import Image

from prunesearch.data.image_folder import BadImage, decode_image, list_folder
from prunesearch.errors import PrunesearchError

from ..helpers import write_image_folder


def test_classes_sorted_by_folder_and_non_images_counted(tmp_path):
    root = write_image_folder(tmp_path / "imgs", classes=("zebra", "ant", "mole"))
    listing = list_folder(root)
    assert listing.classes == ["ant", "mole", "zebra"]
    assert listing.test is None and len(listing.train) == 18
    assert {lab for _, lab in listing.train} == {0, 1, 2}
    assert all(p.parent.name == listing.classes[lab] for p, lab in listing.train)
    assert sorted(p.rsplit("/", 1)[1] for p in listing.ignored) == [".DS_Store", "notes.txt"]


def test_train_and_test_layout(tmp_path):
    write_image_folder(tmp_path / "d" / "train", per_class=3)
    write_image_folder(tmp_path / "d" / "val", classes=("ant", "cat"), per_class=2)
    listing = list_folder(tmp_path / "d")
    assert listing.classes == ["ant", "bee", "cat"]
    assert len(listing.train) == 9
    assert sorted(lab for _, lab in listing.test) == [0, 0, 2, 2]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda r: (r / "only").mkdir(parents=True), "holds no images"),
        (lambda r: write_image_folder(r, classes=("one",)), "1 class folder"),
        (lambda r: r.mkdir(), "0 class folder"),
        (lambda r: None, "data folder not found"),
    ],
)
def test_bad_layouts(tmp_path, make, message):
    root = tmp_path / "imgs"
    make(root)
    with pytest.raises(PrunesearchError, match=message):
        list_folder(root)


def test_test_split_with_an_unknown_class_is_refused(tmp_path):
    write_image_folder(tmp_path / "d" / "train", classes=("a", "b"), per_class=1)
    write_image_folder(tmp_path / "d" / "test", classes=("a", "zz"), per_class=1)
    with pytest.raises(PrunesearchError, match="zz"):
        list_folder(tmp_path / "d")


def test_decode_converts_modes_and_resizes_shorter_side_then_centre_crops(tmp_path):
    # a 20x40 RGBA image: left half red, right half blue, transparent top row
    a = np.zeros((20, 40, 4), np.uint8)
    a[:, :20, 0] = 255
    a[:, 20:, 2] = 255
    a[..., 3] = 255
    a[0, :, 3] = 0
    Image.fromarray(a, "RGBA").save(tmp_path / "x.png")
    x = decode_image(tmp_path / "x.png", (10, 10), 3)
    assert x.shape == (3, 10, 10) and x.dtype == np.uint8
    # shorter side 20 -> 10: 10x20, centre crop keeps columns 5..14: red then blue
    assert x[0, 5, 0] == 255 and x[2, 5, 0] == 0 and x[2, 5, 9] == 255
    gray = decode_image(tmp_path / "x.png", None, 1)
    assert gray.shape == (1, 20, 40)
    assert gray[0, 0, 0] == 0  # transparency composited onto black
    x = decode_image(tmp_path / "x.png", (8, 4), 3)  # [H, W]: covers 8x4, then cropped
    assert x.shape == (3, 8, 4)


def test_truncated_jpeg_is_a_bad_image(tmp_path):
    Image.new("RGB", (32, 32), (200, 10, 10)).save(tmp_path / "ok.jpg")
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.png").write_text("not a png")
    for name in ("cut.jpg", "text.png"):
        with pytest.raises(BadImage):
            decode_image(tmp_path / name, (8, 8), 3)
