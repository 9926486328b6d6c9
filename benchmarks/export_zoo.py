"""Every registered zoo model, full size, exported and verified in both formats.

The tests export one small instance of each architecture class (an export takes seconds); this
script does the whole zoo at CIFAR's 3x32x32 with 10 classes: each model freshly initialised,
its BatchNorm statistics gathered from random images (so that a mistake in how they are
exported shows), then
:func:`prunesearch.deploy.export.verified_export` in ONNX (opset 18, dynamic batch) and ``.pt2``,
verified on 64 random images against the PyTorch model. Records pass/fail, the largest logit
difference against the tolerance, the file size, and the seconds each export took.

    python benchmarks/export_zoo.py [--models resnet20 vgg11 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

import prunesearch as ps
from prunesearch.deploy.export import verified_export
from prunesearch.vocab import EXPORT_FORMATS


def calibrate_bn(model: torch.nn.Module) -> None:
    """BatchNorm statistics that are not the identity's: a few training-mode forward passes on
    random images with a mean and scale of their own."""
    gen = torch.Generator().manual_seed(0)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(32, 3, 32, 32, generator=gen) * 2 + 0.5)
    model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="*", default=None, help="default: the whole zoo")
    ap.add_argument("--out", default="benchmarks/results/export_zoo.json")
    args = ap.parse_args()

    images = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    rows = []
    for name in args.models or ps.list_models():
        model = ps.create_model(name, num_classes=10, in_channels=3)
        calibrate_bn(model)
        for fmt in EXPORT_FORMATS:
            t = time.perf_counter()
            _, info = verified_export(model, [3, 32, 32], images, fmt, None)
            v = info["verification"]
            rows.append(
                {
                    "model": name,
                    "format": fmt,
                    "seconds": round(time.perf_counter() - t, 2),
                    "bytes": info["bytes"],
                    "passed": v["passed"],
                    "max_abs_logit_diff": v["max_abs_logit_diff"],
                    "tolerance": v["tolerance"],
                    "top1_agreement": v["top1_agreement"],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    out = {"torch": torch.__version__, "load_average": os.getloadavg(), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print("| model | format | verified | max abs logit diff (tolerance) | MB | export + verify s |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['model']} | {r['format']} | {'yes' if r['passed'] else 'NO'} | "
            f"{r['max_abs_logit_diff']:.1e} ({r['tolerance']:.1e}) | {r['bytes'] / 1e6:.1f} | "
            f"{r['seconds']:.1f} |"
        )


if __name__ == "__main__":
    main()
