"""The base a search starts from, read from whatever file the user trained it into.

``--base`` accepts a prunesearch base (``model.safetensors`` of ``train-base``), a plain
safetensors file, a ``torch.save(model.state_dict())`` file (``.pt``/``.pth``, read with
``weights_only=True``) or a checkpoint dict holding one under a usual key. The format is told
by the file's first bytes, not its name. :func:`load_base` unwraps and un-prefixes the state
dict (DDP's ``module.``, torch.compile's ``_orig_mod.``), checks its keys and shapes against
the space's model and names the first mismatches; :func:`base_accuracy` measures the base on
the validation split, so that a user sees at once whether weights, data and normalisation fit.
"""

from __future__ import annotations

import logging
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunesearch.data.datasets import ImageData
from prunesearch.data.loader import BatchLoader
from prunesearch.errors import PrunesearchError, first_line, shown
from prunesearch.fileio import file_digest
from prunesearch.paths import WEIGHTS
from prunesearch.space import Space
from prunesearch.training.loop import WEIGHTS_FORMAT, evaluate, load_weights

__all__ = ["BaseWeights", "base_accuracy", "base_epochs", "load_base", "load_space_base"]

logger = logging.getLogger(__name__)

STATE_KEYS = ("state_dict", "model_state_dict", "model", "net")  # where checkpoints keep it
PREFIXES = ("module.", "_orig_mod.")  # DDP / DataParallel, torch.compile
SHOWN_MISMATCHES = 3
ACCEPTED = (
    "--base takes a prunesearch base (the folder of `prunesearch train-base`), a safetensors "
    "file, or a file of torch.save(model.state_dict(), PATH) (.pt/.pth)"
)
_TOLERATED = "num_batches_tracked"  # a BN buffer older code and some exporters leave out


@dataclass(frozen=True)
class BaseWeights:
    """A base's state dict, ready for the space's model, and where it came from.

    Attributes:
        path: the weights file.
        state: the state dict (every key of the model, shapes checked).
        meta: prunesearch's metadata (``recipe``, ``model``...); empty for a foreign base.
        source: how it was read: ``prunesearch``, ``safetensors``, ``torch.save`` or
            ``torch.save['<key>']``, with ``+ strip '<prefix>'`` when a prefix was removed.
        sha256: the file's digest.
    """

    path: Path
    state: dict[str, torch.Tensor] = field(repr=False)
    meta: dict[str, Any]
    source: str
    sha256: str

    @property
    def foreign(self) -> bool:
        """Whether the base was trained outside prunesearch (no recipe, epochs or sparsity)."""
        return not self.meta

    def provenance(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": self.source, "sha256": self.sha256}


def load_base(
    path: str | Path,
    model: nn.Module,
    *,
    model_ref: tuple[str, dict[str, Any]] | None = None,
    num_classes: int | None = None,
) -> BaseWeights:
    """Reads ``path`` as a base of ``model`` (which is not modified).

    Args:
        path: the weights file, or a run folder holding ``model.safetensors``.
        model: a freshly built model of the space (the keys and shapes to match).
        model_ref: (name, args) a prunesearch base's metadata must name.
        num_classes: the dataset's class count (default: the model's classifier outputs).

    Raises:
        PrunesearchError: an unreadable file, a pickled whole model, a pruned or another
            model's prunesearch file, or keys and shapes that do not fit ``model``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / WEIGHTS
    if not path.is_file():
        raise PrunesearchError(f"--base {path}: no such weights file")
    kind = _sniff(path)
    if kind == "safetensors":
        state, meta, source = _read_safetensors(path, model_ref)
    else:
        (state, source), meta = _read_torch(path), {}
    state, stripped = _strip_prefixes(state, model.state_dict())
    if stripped:
        source += f" + strip {stripped!r}"
    state = _check_fits(path, state, model, num_classes)
    logger.debug("--base %s read as %s", path, source)
    return BaseWeights(path, state, meta, source, file_digest(path))


def load_space_base(path: str | Path, space: Space) -> BaseWeights:
    """:func:`load_base` for the space's model."""
    return load_base(path, space.create_model(), model_ref=(space.model.name, space.model.args))


def base_epochs(base: BaseWeights, given: int | None, space: Space) -> tuple[int, str]:
    """The epochs the base was trained for (Scratch-B's budget starts from them) and where
    that number comes from: ``--base-epochs``, the base's own recipe, or the space's epochs
    (a base trained elsewhere that did not say), logged."""
    if given is not None:
        if given < 1:
            raise PrunesearchError(f"--base-epochs must be >= 1, got {given}")
        epochs, how = given, "--base-epochs"
    elif (base.meta.get("recipe") or {}).get("epochs"):
        epochs, how = int(base.meta["recipe"]["epochs"]), "the base's recipe"
    else:
        epochs, how = space.train.epochs, "the space's train.epochs"
        if base.foreign:
            how += "; --base-epochs N gives those of a base trained elsewhere"
    logger.info("base epochs for Scratch-B's budget: %d (from %s)", epochs, how)
    return epochs, how


def _sniff(path: Path) -> str:
    """``safetensors`` or ``torch`` (a zip archive or a pickle), by the first bytes."""
    with open(path, "rb") as f:
        head = f.read(9)
    size = path.stat().st_size
    if head[:4] == b"PK\x03\x04" or (head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5):
        return "torch"
    if len(head) == 9 and head[8:9] == b"{":
        n = int.from_bytes(head[:8], "little")
        if n + 8 > size:
            raise PrunesearchError(
                f"--base {path}: a safetensors file cut short ({size} bytes, its header "
                f"alone says {n + 8}); copy it again"
            )
        return "safetensors"
    raise PrunesearchError(f"--base {path}: not a weights file ({size} bytes). {ACCEPTED}")


def _read_safetensors(
    path: Path, model_ref: tuple[str, dict[str, Any]] | None
) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            ours = (f.metadata() or {}).get("format") == WEIGHTS_FORMAT
            state = {} if ours else {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except Exception as exc:  # the library's own errors: a damaged or truncated file
        raise PrunesearchError(
            f"--base {path}: a damaged or truncated safetensors file ({first_line(exc)[:120]})"
        ) from None
    if not ours:
        return state, {}, "safetensors"
    state, meta = load_weights(path)
    _check_prunesearch_meta(path, meta, model_ref)
    return state, meta, "prunesearch"


def _check_prunesearch_meta(
    path: Path, meta: dict[str, Any], model_ref: tuple[str, dict[str, Any]] | None
) -> None:
    """A prunesearch file must be a trained base (a train-arch run's pruned model is the
    natural mistake) of the model asked for."""
    if meta.get("spec") is not None or meta.get("kind", "base") != "base":
        raise PrunesearchError(
            f"--base {path} holds a pruned architecture ({meta.get('kind')} run), not a "
            "trained base: give the folder of `prunesearch train-base`"
        )
    if model_ref is not None and (meta.get("model"), meta.get("model_args")) != model_ref:
        raise PrunesearchError(
            f"--base {path} holds {shown(meta.get('model'))} {shown(meta.get('model_args'))}, "
            f"not the space's model {model_ref[0]} {shown(model_ref[1])}"
        )


def _read_torch(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """A ``torch.save`` file's state dict, loaded with ``weights_only=True``, and its source."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # weights_only refuses every class but tensors and dicts
        raise PrunesearchError(
            f"--base {path} holds pickled Python objects (a whole model?), which are not "
            "loaded for safety: save it with torch.save(model.state_dict(), PATH)"
        ) from None
    except Exception as exc:
        raise PrunesearchError(
            f"--base {path}: a damaged or truncated torch.save file "
            f"({first_line(exc).split('. ')[0][:120]})"
        ) from None
    if _is_state(obj):
        return dict(obj), "torch.save"
    if isinstance(obj, dict):
        for key in STATE_KEYS:
            if _is_state(obj.get(key)):
                return dict(obj[key]), f"torch.save[{key!r}]"
        keys = ", ".join(map(str, list(obj)[:8]))
        raise PrunesearchError(
            f"--base {path}: a dict ({keys}) with no state dict under "
            f"{', '.join(STATE_KEYS)}. {ACCEPTED}"
        )
    raise PrunesearchError(f"--base {path} holds a {type(obj).__name__}, not a state dict")


def _is_state(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _strip_prefixes(
    state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], str]:
    """The state without the wrappers' prefixes that every key has and the model's lack."""
    stripped = ""
    while True:
        ours = [p for p in PREFIXES if not any(k.startswith(p) for k in expected)]
        prefix = next((p for p in ours if state and all(k.startswith(p) for k in state)), None)
        if prefix is None:
            return state, stripped
        state = {k.removeprefix(prefix): v for k, v in state.items()}
        stripped += prefix


def _classifier(model: nn.Module) -> tuple[str, int] | None:
    """(weight key, out features) of the model's last linear layer."""
    last = None
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            last = (f"{name}.weight", m.out_features)
    return last


def _check_fits(
    path: Path, state: dict[str, torch.Tensor], model: nn.Module, num_classes: int | None
) -> dict[str, torch.Tensor]:
    """The state with the model's keys, in its order; the first mismatches named otherwise."""
    expected = model.state_dict()
    head = _classifier(model)
    if head is not None and head[0] in state and state[head[0]].dim() == 2:
        got, classes = state[head[0]].shape[0], num_classes or head[1]
        if got != classes:
            raise PrunesearchError(
                f"--base {path}: its classifier ({head[0]}) has {got} outputs but the dataset "
                f"has {classes} classes: train it for this dataset, or choose the space of its own"
            )
    missing = [k for k in expected if k not in state]
    tolerated = [k for k in missing if k.endswith(_TOLERATED)]
    missing = [k for k in missing if k not in tolerated]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {list(v.shape)} (the model's: {list(expected[k].shape)})"
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    problems = [
        f"{what} {', '.join(keys[:SHOWN_MISMATCHES])}"
        + (f" (and {len(keys) - SHOWN_MISMATCHES} more)" if len(keys) > SHOWN_MISMATCHES else "")
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape", wrong))
        if keys
    ]
    if problems:
        raise PrunesearchError(
            f"--base {path} does not fit the space's model ({type(model).__name__}): "
            + "; ".join(problems)
        )
    if tolerated:
        logger.debug("--base %s has no %s buffers: the model's are kept", path, _TOLERATED)
    return {k: state[k] if k in state else expected[k] for k in expected}


def base_accuracy(
    model: nn.Module, val: ImageData, *, batch_size: int, device: torch.device, name: str
) -> dict[str, Any]:
    """The base's accuracy on the validation split, logged (with a warning at chance level:
    weights, data or normalisation do not fit together); returns what a run folder records."""
    loader = BatchLoader(val, batch_size, train=False, device=device)
    _, acc = evaluate(model.to(device), loader)
    model.cpu()
    n, classes = len(val), val.info.num_classes
    logger.info("base %s: validation accuracy %.4f on %d images", name, acc, n)
    chance = 1 / classes
    # within three standard errors of guessing: no better than chance on this split; on a
    # split so small that the band reaches 90% no accuracy tells the two apart
    band = chance + 3 * math.sqrt(chance * (1 - chance) / max(n, 1))
    if band >= 0.9:
        logger.info("(%d validation images are too few to tell the base from chance)", n)
    elif acc < band:
        logger.warning(
            "base %s is at chance level (%.4f, %d classes): its weights, the data or the "
            "normalisation may not fit together",
            name,
            acc,
            classes,
        )
    return {"val_accuracy": round(acc, 6), "val_images": n}
