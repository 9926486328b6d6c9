"""Training throughput of prunesearch's loop vs a minimal hand-written PyTorch loop.

Same model (default: resnet20 on Fashion-MNIST, 1x28x28, channels-last), same batch size, same
images, in one process, interleaved (hand, ours, hand, ours, ...) so that machine noise hits both
alike. "Ours" is :func:`prunesearch.training.loop.fit` for one epoch: the GPU-resident loader with
batched crop+flip, network-slimming sparsity, progress reporting and the per-batch NaN guard.
"Hand" is the least a user would write: pre-made float batches, forward, cross-entropy,
backward, SGD step, nothing else. The ratio ours/hand is the cost of our conveniences.

Achieved FLOP/s = images/s x 3 x 2 x fvcore MACs per image (forward + backward ~ 3 forwards,
2 FLOPs per multiply-add), as a fraction of this machine's float32 matmul peak measured in the
same run (2n^3 / time of an n x n matmul, best of several). Also the loader alone: time per
batch as a fraction of a training step (target < 5%).

    python benchmarks/train_throughput.py [--images 6400] [--rounds 3] [--model resnet20]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import prunesearch as ps
from prunesearch.data.datasets import load_dataset
from prunesearch.data.loader import BatchLoader
from prunesearch.training.loop import Recipe, RunOptions, Splits, fit


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def hand_loop(model, x_all: torch.Tensor, labels: torch.Tensor, batch: int) -> float:
    """Images/s of a minimal loop over pre-made float batches (in the format given)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    model.train()
    n = len(labels) // batch * batch
    t = time.perf_counter()
    for i in range(0, n, batch):
        loss = F.cross_entropy(model(x_all[i : i + batch]), labels[i : i + batch])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return n / (time.perf_counter() - t)


def loader_ms_per_batch(data, batch: int, epochs: int = 3) -> float:
    """Time per batch of the training loader alone (crop+flip+normalise, channels-last)."""
    loader = BatchLoader(
        data, batch, train=True, augment=True, device=torch.device("cpu"), channels_last=True
    )
    n = 0
    t = time.perf_counter()
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for _x, _y in loader:
            n += 1
    return 1000 * (time.perf_counter() - t) / n


def ours(model, splits: Splits, batch: int, run_dir: Path) -> float:
    recipe = Recipe(epochs=1, lr=0.01, sparsity=1e-5, batch_size=batch, eval_batch_size=1000)
    metrics = fit(model, splits, recipe, RunOptions(), run_dir)
    return metrics["history"][0]["images_per_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--images", type=int, default=6400)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results/train_throughput.json")
    args = p.parse_args()

    train = load_dataset("fashion-mnist", "train").subset(slice(0, args.images))
    test = load_dataset("fashion-mnist", "test").subset(slice(0, 1000))
    splits = Splits(train, None, test)
    make = lambda: ps.create_model(args.model, num_classes=10, in_channels=1).to(  # noqa: E731
        memory_format=torch.channels_last
    )
    macs = ps.count_flops(make(), torch.zeros(1, 1, 28, 28))
    peak = matmul_peak()
    hand, mine = [], []
    # warm-up (oneDNN primitive creation) for both, not timed
    x_all = (train.images.float() / 255 - 0.5).contiguous(memory_format=torch.channels_last)
    hand_loop(make(), x_all[:512], train.labels[:512], args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            hand.append(hand_loop(make(), x_all, train.labels, args.batch))
            mine.append(ours(make(), splits, args.batch, Path(tmp) / f"r{r}"))
            print(f"round {r + 1}: hand {hand[-1]:.1f} img/s, prunesearch {mine[-1]:.1f} img/s")
    h, m = statistics.median(hand), statistics.median(mine)
    loader_ms = loader_ms_per_batch(train, args.batch)
    step_ms = 1000 * args.batch / m
    achieved = m * 3 * 2 * macs
    result = {
        "model": args.model,
        "dataset": "fashion-mnist",
        "images": args.images,
        "batch": args.batch,
        "rounds": args.rounds,
        "threads": torch.get_num_threads(),
        "hand_images_per_s": round(h, 1),
        "prunesearch_images_per_s": round(m, 1),
        "ratio": round(m / h, 3),
        "macs_per_image": macs,
        "loader_ms_per_batch": round(loader_ms, 3),
        "train_step_ms": round(step_ms, 1),
        "loader_fraction_of_step": round(loader_ms / step_ms, 4),
        "achieved_gflops": round(achieved / 1e9, 2),
        "matmul_peak_gflops": round(peak / 1e9, 2),
        "fraction_of_peak": round(achieved / peak, 3),
        "torch": torch.__version__,
        "machine": platform.machine(),
    }
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
