"""Training compute: what each member cost, against the base's training and Scratch-B.

Counted in multiply-accumulates (fvcore's FLOPs: one multiply-add = 1). A training step costs
about :data:`TRAIN_FACTOR` forward passes (the forward, and a backward that computes the
gradients of both activations and weights, each about a forward's MACs), so training costs
``3 x forward MACs per image x images seen``. A teacher adds one forward pass per image seen
(no backward). Wall time is the measured seconds of the training epochs (``train_seconds``).
"""

from __future__ import annotations

from typing import Any

from prunesearch.training.runs import scratch_b_epochs

__all__ = [
    "TRAIN_FACTOR",
    "base_cost",
    "family_total",
    "images_seen",
    "member_cost",
    "training_macs",
]

TRAIN_FACTOR = 3  # forward + backward (activation and weight gradients) ~ 3 forward passes


def training_macs(flops: int, images: int) -> int:
    """MACs of training a model of ``flops`` forward MACs per image on ``images`` images."""
    return TRAIN_FACTOR * flops * images


def images_seen(metrics: dict[str, Any]) -> int | None:
    """Training images a finished run saw, from its per-epoch history (None: not recorded)."""
    counts = [h.get("images") for h in metrics.get("history") or []]
    if not counts or any(not isinstance(c, int) for c in counts):
        return None
    return sum(counts)


def base_cost(
    base_flops: int, base_epochs: int, base_metrics: dict[str, Any] | None, per_epoch: int
) -> dict[str, Any]:
    """The base's training compute: its images seen when its run recorded them, else its
    epochs times ``per_epoch`` (the members' training images per epoch), said so."""
    seen = images_seen(base_metrics or {})
    how = "the base's run (metrics.json)"
    if seen is None:
        seen, how = base_epochs * per_epoch, "assumed: the base's epochs x the members' images"
    return {
        "flops": base_flops,
        "epochs": base_epochs,
        "images": seen,
        "images_from": how,
        "train_macs": training_macs(base_flops, seen),
        "train_seconds": (base_metrics or {}).get("train_seconds"),
    }


def member_cost(
    metrics: dict[str, Any], teacher_flops: int | None, base: dict[str, Any]
) -> dict[str, Any]:
    """A trained member's cost, from its run's metrics: its training MACs, its teacher's
    forward MACs (``teacher_flops`` per image; None: no teacher), its wall time, and the
    ratios to the base's training (``base``: :func:`base_cost`) and to the member's Scratch-B
    (the base's epochs scaled by base/member FLOPs, as ``train-arch --schedule scratch-b``)."""
    flops, epochs = int(metrics["flops"]), int(metrics["epochs"])
    seen = images_seen(metrics)
    if seen is None:  # a run from before images were recorded: its throughput x its time
        seen = round(sum(h["images_per_s"] * h["seconds"] for h in metrics["history"]))
    train = training_macs(flops, seen)
    teacher = (teacher_flops or 0) * seen
    per_epoch = seen / max(epochs, 1)
    sb_epochs = scratch_b_epochs(base["epochs"], base["flops"], flops)
    scratch_b = round(training_macs(flops, round(sb_epochs * per_epoch)))
    total = train + teacher
    return {
        "epochs": epochs,
        "images": seen,
        "train_macs": train,
        "teacher_macs": teacher,
        "total_macs": total,
        "x_base": total / base["train_macs"],
        "scratch_b_epochs": sb_epochs,
        "scratch_b_macs": scratch_b,
        "x_scratch_b": total / scratch_b,
        "train_seconds": metrics.get("train_seconds"),
        "factor": f"training = {TRAIN_FACTOR} x forward MACs x images; teacher = 1 x its "
        "forward MACs x images; fvcore: 1 multiply-add = 1",
    }


def family_total(costs: list[dict[str, Any]], base: dict[str, Any]) -> dict[str, Any]:
    """The family's bill: the members' sums, and the ratios to one base training and to a
    Scratch-B training of every member."""
    total = sum(c["total_macs"] for c in costs)
    scratch_b = sum(c["scratch_b_macs"] for c in costs)
    seconds = [c["train_seconds"] for c in costs]
    return {
        "members": len(costs),
        "train_macs": sum(c["train_macs"] for c in costs),
        "teacher_macs": sum(c["teacher_macs"] for c in costs),
        "total_macs": total,
        "x_base": total / base["train_macs"],
        "scratch_b_macs": scratch_b,
        "x_scratch_b": total / scratch_b if scratch_b else None,
        "train_seconds": round(sum(seconds), 2) if None not in seconds else None,
    }
