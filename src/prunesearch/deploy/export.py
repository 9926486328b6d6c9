"""``prunesearch export``: a trained run folder -> a verified ONNX or ``torch.export`` file and
its model card.

1. The run folder of ``train-arch`` (or ``train-base``) gives the model: its weights
   (``model.safetensors``, with the spec in the metadata), ``metrics.json`` and ``config.json``.
2. The model is exported on CPU in float32, NCHW: ONNX through torch's exporter
   (``torch.onnx.export(..., dynamo=True)``, opset :data:`OPSET`), or ``torch.export`` saved as
   ``.pt2``; the batch dimension fixed or dynamic.
3. The export is **verified** before anything is written: run (onnxruntime, or
   ``torch.export.load``) on real validation images of the run's data and compared with the
   PyTorch model: the largest absolute logit difference must stay within :data:`TOLERANCE` of
   the logit scale, and top-1 must agree on every image except near-ties (a reference top-2
   margin within the tolerance). A failure is an error and leaves no file.
4. Beside the file, the model card (:mod:`prunesearch.deploy.model_card`): ``model.json`` and
   ``MODEL.md``, with the architecture, accuracy, recipe, search provenance, the
   verification and the measured latency of the model and of its base.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import logging
import math
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunesearch.allow_import import AllowImport
from prunesearch.deploy.model_card import card_data, dataset_text, render_card
from prunesearch.deploy.trained_run import TrainedRun, load_run
from prunesearch.errors import PrunesearchError, first_line, shown
from prunesearch.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text
from prunesearch.latency.measure import (
    MAX_BATCH,
    REPEATS,
    THROUGHPUT_BATCH,
    Timing,
    spec_latency,
)
from prunesearch.paths import CONFIG
from prunesearch.vocab import EXPORT_FORMATS, require

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "EXPORT_FORMATS",
    "OPSET",
    "TOLERANCE",
    "ExportOptions",
    "export_run",
    "require_extra",
    "validation_images",
    "verified_export",
    "verify",
]

logger = logging.getLogger(__name__)

SUFFIXES = {"onnx": ".onnx", "pt2": ".pt2"}
# what each format needs beyond prunesearch's own dependencies: the `export` extra
EXTRA_MODULES = {"onnx": ("onnx", "onnxruntime", "onnxscript"), "pt2": ()}
OPSET = 18  # ONNX 1.13's (2022), not the exporter's default 20: older runtimes read it too
TOLERANCE = 1e-4  # largest |logit difference| allowed, relative to max(1, largest |logit|)
VERIFY_IMAGES = 256
VERIFY_CHUNK = 64  # images per run of a dynamic-batch export (after one of batch 1)


@dataclass(frozen=True)
class ExportOptions:
    """What ``prunesearch export`` was asked for."""

    format: str
    out: str | None = None  # the file (or a folder for model.<ext>); default below
    batch: str = "dynamic"  # "dynamic" or a positive integer, as text
    data_dir: str | None = None  # where the run's dataset is (default: the run's)
    verify_images: int = VERIFY_IMAGES
    device: str = "cpu"  # where latency is measured (export and checks: CPU)
    threads: int | None = None  # None: LATENCY_THREADS
    repeats: int = REPEATS
    latency_batch: int = THROUGHPUT_BATCH
    allow_import: AllowImport = field(default=False)
    latency: bool = True  # measure the latency (--no-latency: the card says not measured)


# torch threads of the latency measurement unless --threads says otherwise: one thread cannot
# oversubscribe a busy machine (torch's default, all cores, timed a 1 ms net at 125-372 ms)
LATENCY_THREADS = 1


def require_extra(fmt: str) -> None:
    """Refuses a format whose packages are not installed, naming the extra that has them."""
    require("format", fmt, EXPORT_FORMATS)
    missing = []
    for name in EXTRA_MODULES[fmt]:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise PrunesearchError(
            f"--format {fmt} needs the export extra (missing: "
            f"{', '.join(missing)}): pip install 'prunesearch[export]'"
        )


def _check_options(options: ExportOptions) -> int | None:
    """Every option checked before any work; returns the batch (None: dynamic)."""
    require_extra(options.format)
    batch = None
    if options.batch != "dynamic":
        try:
            batch = int(options.batch)
        except ValueError:
            batch = 0
        if not 1 <= batch <= MAX_BATCH:
            raise PrunesearchError(
                f"--batch must be an integer in 1..{MAX_BATCH} or 'dynamic', "
                f"got {shown(options.batch)}"
            )
    for flag, value, low, high in (
        ("--verify-images", options.verify_images, 1, None),
        ("--latency-batch", options.latency_batch, 1, MAX_BATCH),
        ("--repeats", options.repeats, 1, None),
        ("--threads", options.threads, 1, None),
    ):
        if value is not None and (value < low or (high is not None and value > high)):
            bounds = f"in {low}..{high}" if high else f">= {low}"
            raise PrunesearchError(f"{flag} must be {bounds}, got {value}")
    return batch


def _out_path(run_dir: Path, options: ExportOptions) -> Path:
    suffix = SUFFIXES[options.format]
    if options.out is None:
        return run_dir / f"export-{options.format}" / f"model{suffix}"
    out = Path(options.out)
    if out.is_dir() or options.out.endswith(("/", os.sep)) or not out.suffix:
        return out / f"model{suffix}"  # a folder, created if it does not exist yet
    if out.suffix != suffix:
        raise PrunesearchError(f"--out {out}: a {options.format} export is a {suffix} file")
    return out


# -- the trained run ---------------------------------------------------------------------------


def validation_images(run: TrainedRun, data_dir: str | None, n: int) -> tuple[Any, str]:
    """Up to ``n`` images of the run's validation split (its test split when the space holds
    none out), normalised as training normalises them: (tensor N x C x H x W, where from).
    The user's own data is read from where the run recorded it (absolute), and refused when it
    is not what the run read (another folder, or the same one changed)."""
    from prunesearch.data.datasets import load_train_test, split_validation, validation_size
    from prunesearch.data.loader import BatchLoader
    from prunesearch.space import space_from_dict
    from prunesearch.training.runs import check_same_source

    space = space_from_dict(run.config.get("space"), f"{run.run_dir}/config.json space")
    d = space.data
    where = data_dir if data_dir is not None else (run.config.get("data") or {}).get("data_dir")
    args = space.model.args
    loaded = load_train_test(
        d,
        channels=d.channels or args.get("in_channels", 3),
        num_classes=args.get("num_classes"),
        data_dir=where,
    )
    check_same_source(loaded.source, run.run_dir / CONFIG)
    name = dataset_text(d.dataset)
    val_size = validation_size(d.val_size, len(loaded.train))
    if val_size:
        images, source = split_validation(loaded.train, val_size)[1], "validation split"
    else:
        images, source = loaded.test, "test split (the space holds out no validation split)"
    images = images.subset(slice(0, n))
    if list(images.images.shape[1:]) != list(run.spec.input_shape):
        raise PrunesearchError(
            f"{name} images are {list(images.images.shape[1:])}, the "
            f"model takes {run.spec.input_shape}"
        )
    x = next(iter(BatchLoader(images, len(images), train=False)))[0]
    return x, f"{len(x)} images of the {name} {source}"


# -- export and verification -------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporters' chatter off for the block: their warnings (torchvision-less registries,
    deprecations of their own internals) and their logged tracebacks of a failed trace (the
    failure is raised, and reported once, by the caller)."""
    disabled = logging.root.manager.disable
    logging.disable(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(disabled)


def _export_bytes(model: nn.Module, input_shape: list[int], fmt: str, batch: int | None) -> bytes:
    """The serialised export, in memory (nothing is written before it is verified)."""
    import torch

    # batch 2 for a dynamic batch: torch.export specialises a dimension traced at size 1
    example = (torch.zeros(batch or 2, *input_shape),)
    dynamic = ({0: torch.export.Dim("batch", min=1)},) if batch is None else None
    try:
        with _quiet_exporter(), torch.no_grad():
            if fmt == "onnx":
                program = torch.onnx.export(
                    model,
                    example,
                    dynamo=True,
                    opset_version=OPSET,
                    input_names=["images"],
                    output_names=["logits"],
                    dynamic_shapes=dynamic,
                    external_data=False,
                    verbose=False,
                )
                return program.model_proto.SerializeToString()
            exported = torch.export.export(model, example, dynamic_shapes=dynamic)
            buf = io.BytesIO()
            torch.export.save(exported, buf)
            return buf.getvalue()
    except Exception as exc:  # the exporter's refusal, in its words
        text = re.sub(r"\x1b\[[0-9;]*m", "", first_line(exc))  # the exporter's colours
        raise PrunesearchError(
            f"{fmt} export of {type(model).__name__} failed: {text[:300]}"
        ) from None


def _runner(blob: bytes, fmt: str):
    """A function running the export held in ``blob`` on a CPU tensor, and its runtime's name."""
    import torch

    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return (
            lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0]),
            f"onnxruntime {ort.__version__} (CPUExecutionProvider)",
        )
    with _quiet_exporter():
        module = torch.export.load(io.BytesIO(blob)).module()
    return module, f"torch.export.load (torch {torch.__version__})"


def _chunks(n: int, batch: int | None) -> list[slice]:
    """The batches the export is run on: exactly ``batch`` images each when fixed; one image,
    then :data:`VERIFY_CHUNK` at a time, when dynamic (two sizes at least, if ``n`` allows)."""
    if batch is not None:
        return [slice(i, i + batch) for i in range(0, n - batch + 1, batch)]
    return [slice(0, 1)] + [slice(i, min(i + VERIFY_CHUNK, n)) for i in range(1, n, VERIFY_CHUNK)]


def verify(model: nn.Module, run_export, images: torch.Tensor, batch: int | None) -> dict[str, Any]:
    """Compares an export (``run_export``: a CPU tensor -> logits) with ``model`` on ``images``.

    Returns the numbers and ``passed``: the largest |logit difference| is within
    :data:`TOLERANCE` x max(1, largest |logit|), and top-1 agrees on every image whose
    reference top-2 margin exceeds that tolerance (closer ones are near-ties, counted apart).
    """
    import torch

    if batch is not None and len(images) < batch:  # a fixed batch larger than the images
        images = images.repeat(math.ceil(batch / len(images)), 1, 1, 1)[:batch]
    refs, outs = [], []
    with torch.inference_mode():
        for part in _chunks(len(images), batch):
            x = images[part].contiguous()
            refs.append(model(x).float())
            out = run_export(x)
            outs.append(torch.as_tensor(out).float())
    ref, out = torch.cat(refs), torch.cat(outs)
    if out.shape != ref.shape:
        return {
            "passed": False,
            "images": len(ref),
            "problem": f"the export returns {list(out.shape)} for {list(ref.shape)} logits",
        }
    diff = float((out - ref).abs().max())
    scale = float(ref.abs().max())
    tol = TOLERANCE * max(1.0, scale)
    top2 = ref.topk(min(2, ref.shape[1]), dim=1).values
    margin = top2[:, 0] - top2[:, -1] if ref.shape[1] > 1 else torch.full((len(ref),), math.inf)
    agree = out.argmax(1) == ref.argmax(1)
    near_tie = margin <= tol
    unexplained = int((~agree & ~near_tie).sum())
    passed = math.isfinite(diff) and diff <= tol and unexplained == 0
    return {
        "passed": passed,
        "images": len(ref),
        "batches": sorted({len(r) for r in refs}),
        "max_abs_logit_diff": diff,
        "logit_scale": scale,
        "tolerance": tol,
        "tolerance_rule": f"{TOLERANCE:.0e} x max(1, largest |logit|)",
        "top1_agreement": float(agree.float().mean()),
        "top1_disagreements": int((~agree).sum()),
        "near_ties": int(near_tie.sum()),
        "unexplained_disagreements": unexplained,
    }


def verified_export(
    model: nn.Module, input_shape: list[int], images: torch.Tensor, fmt: str, batch: int | None
) -> tuple[bytes, dict[str, Any]]:
    """``model`` exported in ``fmt`` and verified on ``images``, in memory: (the file's bytes,
    its description with the verification). A failed verification raises; nothing is written
    here either way."""
    import torch

    require_extra(fmt)
    blob = _export_bytes(model, input_shape, fmt, batch)
    run_export, runtime = _runner(blob, fmt)
    check = verify(model, run_export, images, batch) | {"runtime": runtime}
    if not check["passed"]:
        raise PrunesearchError(
            f"verification of the {fmt} export failed, nothing written: " + _failure(check)
        )
    info = {
        "format": fmt,
        "bytes": len(blob),
        "sha256": hashlib.sha256(blob).hexdigest(),
        "batch": "dynamic" if batch is None else batch,
        "input": {
            "name": "images" if fmt == "onnx" else "x",
            "dtype": "float32",
            "shape": ["batch" if batch is None else batch, *input_shape],
            "memory_format": "NCHW",
        },
        "output": {"name": "logits", "dtype": "float32"},
        "exporter": f"torch.onnx.export(dynamo=True), opset {OPSET}, torch {torch.__version__}"
        if fmt == "onnx"
        else f"torch.export, torch {torch.__version__}",
    }
    if fmt == "onnx":
        info["opset"] = OPSET
    return blob, info | {"verification": check}


def _failure(check: dict[str, Any]) -> str:
    if "problem" in check:
        return check["problem"]
    return (
        f"max |logit diff| {check['max_abs_logit_diff']:.3g} (tolerance "
        f"{check['tolerance']:.3g}), top-1 agreement {check['top1_agreement']:.2%} with "
        f"{check['unexplained_disagreements']} disagreement(s) that are not near-ties, on "
        f"{check['images']} images"
    )


def export_run(
    run_dir: str | Path, options: ExportOptions, training_cost: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``prunesearch export``: the run's model exported, verified, its card written beside.

    Every input is checked before anything is written. ``training_cost``: what training the
    model cost (``prunesearch family``'s bill), shown in the card. Returns the card's data with
    the paths written (``path``, ``card``, ``card_json``).
    """
    fmt = options.format
    batch = _check_options(options)
    run_dir = Path(run_dir)
    run = load_run(run_dir, options.allow_import)
    path = _out_path(run_dir, options)
    if path.exists() and not path.is_file():
        raise PrunesearchError(f"--out {path}: exists and is not a file")
    images, source = validation_images(run, options.data_dir, options.verify_images)
    blob, exported = verified_export(run.model, list(run.spec.input_shape), images, fmt, batch)
    exported["verification"]["images_from"] = source
    exported["file"] = path.name
    logger.info(
        "verified the %s export: max |logit diff| %.2e, top-1 agreement %.2f%%",
        fmt,
        exported["verification"]["max_abs_logit_diff"],
        100 * exported["verification"]["top1_agreement"],
    )
    latency = None
    if options.latency:
        threads = options.threads or LATENCY_THREADS
        logger.info("measuring latency (%d thread(s))", threads)
        latency = spec_latency(
            run.spec,
            batches=(1, options.latency_batch),
            device=options.device,
            n_threads=threads,
            timing=Timing(repeats=options.repeats),
            model=run.model,
            with_base=run.spec.flops < run.spec.base_flops,
        )
    card = card_data(run, exported, latency)
    if training_cost:
        card["training_cost"] = training_cost
    atomic_write_bytes(path, blob)  # the card last: a card always describes a file beside it
    card_json = atomic_write_json(path.parent / "model.json", card)
    card_md = atomic_write_text(path.parent / "MODEL.md", render_card(card))
    return card | {"path": str(path), "card": str(card_md), "card_json": str(card_json)}


# -- the model card ----------------------------------------------------------------------------
