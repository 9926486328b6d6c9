"""Training speed of pruned nets in NCHW against channels-last (with the oneDNN guard of
``prunesearch.device.to_device``: strided 1x1 convolutions on fewer than 16 channels in
NCHW, the rest channels-last). Unguarded channels-last is not timed: it computes wrong
gradients (or hangs) on the affected layers.

The base, the compare run's searched / uniform / torch-pruning specs, and resnet20 at fixed
per-stage widths (multiples of 8, and the same plus one); same pre-made batches, one process,
interleaved rounds (nchw, channels-last, nchw, ...), train_throughput.py's hand
loop (forward, cross-entropy, backward, SGD step).

    python benchmarks/guard_cost.py [SPEC.json ...] [--images 6400] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

import prunesearch as ps
from prunesearch.device import at_risk, to_device
from train_throughput import hand_loop  # benchmarks/ is the script's path

RUN = "outputs/compare-default"
DEFAULT_SPECS = [
    f"{RUN}/find/spec-50pct-flops.json",
    f"{RUN}/find/baselines/spec-50pct-flops-uniform.json",
    f"{RUN}/extra/torch-pruning.json",
]


def measure(spec: ps.ArchSpec, images: int, batch: int, rounds: int) -> dict:
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    x = torch.randn(images, *spec.input_shape)
    y = torch.randint(0, 10, (images,))
    nchw = ps.build(spec)
    guarded = to_device(ps.build(spec), cpu, channels_last=True)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    warm = slice(0, batch * 2)
    hand_loop(nchw, x[warm], y[warm], batch)
    hand_loop(guarded, x_cl[warm], y[warm], batch)
    rates: dict[str, list[float]] = {"nchw": [], "channels_last": []}
    for _ in range(rounds):
        rates["nchw"].append(round(hand_loop(nchw, x, y, batch), 1))
        rates["channels_last"].append(round(hand_loop(guarded, x_cl, y, batch), 1))
    med = {k: round(statistics.median(v), 1) for k, v in rates.items()}
    return {
        "guarded_layers": [n for n, m in guarded.named_modules() if at_risk(m)],
        "widths": spec.widths,
        "flops": spec.flops,
        "images_per_s": rates,
        "median_images_per_s": med,
        "channels_last_vs_nchw": round(med["channels_last"] / med["nchw"], 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("specs", nargs="*", default=DEFAULT_SPECS)
    ap.add_argument("--images", type=int, default=6400)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--stage-widths",
        nargs="*",
        default=["8,24,48", "9,25,49"],
        help="also every group of stage i at width w_i (a resnet's 3 stages)",
    )
    ap.add_argument("--out", default="benchmarks/results/guard_cost.json")
    args = ap.parse_args()

    results = {}
    for i, path in enumerate(args.specs):
        spec = ps.ArchSpec.load(path)
        if i == 0:  # the unpruned model the specs prune, for reference
            base = ps.ArchSpec.from_graph(
                spec.graph(), {}, model=spec.model, model_args=spec.model_args
            )
            results["base"] = measure(base, args.images, args.batch, args.rounds)
            print("base", results["base"]["median_images_per_s"], flush=True)
            stages = spec.graph().stages()
            for text in args.stage_widths:
                per_stage = [int(w) for w in text.split(",")]
                widths = {g: per_stage[stages[g]] for g in spec.base_widths}
                variant = ps.ArchSpec.from_graph(
                    spec.graph(), widths, model=spec.model, model_args=spec.model_args
                )
                results[f"stages {text}"] = measure(variant, args.images, args.batch, args.rounds)
                print(
                    f"stages {text}", results[f"stages {text}"]["median_images_per_s"], flush=True
                )
        results[path] = measure(spec, args.images, args.batch, args.rounds)
        print(path, results[path]["median_images_per_s"], flush=True)
    out = {
        "images": args.images,
        "batch": args.batch,
        "rounds": args.rounds,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "specs": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v["channels_last_vs_nchw"] for k, v in results.items()}))


if __name__ == "__main__":
    main()
