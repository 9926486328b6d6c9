"""Your own images: decode rate, cache reuse, and training throughput from the cache.

Writes ``--images`` generated JPEGs (``--size`` x ``--size`` RGB, 10 classes; not timed) into a
temporary folder, then measures, with a fresh ``$PRUNESEARCH_CACHE``:

1. the first load of ``{folder: DIR}``: listing, decoding, resizing and writing the uint8 cache
   (images/s decoded);
2. a second load: the cache found by its key and opened memory-mapped (seconds);
3. training throughput of :func:`prunesearch.training.loop.fit` (one epoch, resnet20, batch
   ``--batch``) on the memory-mapped training split, against the built-in synthetic dataset of
   the same shape and count held in memory, interleaved in ``--rounds`` rounds (median; target:
   a ratio of at least 0.95).

    python benchmarks/image_folder.py [--images 3000] [--size 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import prunesearch as ps
from prunesearch.data.datasets import load_dataset, load_train_test
from prunesearch.space import DataCfg
from prunesearch.training.loop import Recipe, RunOptions, Splits, fit

CLASSES = 10


def write_folder(root: Path, n: int, size: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        label = i % CLASSES
        folder = root / f"class{label:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 200, 3) + label * 5
        pixels = np.clip(base + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:06d}.jpg", quality=90)


def throughput(splits: Splits, batch: int, run_dir: Path) -> float:
    model = ps.create_model("resnet20", num_classes=CLASSES, in_channels=3)
    recipe = Recipe(epochs=1, lr=0.01, batch_size=batch, eval_batch_size=1000, channels_last=False)
    metrics = fit(model, splits, recipe, RunOptions(), run_dir)
    return metrics["history"][0]["images_per_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=3000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--train-images", type=int, default=1024, help="images per timed epoch")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results/image_folder.json")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["PRUNESEARCH_CACHE"] = str(tmp / "cache")
        write_folder(tmp / "imgs", args.images, args.size)
        cfg = DataCfg(dataset={"folder": str(tmp / "imgs")}, image_size=args.size)
        t = time.perf_counter()
        first = load_train_test(cfg, channels=3)
        decode_s = time.perf_counter() - t
        t = time.perf_counter()
        second = load_train_test(cfg, channels=3)
        reuse_s = time.perf_counter() - t
        assert second.source["cache"] == first.source["cache"]
        n = args.train_images
        own = Splits(second.train.subset(slice(0, n)), None, second.test.subset(slice(0, 256)))
        syn = {"image_size": args.size, "in_channels": 3, "num_classes": CLASSES}
        built_in = Splits(
            load_dataset("synthetic", "train", train_size=n, **syn),
            None,
            load_dataset("synthetic", "test", test_size=256, **syn),
        )
        throughput(built_in, args.batch, tmp / "warm")  # warm-up, not timed
        ours, theirs = [], []
        for r in range(args.rounds):
            theirs.append(throughput(built_in, args.batch, tmp / f"b{r}"))
            ours.append(throughput(own, args.batch, tmp / f"o{r}"))
            print(f"round {r + 1}: built-in {theirs[-1]:.1f} img/s, cache {ours[-1]:.1f} img/s")
    o, b = statistics.median(ours), statistics.median(theirs)
    result = {
        "images": args.images,
        "size": args.size,
        "format": "JPEG quality 90, RGB",
        "decode_seconds": round(decode_s, 2),
        "decode_images_per_s": round(args.images / decode_s, 1),
        "reuse_seconds": round(reuse_s, 3),
        "train_images_per_epoch": n,
        "batch": args.batch,
        "rounds": args.rounds,
        "built_in_images_per_s": round(b, 1),
        "cache_images_per_s": round(o, 1),
        "ratio": round(o / b, 3),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
    }
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
