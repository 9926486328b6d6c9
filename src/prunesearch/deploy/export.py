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
4. Beside the file, the model card: ``model.json`` (:func:`card_data`) and ``MODEL.md``
   (:func:`render_card`), with the architecture, accuracy, recipe, search provenance, the
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
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunesearch.allow_import import AllowImport, import_permission
from prunesearch.errors import PrunesearchError, first_line, shown
from prunesearch.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json
from prunesearch.latency.measure import (
    MAX_BATCH,
    REPEATS,
    THROUGHPUT_BATCH,
    Timing,
    latency_table,
    spec_latency,
)
from prunesearch.paths import CONFIG, METRICS, WEIGHTS
from prunesearch.spec import ArchSpec, build, package_versions
from prunesearch.vocab import EXPORT_FORMATS, require

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "EXPORT_FORMATS",
    "OPSET",
    "TOLERANCE",
    "ExportOptions",
    "TrainedRun",
    "card_data",
    "export_run",
    "load_run",
    "render_card",
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
CARD_FORMAT = "prunesearch.model-card/v1"


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


@dataclass
class TrainedRun:
    """A finished training run folder, read: its model (weights loaded, eval mode), the spec it
    trains (for a base run: the unpruned widths), and its files' contents."""

    run_dir: Path
    model: nn.Module
    spec: ArchSpec
    meta: dict[str, Any]
    metrics: dict[str, Any]
    config: dict[str, Any]


def load_run(run_dir: str | Path, allow_import: AllowImport = False) -> TrainedRun:
    """Reads a ``train-arch`` or ``train-base`` run folder and rebuilds its trained model.

    Raises:
        PrunesearchError: not a finished training run, or weights that do not fit the model.
    """
    import torch

    from prunesearch.models import create_model
    from prunesearch.training.loop import load_weights

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PrunesearchError(f"run folder not found: {run_dir}")
    weights = run_dir / WEIGHTS
    if not weights.is_file():
        raise PrunesearchError(
            f"{run_dir} has no model.safetensors: export takes the folder "
            "of a finished train-arch or train-base run"
        )
    for name in (METRICS, CONFIG):
        if not (run_dir / name).is_file():
            raise PrunesearchError(f"{run_dir} has no {name}: not a finished training run")
    state, meta = load_weights(weights)
    metrics = read_json(run_dir / METRICS, "metrics")
    config = read_json(run_dir / CONFIG, "run config")
    if not isinstance(metrics.get("test_accuracy"), float | int):
        raise PrunesearchError(
            f"{run_dir}/metrics.json has no test_accuracy: not the metrics of "
            "a finished training run"
        )
    if meta.get("spec") is not None:
        spec = ArchSpec.from_dict(meta["spec"], allow_import=allow_import)
        model = build(spec)
    else:
        if not isinstance(meta.get("model"), str) or not isinstance(meta.get("model_args"), dict):
            raise PrunesearchError(f"{weights}: its metadata names no model")
        permission = import_permission(allow_import, meta["model"])
        model = create_model(meta["model"], allow_import=permission, **meta["model_args"])
        graph = _trace(model, meta.get("input_shape"), weights)
        spec = ArchSpec.from_graph(graph, {}, model=meta["model"], model_args=meta["model_args"])
        spec.allow_import = permission
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise PrunesearchError(
            f"{weights} does not fit {spec.model}: {first_line(exc)[:200]}"
        ) from None
    model = model.to(torch.float32).eval()
    return TrainedRun(run_dir, model, spec, meta, metrics, config)


def _trace(model: nn.Module, shape: Any, where: Path):
    import torch

    from prunesearch.engine.graph import trace
    from prunesearch.spec import check_input_shape

    if not isinstance(shape, list) or not all(isinstance(s, int) and s > 0 for s in shape):
        raise PrunesearchError(f"{where}: its metadata has no valid input_shape")
    check_input_shape(shape, f"{where}: input_shape")
    return trace(model, torch.zeros(1, *shape))


def validation_images(run: TrainedRun, data_dir: str | None, n: int) -> tuple[Any, str]:
    """Up to ``n`` images of the run's validation split (its test split when the space holds
    none out), normalised as training normalises them: (tensor N x C x H x W, where from).
    The user's own data is read from where the run recorded it (absolute), and refused when it
    is not what the run read (another folder, or the same one changed)."""
    from prunesearch.data.datasets import load_train_test, split_validation
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
    if d.val_size:
        images, source = split_validation(loaded.train, d.val_size)[1], "validation split"
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


def dataset_text(dataset: Any) -> str:
    """A space's ``data.dataset`` in words: the built-in name, or ``folder /abs/path``."""
    if isinstance(dataset, dict):
        kind = next((k for k in ("folder", "arrays", "callable") if k in dataset), "?")
        return f"{kind} {dataset.get(kind)}"
    return str(dataset)


def preprocessing(run: TrainedRun) -> dict[str, Any] | None:
    """What an input must go through before the model (the card's ``preprocessing``): image
    size, channel order, mean, std (of x / 255), resize rule, class names."""
    source = run.config.get("data_source")
    if isinstance(source, dict):
        keys = ("image_size", "channels", "channel_order", "mean", "std", "resize", "classes")
        return {k: source.get(k) for k in keys}
    from prunesearch.data.datasets import DATASETS

    info = DATASETS.get(str(((run.config.get("space") or {}).get("data") or {}).get("dataset")))
    if info is None:
        return None
    c, h, w = info.shape
    return {
        "image_size": [h, w],
        "channels": c,
        "channel_order": "RGB" if c == 3 else "L",
        "mean": list(info.mean),
        "std": list(info.std),
        "resize": "none (the dataset's own size)",
        "classes": None,
    }


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


def _versions() -> dict[str, str]:
    out = package_versions()
    for pkg in ("onnx", "onnxruntime", "onnxscript"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


def card_data(
    run: TrainedRun, exported: dict[str, Any], latency: dict[str, Any] | None
) -> dict[str, Any]:
    """The model card's content as plain data (``model.json``; ``latency`` None: not
    measured)."""
    summary = run.spec.summary()
    m, meta = run.metrics, run.meta
    search = (run.spec.search or {}) if meta.get("spec") is not None else {}
    budget = run.spec.budget if meta.get("spec") is not None else None
    return {
        "format": CARD_FORMAT,
        "model": run.spec.model,
        "model_args": run.spec.model_args,
        "input_shape": list(run.spec.input_shape),
        "run": {
            "folder": str(run.run_dir),
            "kind": meta.get("kind"),
            "space": meta.get("space"),
            "dataset": dataset_text(
                ((run.config.get("space") or {}).get("data") or {}).get("dataset")
            ),
            "limit_train": (run.config.get("data") or {}).get("limit_train"),
            "seed": m.get("seed"),
            "epochs": m.get("epochs"),
            "recipe": m.get("recipe"),
            "memory_format": m.get("memory_format"),
            "train_seconds": m.get("train_seconds"),
            "device": m.get("device"),
        },
        "accuracy": {"test": m.get("test_accuracy"), "val": m.get("val_accuracy")},
        "preprocessing": preprocessing(run),
        "architecture": {
            k: summary[k]
            for k in (
                "flops",
                "base_flops",
                "flops_ratio",
                "params",
                "base_params",
                "flop_counter",
                "groups",
            )
        },
        "search": {
            "budget": (budget or {}).get("text"),
            **{
                k: search.get(k)
                for k in (
                    "objective",
                    "signal",
                    "trial",
                    "score",
                    "trials",
                    "study",
                    "granularity",
                    "baseline",
                    "base_checkpoint_sha256",
                )
            },
        }
        if search
        else None,
        "export": {k: v for k, v in exported.items() if k != "verification"},
        "verification": exported["verification"],
        "latency": latency,
        "versions": _versions(),
    }


def _preprocessing_lines(p: dict[str, Any] | None) -> list[str]:
    if not p:
        return []
    lines = [
        "## Preprocessing",
        "",
        f"- **Input**: {p['image_size'][0]}x{p['image_size'][1]}, {p['channels']} channel(s) "
        f"({p['channel_order']}), resized by: {p['resize']}.",
        f"- **Normalisation**: (x / 255 - mean) / std per channel, mean {p['mean']}, std "
        f"{p['std']}.",
    ]
    if p.get("classes"):
        shown_classes = ", ".join(f"{i}: {c}" for i, c in enumerate(p["classes"][:50]))
        more = f" (and {len(p['classes']) - 50} more)" if len(p["classes"]) > 50 else ""
        lines.append(f"- **Classes** (logit index: name): {shown_classes}{more}.")
    return [*lines, ""]


def _md_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]


def render_card(card: dict[str, Any]) -> str:
    """``MODEL.md``: the card as Markdown."""
    a, r, e, v, lat = (
        card["architecture"],
        card["run"],
        card["export"],
        card["verification"],
        card["latency"],
    )
    acc = card["accuracy"]
    lines = [
        f"# {card['model']} ({r['kind']} run of {r['space']})",
        "",
        f"- **File**: `{e['file']}` ({e['format']}, {e['bytes']:,} bytes, sha256 "
        f"`{e['sha256'][:16]}...`), input `{e['input']['name']}` float32 "
        f"{' x '.join(map(str, e['input']['shape']))} (NCHW), output `logits`; "
        f"{e['exporter']}.",
        f"- **Test accuracy**: {_pct(acc['test'])} (validation {_pct(acc['val'])}) on "
        f"{r['dataset']}"
        + (
            f", trained on the first {r['limit_train']:,} training images"
            if r.get("limit_train")
            else ""
        )
        + ".",
        f"- **Cost**: {a['flops']:,} FLOPs ({a['flops_ratio']:.1%} of the base's "
        f"{a['base_flops']:,}; fvcore: 1 multiply-add = 1), {a['params']:,} params (base "
        f"{a['base_params']:,}).",
        f"- **Training**: {r['epochs']} epoch(s), seed {r['seed']}, "
        + _recipe(r.get("recipe") or {})
        + _format_text(r.get("memory_format"))
        + ".",
        "",
    ]
    lines += _preprocessing_lines(card.get("preprocessing"))
    s = card.get("search")
    if s:
        lines += [
            "## Search provenance",
            "",
            f"Budget {s['budget']}, objective `{s['objective']}`, signal `{s['signal']}`, "
            f"trial {s['trial']} of {s['trials']} (score {_num(s['score'])}), study "
            f"`{s['study']}`, granularity {s['granularity']}"
            + (f"; the `{s['baseline']}` baseline's architecture" if s.get("baseline") else "")
            + f"; base checkpoint sha256 `{str(s['base_checkpoint_sha256'])[:16]}...`.",
            "",
        ]
    lines += [
        "## Verification",
        "",
        f"{v['runtime']} against the PyTorch model on {v['images_from']}, in batches of "
        f"{', '.join(map(str, v['batches']))}: max |logit difference| "
        f"{v['max_abs_logit_diff']:.3g} (tolerance {v['tolerance']:.3g}: "
        f"{v['tolerance_rule']}), top-1 agreement {v['top1_agreement']:.2%} "
        f"({v['near_ties']} near-ties). **{'Passed' if v['passed'] else 'FAILED'}.**",
        "",
    ]
    lines += [*_cost_lines(card.get("training_cost")), "## Latency", "", *_latency_lines(lat)]
    if a["flops"] < a["base_flops"]:
        lines += ["", "## Widths against the base", ""]
        lines += _md_table(
            ["group", "base", "width", "keep"],
            [[g["group"], g["base"], g["width"], f"{g['keep_ratio']:.0%}"] for g in a["groups"]],
        )
    lines += ["", "Versions: " + ", ".join(f"{k} {val}" for k, val in card["versions"].items()), ""]
    return "\n".join(lines)


def _latency_lines(lat: dict[str, Any] | None) -> list[str]:
    if lat is None:
        return ["Not measured (exported with `--no-latency`)."]
    lines = [
        f"PyTorch eager inference on {lat['device']}, {lat['threads']} thread(s), torch "
        f"{lat['torch']}: median ms per image (25th-75th percentile over "
        f"{lat['repeats']} repeats after {lat['warmup']} warm-up calls), for this model "
        "(`spec`)" + (" and its unpruned base." if lat["speedup"] else "."),
        "",
    ]
    return lines + _md_table(
        ["model", "memory format", *(f"batch {b}" for b in lat["batches"])], latency_table(lat)
    )


def _cost_lines(cost: dict[str, Any] | None) -> list[str]:
    """The card's "Training cost" block (``prunesearch family``'s bill; none for export)."""
    if not cost:
        return []
    teacher = f" + teacher {cost['teacher_macs']:.3g}" if cost.get("teacher_macs") else ""
    return [
        "## Training cost",
        "",
        f"{cost['train_macs']:.3g} training MACs{teacher} ({cost['factor']}), "
        f"{cost['x_base']:.3f}x the base's training and {cost['x_scratch_b']:.3f}x this "
        f"architecture's Scratch-B; {cost['epochs']} epoch(s), {cost['images']:,} images, "
        f"{cost['train_seconds']} s of training.",
        "",
    ]


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _num(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def _recipe(recipe: dict[str, Any]) -> str:
    keys = ("lr", "momentum", "weight_decay", "schedule", "batch_size", "augment")
    return "SGD " + ", ".join(f"{k} {recipe[k]}" for k in keys if k in recipe)


def _format_text(choice: Any) -> str:
    if not isinstance(choice, dict):
        return ""
    return f"; trained in {choice.get('memory_format')} ({choice.get('how')})"
