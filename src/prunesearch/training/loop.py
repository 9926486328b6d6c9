"""The training loop: SGD with the paper's recipe, network-slimming sparsity, exact resume, DDP.

:func:`fit` trains a model on in-memory splits and writes into a run folder:

* ``checkpoint.pt`` after every epoch (atomic): model, optimizer, scheduler, epoch, history and
  every RNG state, all of it readable by ``torch.load(weights_only=True)``;
* ``model.safetensors`` at the end, with the spec and config in its metadata;
* ``metrics.json``: per-epoch loss/accuracy/time, final test accuracy, throughput.

Resuming restarts the epoch that was interrupted from its beginning: the loader's order and
augmentation depend only on (seed, epoch), and the RNG states are restored, so on CPU the final
weights equal those of an uninterrupted run.

Under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in DDP (gloo on CPU, nccl on CUDA),
each rank trains on its share of every batch, and only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from prunesearch.data.datasets import ImageData
from prunesearch.data.loader import BatchLoader
from prunesearch.device import resolve_device, to_device
from prunesearch.errors import PrunesearchError
from prunesearch.fileio import atomic_write_bytes, atomic_write_json
from prunesearch.latency.measure import time_calls
from prunesearch.paths import CHECKPOINT, METRICS, WEIGHTS
from prunesearch.progress import Reporter
from prunesearch.space import Optimisation
from prunesearch.vocab import MEMORY_FORMATS

__all__ = [
    "Progress",
    "Recipe",
    "RunOptions",
    "Splits",
    "Teacher",
    "distillation_loss",
    "evaluate",
    "fit",
    "load_weights",
    "lr_factor",
    "resolve_device",
    "save_weights",
]

logger = logging.getLogger(__name__)

CKPT_FORMAT = "prunesearch.ckpt/v1"
WEIGHTS_FORMAT = "prunesearch.weights/v1"


@dataclass(frozen=True)
class Recipe(Optimisation):
    """How to train: the optimisation settings of one run, with its batches."""

    batch_size: int = 128
    eval_batch_size: int = 500
    augment: bool = True


@dataclass(frozen=True)
class RunOptions:
    """How to run: machine-level options that do not change what is learned (seed aside)."""

    seed: int = 0
    device: str = "auto"
    amp: bool = False
    compile: bool = False
    resume: bool = False


@dataclass
class Splits:
    train: ImageData
    val: ImageData | None
    test: ImageData


@dataclass(frozen=True)
class Progress:
    """Where a run reports its progress (default: nowhere), under which title."""

    reporter: Reporter | None = None
    title: str = "train"


@dataclass(frozen=True)
class Teacher:
    """Knowledge distillation (Hinton et al. 2015): a trained model whose softened logits on
    the same augmented batch are the student's second target.

    Attributes:
        model: the teacher, run in eval mode without gradients (its weights never change).
        temperature: T, dividing both models' logits before the softmax.
        weight: w, the share of the soft-target term in the loss (0: cross-entropy only).
    """

    model: nn.Module
    temperature: float = 4.0
    weight: float = 0.7

    def settings(self) -> dict[str, float]:
        """The teacher's settings as data (the run's fingerprint and metrics)."""
        return {"temperature": self.temperature, "weight": self.weight}


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor, t: float, w: float
) -> torch.Tensor:
    """``(1 - w) CE(student, targets) + w T^2 KL(softmax(teacher / T) || softmax(student / T))``,
    the KL summed over classes and averaged over the batch; the T^2 keeps the soft term's
    gradients on the scale of the hard one's as T grows."""
    hard = F.cross_entropy(student, targets)
    soft = F.kl_div(
        F.log_softmax(student / t, dim=1),
        F.log_softmax(teacher / t, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return (1 - w) * hard + w * t * t * soft


def lr_factor(recipe: Recipe, progress: float) -> float:
    """Learning-rate multiplier at ``progress`` (0..1) through training.

    ``step``: x gamma at each milestone (the paper: x0.1 at 50% and 75%); ``cosine``: half a
    cosine to 0; ``constant``: 1. Milestones are fractions of all iterations, so they scale with
    the epochs (Scratch-B).
    """
    if recipe.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    if recipe.schedule == "step":
        return recipe.gamma ** sum(progress >= m for m in recipe.milestones)
    return 1.0


def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "module", model)  # DDP
    return getattr(model, "_orig_mod", model)  # torch.compile


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save_weights(model: nn.Module, path: Path, metadata: dict[str, Any]) -> Path:
    """Writes a model's state as safetensors (atomic), with JSON metadata."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in _unwrap(model).state_dict().items()}
    meta = {"format": WEIGHTS_FORMAT} | {
        k: json.dumps(v, sort_keys=True) for k, v in metadata.items()
    }
    return atomic_write_bytes(path, _canonical_header(save(state, metadata=meta)))


def _canonical_header(blob: bytes) -> bytes:
    """The same safetensors file with its JSON header written canonically (sorted keys, no
    spaces): safetensors emits the metadata in hash-map order, which changes from one process
    to the next, so identical weights would get different bytes and digests. The tensors' data
    offsets are relative to the end of the header, so they stay valid."""
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format aligns the data to 8 bytes
    return len(text).to_bytes(8, "little") + text + blob[8 + n :]


def load_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Reads safetensors weights written by :func:`save_weights`: (state dict, metadata)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise PrunesearchError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as exc:
        raise PrunesearchError(f"{path} is not a readable safetensors file: {exc}") from None
    if meta.get("format") != WEIGHTS_FORMAT:
        raise PrunesearchError(
            f"{path} was not written by prunesearch (no {WEIGHTS_FORMAT} metadata)"
        )
    try:
        return state, {k: json.loads(v) for k, v in meta.items() if k != "format"}
    except (ValueError, RecursionError):
        raise PrunesearchError(
            f"{path}: its prunesearch metadata is not valid JSON (the file was edited or damaged)"
        ) from None


def _load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:
        raise PrunesearchError(
            f"checkpoint {path} is corrupt or not a prunesearch checkpoint "
            f"({type(exc).__name__}); remove it to start over"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT:
        raise PrunesearchError(f"{path} is not a prunesearch checkpoint")
    return ckpt


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: BatchLoader, amp_dtype: torch.dtype | None = None
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a loader, in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    for x, y in loader:
        with _autocast(x.device, amp_dtype):
            out = model(x)
        loss_sum += F.cross_entropy(out.float(), y, reduction="sum").item()
        correct += (out.argmax(1) == y).sum().item()
        n += len(y)
    model.train(was_training)
    return loss_sum / max(n, 1), correct / max(n, 1)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _amp_dtype(opts: RunOptions, device: torch.device) -> torch.dtype | None:
    if not opts.amp:
        return None
    if device.type != "cuda":
        logger.warning("--amp needs a CUDA device; training in float32 on %s", device)
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _distributed(device: torch.device) -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    if not dist.is_initialized():
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def _sum_across(values: list[float], world: int, device: torch.device) -> list[float]:
    if world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


@dataclass
class _Training:
    """What the epochs of one run share: the model (``net`` is it, compiled or wrapped in DDP),
    the optimisation state, the data and where they live."""

    model: nn.Module
    net: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    train_loader: BatchLoader
    eval_loaders: dict[str, BatchLoader]
    bn_weights: list[torch.Tensor]
    device: torch.device
    amp_dtype: torch.dtype | None
    rank: int
    world: int
    memory_format: dict[str, Any]  # the training memory format, and how it was chosen
    teacher: Teacher | None = None  # distillation: the teacher on the device, in eval mode


def fit(
    model: nn.Module,
    splits: Splits,
    recipe: Recipe,
    opts: RunOptions,
    run_dir: Path,
    *,
    metadata: dict[str, Any] | None = None,
    progress: Progress = Progress(),
    teacher: Teacher | None = None,
) -> dict[str, Any]:
    """Trains ``model`` and writes the run folder; returns the metrics written to metrics.json.

    Args:
        model: the freshly built (or inherited) model; trained in place.
        splits: train / val / test data; val may be None.
        recipe: optimisation settings.
        opts: seed, device, AMP, compile, resume.
        run_dir: where checkpoint.pt, model.safetensors and metrics.json go.
        metadata: JSON-able data stored with the weights (spec, config) and in metrics.json.
        progress: the progress sink (default: silent) and the run's title in it.
        teacher: distil from this model (its settings join the run's fingerprint).
    """
    reporter = progress.reporter or Reporter()
    metadata = metadata or {}
    ckpt_path = run_dir / CHECKPOINT
    ckpt = (
        _load_checkpoint(ckpt_path, torch.device("cpu"))
        if opts.resume and ckpt_path.is_file()
        else None
    )
    # a resumed run keeps the memory format it started in (checkpoints before it was recorded:
    # channels-last, the only one then), so that it resumes exactly
    t = _prepare(
        model,
        splits,
        recipe,
        opts,
        None
        if ckpt is None
        else ckpt.get("memory_format", {"memory_format": "channels-last", "how": "resumed"}),
    )
    if teacher is not None:
        metadata = metadata | {"distillation": teacher.settings()}
        t.teacher = Teacher(
            to_device(teacher.model, t.device, t.memory_format["memory_format"] == "channels-last")
            .eval()
            .requires_grad_(False),
            teacher.temperature,
            teacher.weight,
        )
    fingerprint = json.dumps(
        {"recipe": asdict(recipe), "seed": opts.seed, "world": t.world} | metadata,
        sort_keys=True,
        default=str,
    )
    start_epoch, history = 0, []
    if ckpt is not None:
        start_epoch, history = _resume(t, ckpt, ckpt_path, fingerprint)
        logger.info("resuming %s after epoch %d", run_dir, start_epoch)
    _wrap(t, opts)

    reporter.start(progress.title, recipe.epochs, len(t.train_loader), start_epoch)
    try:
        for epoch in range(start_epoch, recipe.epochs):
            history.append(_train_epoch(t, recipe, epoch, reporter))
            if t.rank == 0:
                _save_checkpoint(ckpt_path, t, epoch + 1, history, fingerprint)
    finally:
        reporter.close()
    return _finish(t, recipe, opts, run_dir, history, metadata)


def _prepare(
    model: nn.Module,
    splits: Splits,
    recipe: Recipe,
    opts: RunOptions,
    resumed_format: dict[str, Any] | None = None,
) -> _Training:
    """The model on its device in its memory format (``resumed_format``: the interrupted run's
    choice), the loaders, the optimiser and the learning-rate schedule."""
    rank, world, device = _distributed(resolve_device(opts.device))
    amp_dtype = _amp_dtype(opts, device)
    _seed_all(opts.seed)
    train_loader = BatchLoader(
        splits.train,
        recipe.batch_size,
        train=True,
        augment=recipe.augment,
        device=device,
        seed=opts.seed,
        shard=(rank, world),
    )
    if len(train_loader) == 0:
        raise PrunesearchError(
            f"{len(splits.train)} training images make no batch of {recipe.batch_size}"
        )
    total_steps = recipe.epochs * len(train_loader)
    fmt = resumed_format or _choose_format(
        model, train_loader, recipe, total_steps, device, amp_dtype, world
    )
    channels_last = fmt["memory_format"] == "channels-last"
    model = to_device(model, device, channels_last)
    train_loader.channels_last = channels_last
    eval_loaders = {
        name: BatchLoader(
            data, recipe.eval_batch_size, train=False, device=device, channels_last=channels_last
        )
        for name, data in (("val", splits.val), ("test", splits.test))
        if data is not None
    }
    optimizer = torch.optim.SGD(
        model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(recipe, step / total_steps)
    )
    bn_weights = [
        m.weight
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None
    ]
    return _Training(
        model=model,
        net=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16),
        train_loader=train_loader,
        eval_loaders=eval_loaders,
        bn_weights=bn_weights,
        device=device,
        amp_dtype=amp_dtype,
        rank=rank,
        world=world,
        memory_format=fmt,
    )


# The training memory format, chosen per run (``train.channels_last: auto``). Channels-last
# trains the unpruned resnet20 1.35x faster on this project's CPU but pruned specs 4-21% slower
# (BENCHMARKS.md), and the sign depends on the widths, the device and oneDNN's kernels: no rule
# the benchmark supports, so each run measures both on its own model and batch.
PROBE_STEPS = 2  # timed training steps per format and round (one untimed step first)
PROBE_ROUNDS = 4  # rounds alternate the formats, so that a drift in the load hits both
PROBE_MIN_STEPS = 200  # a shorter run keeps channels-last: its 18 probe steps would cost > 9%


def _choose_format(
    model: nn.Module,
    loader: BatchLoader,
    recipe: Recipe,
    total_steps: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    world: int,
) -> dict[str, Any]:
    """The training memory format and how it was chosen: the space's setting, or (``auto``)
    the faster one in a short probe, or channels-last for a run too short to probe."""
    if isinstance(recipe.channels_last, bool):
        return {
            "memory_format": "channels-last" if recipe.channels_last else "nchw",
            "how": "train.channels_last",
        }
    if total_steps < PROBE_MIN_STEPS:
        return {
            "memory_format": "channels-last",
            "how": f"default: {total_steps} steps are too few to probe (< {PROBE_MIN_STEPS})",
        }
    x, y = next(iter(loader))
    ms = _probe_formats(model, x, y, recipe, device, amp_dtype)
    # every rank sums the same timings and so makes the same choice
    ms = dict(zip(ms, _sum_across(list(ms.values()), world, device), strict=True))
    chosen = min(ms, key=ms.get)
    logger.info(
        "training in %s: %s ms per step measured",
        chosen,
        ", ".join(f"{k} {v / world:.1f}" for k, v in ms.items()),
    )
    return {
        "memory_format": chosen,
        "how": "probe",
        "ms_per_step": {k: round(v / world, 3) for k, v in ms.items()},
        "probe_steps": 1 + PROBE_ROUNDS * PROBE_STEPS,
    }


def _probe_formats(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    recipe: Recipe,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> dict[str, float]:
    """Milliseconds of a training step (forward, loss, backward, SGD step) of copies of
    ``model`` in NCHW and in channels-last (with the oneDNN guard) on the batch ``x``: the
    fastest of the timed steps, as other work on the machine only ever adds time to a step.
    The RNG streams are left as they were: the run that follows is the one it would be
    unprobed."""
    state = _rng_state()
    steps = {}
    for fmt in MEMORY_FORMATS:
        cl = fmt == "channels-last"
        net = to_device(copy.deepcopy(model), device, cl).train()
        opt = torch.optim.SGD(
            net.parameters(),
            lr=recipe.lr,
            momentum=recipe.momentum,
            weight_decay=recipe.weight_decay,
        )
        xf = x.contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)

        def step(net=net, opt=opt, xf=xf) -> None:
            with _autocast(device, amp_dtype):
                loss = F.cross_entropy(net(xf).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        steps[fmt] = step
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    samples: dict[str, list[float]] = {fmt: [] for fmt in steps}
    for r in range(PROBE_ROUNDS):
        for fmt, step in steps.items():
            samples[fmt] += time_calls(
                step, warmup=int(r == 0), repeats=PROBE_STEPS, max_seconds=None, sync=sync
            )
    _set_rng_state(state)
    return {fmt: 1e3 * min(s) for fmt, s in samples.items()}


def _resume(
    t: _Training, ckpt: dict[str, Any], ckpt_path: Path, fingerprint: str
) -> tuple[int, list[dict]]:
    """Restores the state of the last finished epoch; returns (epochs done, their history)."""
    if ckpt.get("fingerprint") != fingerprint:
        raise PrunesearchError(
            f"{ckpt_path} was written by a different configuration; "
            "resume with the same options, or use another --out"
        )
    t.model.load_state_dict(ckpt["model"])
    t.optimizer.load_state_dict(ckpt["optimizer"])
    t.scheduler.load_state_dict(ckpt["scheduler"])
    _set_rng_state(ckpt["rng"])
    return int(ckpt["epoch"]), list(ckpt["history"])


def _wrap(t: _Training, opts: RunOptions) -> None:
    """``t.net``: the model compiled (``opts.compile``) and wrapped in DDP under torchrun."""
    if opts.compile:
        t.net = torch.compile(t.net)
    if t.world > 1:
        t.net = nn.parallel.DistributedDataParallel(
            t.net, device_ids=[t.device.index] if t.device.type == "cuda" else None
        )


def _train_epoch(t: _Training, recipe: Recipe, epoch: int, reporter: Reporter) -> dict[str, Any]:
    """One epoch of SGD (with the slimming subgradient); its history record."""
    t.net.train()
    t.train_loader.set_epoch(epoch)
    loss_sum, correct, seen = 0.0, 0, 0
    t0 = time.perf_counter()
    for i, (x, y) in enumerate(t.train_loader):
        with _autocast(t.device, t.amp_dtype):
            out = t.net(x)
            loss = _loss(t, x, out, y)
        if not torch.isfinite(loss):
            raise PrunesearchError(
                f"training diverged: loss is {loss.item()} at epoch {epoch + 1}, batch "
                f"{i + 1}; lower the learning rate (now {t.scheduler.get_last_lr()[0]:.4g})"
            )
        t.optimizer.zero_grad(set_to_none=True)
        t.scaler.scale(loss).backward()
        if recipe.sparsity:
            # network slimming: subgradient of sparsity * |gamma| (L1 on BN scales)
            for w in t.bn_weights:
                w.grad.add_(torch.sign(w.detach()), alpha=recipe.sparsity)
        t.scaler.step(t.optimizer)
        t.scaler.update()
        t.scheduler.step()
        batch_correct = (out.argmax(1) == y).sum().item()
        loss_sum += loss.item() * len(y)
        correct += batch_correct
        seen += len(y)
        reporter.batch(epoch, i, loss.item(), batch_correct / len(y))
    seconds = time.perf_counter() - t0
    loss_sum, correct, seen = _sum_across([loss_sum, correct, seen], t.world, t.device)
    record = {
        "epoch": epoch + 1,
        "train_loss": loss_sum / seen,
        "train_accuracy": correct / seen,
        "lr": t.scheduler.get_last_lr()[0],
        "seconds": round(seconds, 3),
        "images_per_s": round(seen / seconds, 1),
        "images": int(seen),  # training images seen (a cost: images x MACs per image)
    }
    if "val" in t.eval_loaders:
        record["val_loss"], record["val_accuracy"] = evaluate(
            _unwrap(t.model), t.eval_loaders["val"], t.amp_dtype
        )
    reporter.epoch(epoch, record)
    return record


def _loss(t: _Training, x: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy, or with a teacher the distillation loss on the same (augmented) batch."""
    if t.teacher is None:
        return F.cross_entropy(out.float(), y)
    with torch.no_grad():
        soft = t.teacher.model(x).float()
    return distillation_loss(out.float(), soft, y, t.teacher.temperature, t.teacher.weight)


def _finish(
    t: _Training,
    recipe: Recipe,
    opts: RunOptions,
    run_dir: Path,
    history: list[dict[str, Any]],
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """Test accuracy and the run's metrics; rank 0 writes the weights and metrics.json."""
    test_loss, test_acc = evaluate(_unwrap(t.model), t.eval_loaders["test"], t.amp_dtype)
    metrics = {
        "epochs": recipe.epochs,
        "history": history,
        "test_loss": test_loss,
        "test_accuracy": test_acc,
        "val_accuracy": history[-1].get("val_accuracy") if history else None,
        "train_seconds": round(sum(h["seconds"] for h in history), 2),
        "images_per_s": round(sum(h["images_per_s"] for h in history) / len(history), 1)
        if history
        else None,
        "world_size": t.world,
        "device": str(t.device),
        "amp": str(t.amp_dtype) if t.amp_dtype else None,
        "memory_format": t.memory_format,
        "recipe": asdict(recipe),
        "seed": opts.seed,
    } | metadata
    if t.rank == 0:
        save_weights(
            t.model,
            run_dir / WEIGHTS,
            metadata | {"recipe": asdict(recipe), "seed": opts.seed},
        )
        atomic_write_json(run_dir / METRICS, metrics)
    if t.world > 1:
        dist.barrier()
    return metrics


def _save_checkpoint(
    path: Path, t: _Training, epoch: int, history: list[dict[str, Any]], fingerprint: str
) -> None:
    import io

    buf = io.BytesIO()
    torch.save(
        {
            "format": CKPT_FORMAT,
            "epoch": epoch,
            "model": _unwrap(t.model).state_dict(),
            "optimizer": t.optimizer.state_dict(),
            "scheduler": t.scheduler.state_dict(),
            "history": history,
            "rng": _rng_state(),
            "fingerprint": fingerprint,
            "memory_format": t.memory_format,
        },
        buf,
    )
    atomic_write_bytes(path, buf.getvalue())
