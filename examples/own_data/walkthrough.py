"""Your own problem, end to end: your images, your model trained by your own loop, then the
search from the command line and from Python.

    python examples/own_data/walkthrough.py --out /tmp/own            # a few minutes on 2 cores
    python examples/own_data/walkthrough.py --out /tmp/own --tiny     # seconds (what the tests run)

1. Writes an image folder of three classes (PNG, 48x48, drawn with Pillow: discs, squares and
   bars on noise), one subfolder per class, as your data would be.
2. Trains a ResNet-20 on it with a plain PyTorch loop (your loop: Pillow to read, your
   normalisation, your optimiser) and saves it with ``torch.save(model.state_dict(), ...)``.
3. Writes a space for it (``own.yaml``: the folder, the image size, the model), then runs
   ``prunesearch find --space own.yaml --base mynet.pt --budget 50%FLOPs``, ``train-arch`` on the
   spec found, and ``export`` (with its model card: preprocessing and class names included).
4. Searches the same model in Python with ``ps.search`` and a score function of your own.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

import prunesearch as ps

CLASSES = ("bars", "discs", "squares")
SIZE = 48


def write_images(root: Path, per_class: int, seed: int = 0) -> None:
    """``root/<class>/<i>.png``: a shape of the class at a random place, size and colour."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise = rng.integers(0, 80, (SIZE, SIZE, 3), dtype=np.uint8)
            img = Image.fromarray(noise)
            draw = ImageDraw.Draw(img)
            r = int(rng.integers(8, 16))
            x, y = (int(v) for v in rng.integers(r, SIZE - r, 2))
            colour = tuple(int(c) for c in rng.integers(120, 256, 3))
            if label == 0:
                draw.rectangle([x - r, 2, x - r + 5, SIZE - 3], fill=colour)
                draw.rectangle([x + r - 5, 2, x + r, SIZE - 3], fill=colour)
            elif label == 1:
                draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
            else:
                draw.rectangle([x - r, y - r, x + r, y + r], fill=colour)
            img.save(root / name / f"{i:04d}.png")


def read_images(root: Path, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The user's own reader: every image resized to ``size``, as float tensors in [0, 1]."""
    xs, ys = [], []
    for label, name in enumerate(sorted(p.name for p in root.iterdir() if p.is_dir())):
        for path in sorted((root / name).glob("*.png")):
            img = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
            xs.append(torch.from_numpy(np.asarray(img)).permute(2, 0, 1).float() / 255)
            ys.append(label)
    return torch.stack(xs), torch.tensor(ys)


def train_my_model(x: torch.Tensor, y: torch.Tensor, epochs: int) -> nn.Module:
    """A plain training loop, nothing of prunesearch's but the model's constructor."""
    torch.manual_seed(0)
    model = ps.create_model("resnet20", num_classes=len(CLASSES), in_channels=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    mean, std = x.mean((0, 2, 3), keepdim=True), x.std((0, 2, 3), keepdim=True)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(y)).split(32):
            loss = nn.functional.cross_entropy(model((x[idx] - mean) / std), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


def prunesearch_cli(*args: object) -> None:
    """``prunesearch ARGS`` as a user types it; stops the walkthrough if it fails."""
    cmd = [sys.executable, "-m", "prunesearch", *map(str, args)]
    print("$ prunesearch " + " ".join(map(str, args)), flush=True)
    subprocess.run(cmd, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="Folder for everything written.")
    ap.add_argument("--tiny", action="store_true", help="Seconds, not minutes (the tests).")
    args = ap.parse_args()
    out = args.out.resolve()
    per_class, epochs, trials = (24, 1, 2) if args.tiny else (300, 6, 12)

    # 1-2. your data, your model, your loop
    write_images(out / "shapes", per_class)
    x, y = read_images(out / "shapes", 32)
    model = train_my_model(x, y, epochs)
    torch.save(model.state_dict(), out / "mynet.pt")

    # 3. the CLI on them: a space naming the folder and the model (the class count comes from
    # the folder), the base given as your state dict
    (out / "own.yaml").write_text(
        "name: shapes\n"
        "model: {name: resnet20, args: {in_channels: 3}}\n"
        f"data: {{dataset: {{folder: shapes}}, image_size: 32, val_size: {per_class // 2},"
        f" batch_size: 16, test_size: 0.2}}\n"
        f"train: {{epochs: {epochs}, lr: 0.05, milestones: [0.5, 0.75]}}\n"
        f"search: {{objective: inherit, trials: {trials}, granularity: stage}}\n"
    )
    space, find_dir = out / "own.yaml", out / "find"
    prunesearch_cli("find", "--space", space, "--base", out / "mynet.pt",
                    "--base-epochs", epochs, "--budget", "50%FLOPs", "--out", find_dir)  # fmt: skip
    spec = find_dir / "spec-50pct-flops.json"
    prunesearch_cli("train-arch", spec, "--space", space, "--out", out / "arch")
    prunesearch_cli("export", out / "arch", "--format", "pt2", "--no-latency")
    print((out / "arch" / "export-pt2" / "MODEL.md").read_text().split("## Search")[0])

    # 4. Python: the same model searched with a score of your own (here: accuracy on held-out
    # images after BN recalibration, which ps.search does when given data)
    held_out = (x[1::4] - x.mean((0, 2, 3), keepdim=True)) / x.std((0, 2, 3), keepdim=True)

    def my_score(pruned: nn.Module) -> float:
        with torch.no_grad():
            return (pruned.eval()(held_out).argmax(1) == y[1::4]).float().mean().item()

    found = ps.search(model, torch.zeros(1, 3, 32, 32), "50%FLOPs", score=my_score, trials=trials)
    print(f"ps.search: score {found.scores['50%FLOPs']:.3f}, widths {found.widths['50%FLOPs']}")


if __name__ == "__main__":
    main()
