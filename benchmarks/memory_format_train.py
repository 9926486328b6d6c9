"""``train-arch`` time with the memory format chosen per run (``train.channels_last: auto``)
against the format forced: channels-last (the default before) and NCHW.

The base and the compare run's searched, uniform and Torch-Pruning specs of resnet20-fmnist
(``compare_specs.py``), each trained with
:func:`prunesearch.training.runs.train_arch` as the compare
setting trains them (Scratch-E for ``--epochs`` on the first ``--limit-train`` training images:
4 epochs of 10,000 is the compare run's Scratch-B at 50% FLOPs), once per mode and round, the
modes interleaved per spec and their order reversed every other round (a drift in the machine's
load would otherwise favour the mode run last), after one short untimed run per mode (data
loaded, oneDNN's kernels created). Timed: the whole call (data, probe, training, evaluation,
files) and the training epochs alone (``train_seconds``); recorded: the format auto chose and
the probe's per-step times. Medians over rounds. Measure alone on the machine.

    python benchmarks/memory_format_train.py [--limit-train 10000] [--epochs 4] [--rounds 2]
        [--threads N] [--specs NAME ...] [--modes auto channels-last nchw]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from compare_specs import resnet20_specs  # benchmarks/ is the script's path
from prunesearch.space import load_space
from prunesearch.training.runs import ArchTraining, DataOptions, train_arch

MODES = {"auto": "auto", "channels-last": True, "nchw": False}
SPECS = ["base", "searched (compare)", "uniform (compare)", "torch-pruning (compare)"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit-train", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="default: torch's")
    ap.add_argument("--specs", nargs="*", default=SPECS)
    ap.add_argument("--modes", nargs="*", default=list(MODES), choices=list(MODES))
    ap.add_argument("--out", default="benchmarks/results/memory_format_train.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    space = load_space("resnet20-fmnist")
    specs = resnet20_specs()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:

        def train(name: str, mode: str, limit: int, epochs: int) -> tuple[dict, float]:
            sp = space.replace("train", channels_last=MODES[mode])
            t = time.perf_counter()
            m = train_arch(
                specs[name],
                sp,
                ArchTraining(epochs=epochs),
                out=Path(tmp) / f"{time.time_ns()}",
                data=DataOptions(limit_train=limit),
            )
            return m, time.perf_counter() - t

        for mode in args.modes:  # untimed: the data read, the kernels of both formats made
            train(args.specs[0], mode, 1280, 1)
        for r in range(args.rounds):
            for name in args.specs:
                for mode in args.modes if r % 2 == 0 else args.modes[::-1]:
                    m, wall = train(name, mode, args.limit_train, args.epochs)
                    runs.append(
                        {
                            "spec": name,
                            "mode": mode,
                            "round": r,
                            "wall_s": round(wall, 2),
                            "train_seconds": m["train_seconds"],
                            "images_per_s": m["images_per_s"],
                            "memory_format": m["memory_format"],
                            "test_accuracy": m["test_accuracy"],
                            "flops": specs[name].flops,
                        }
                    )
                    print(json.dumps(runs[-1]), flush=True)
    result = {
        "limit_train": args.limit_train,
        "epochs": args.epochs,
        "rounds": args.rounds,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average": os.getloadavg(),
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))


def markdown(result: dict) -> str:
    """The BENCHMARKS.md table: per spec, what auto chose in each round (with the probe's ms
    per step), and each mode's median wall seconds (training epochs alone in brackets)."""
    modes = [m for m in MODES if any(r["mode"] == m for r in result["runs"])]
    head = [
        "spec",
        "auto chose (probe ms/step nchw / channels-last)",
        *(f"{m} s (train s)" for m in modes),
        "channels-last s / auto s",
    ]
    lines = ["| " + " | ".join(head) + " |", "| --- | --- |" + " ---: |" * (len(head) - 2)]
    for spec in dict.fromkeys(r["spec"] for r in result["runs"]):
        runs = [r for r in result["runs"] if r["spec"] == spec]
        wall = {m: statistics.median(r["wall_s"] for r in runs if r["mode"] == m) for m in modes}
        train = {
            m: statistics.median(r["train_seconds"] for r in runs if r["mode"] == m) for m in modes
        }
        chose = "; ".join(
            f"{c['memory_format']} ({c['ms_per_step']['nchw']:.0f} / "
            f"{c['ms_per_step']['channels-last']:.0f})"
            if "ms_per_step" in c
            else c["memory_format"]
            for c in (r["memory_format"] for r in runs if r["mode"] == "auto")
        )
        ratio = (
            f"{wall['channels-last'] / wall['auto']:.2f}"
            if {"auto", "channels-last"} <= set(wall)
            else ""
        )
        lines.append(
            f"| {spec} | {chose} | "
            + " | ".join(f"{wall[m]:.1f} ({train[m]:.1f})" for m in modes)
            + f" | {ratio} |"
        )
    load = ", ".join(f"{x:.2f}" for x in result["load_average"])
    return "\n".join(
        [
            *lines,
            "",
            f"{result['epochs']} epochs of {result['limit_train']:,} "
            f"images, median of {result['rounds']} round(s), {result['threads']} "
            f"thread(s), load average (1, 5, 15 min) {load}",
        ]
    )


if __name__ == "__main__":
    main()
