import torch

from prunesearch.data.datasets import load_dataset
from prunesearch.data.loader import BatchLoader


def data():
    return load_dataset("synthetic", "train", train_size=100, image_size=8, in_channels=2)


def batches(loader, epoch):
    loader.set_epoch(epoch)
    return [(x.clone(), y.clone()) for x, y in loader]


def test_train_epoch_is_a_shuffled_pass_with_normalised_batches():
    d = data()
    loader = BatchLoader(d, 32, train=True, augment=False, seed=1)
    out = batches(loader, 0)
    assert len(out) == len(loader) == 3  # last incomplete batch dropped
    labels = torch.cat([y for _, y in out])
    assert len(labels) == 96
    x = out[0][0]
    assert x.shape == (32, 2, 8, 8) and x.dtype == torch.float32
    expected = (d.images[:1].float() / 255 - 0.5) / 0.25
    ordered = BatchLoader(d, 100, train=False)
    assert torch.allclose(next(iter(ordered))[0][:1], expected, atol=1e-6)


def test_epoch_order_and_augmentation_depend_only_on_seed_and_epoch():
    d = data()
    a = BatchLoader(d, 25, train=True, seed=3)
    b = BatchLoader(d, 25, train=True, seed=3)
    for (xa, ya), (xb, yb) in zip(batches(a, 2), batches(b, 2), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(batches(a, 0)[0][0], batches(a, 1)[0][0])


def test_random_crop_shifts_content_within_padding():
    d = data()
    plain = BatchLoader(d, 100, train=True, augment=False, seed=0)
    aug = BatchLoader(d, 100, train=True, augment=True, seed=0)
    ((x0, y0),) = batches(plain, 0)
    ((x1, y1),) = batches(aug, 0)
    assert torch.equal(y0, y1)  # same order: augmentation draws after the permutation
    assert not torch.equal(x0, x1)
    # each augmented image equals its plain image shifted by at most the padding (1 pixel)
    for i in range(5):
        found = any(
            torch.equal(x1[i, :, 1:-1, 1:-1], x0[i, :, 1 + dy : 7 + dy, 1 + dx : 7 + dx])
            for dy in (-1, 0, 1)
            for dx in (-1, 0, 1)
        )
        assert found


def test_ranks_share_each_batch():
    d = data()
    full = batches(BatchLoader(d, 20, train=True, augment=False, seed=5), 0)
    parts = [
        batches(BatchLoader(d, 20, train=True, augment=False, seed=5, shard=(r, 2)), 0)
        for r in range(2)
    ]
    for i, (_, y) in enumerate(full):
        assert torch.equal(torch.cat([parts[0][i][1], parts[1][i][1]]), y)


def test_channels_last_and_eval_keeps_every_example():
    d = data()
    loader = BatchLoader(d, 30, train=False, channels_last=True)
    out = list(loader)
    assert sum(len(y) for _, y in out) == 100
    assert out[0][0].is_contiguous(memory_format=torch.channels_last)
