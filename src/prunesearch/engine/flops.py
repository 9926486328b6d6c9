"""FLOP and parameter counting: fvcore as the reference, an exact analytic model for search.

FLOPs in prunesearch are fvcore's count: one multiply-add = 1 (MACs), counted in eval mode
(BatchNorm counts 2 ops per element with affine parameters), at the batch size of the example
input. :class:`CostModel` evaluates the same count for any channel widths as a small polynomial
(``constant + sum(coef * size_a * size_b)``) whose terms
:mod:`prunesearch.engine.dependency` derived
from fvcore's formulas, and whose constant is calibrated once against fvcore on the base model.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from prunesearch.engine.channels import Layout, Term
from prunesearch.errors import PrunesearchError

__all__ = ["CostModel", "count_flops", "count_params", "eval_mode"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Puts every submodule in eval mode and restores each one's own flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def _as_tuple(example_input: torch.Tensor | Sequence[torch.Tensor]) -> tuple:
    return (example_input,) if isinstance(example_input, torch.Tensor) else tuple(example_input)


def count_flops(model: nn.Module, example_input: torch.Tensor | Sequence[torch.Tensor]) -> int:
    """fvcore's total FLOP count (multiply-adds) of ``model`` on ``example_input``, in eval mode.

    The model is not modified (training flags are restored).
    """
    from fvcore.nn import FlopCountAnalysis

    fvcore_logger = logging.getLogger("fvcore")
    level = fvcore_logger.level
    fvcore_logger.setLevel(logging.ERROR)
    try:
        with eval_mode(model), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            analysis = FlopCountAnalysis(model, _as_tuple(example_input))
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return int(analysis.total())
    except PrunesearchError:
        raise
    except Exception as exc:
        raise PrunesearchError(f"fvcore cannot count FLOPs of this model: {exc}") from exc
    finally:
        fvcore_logger.setLevel(level)


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters())


class CostModel:
    """``constant + sum(coef * prod(size(layout)) // div)`` over terms, vectorised over
    group widths.

    Each layout's size is linear in the group widths: ``c + sum(inner * width[g])``; a term has at
    most two layouts, so the whole count is a quadratic form evaluated with int64 numpy (exact).
    """

    def __init__(self, terms: list[Term], resolve, num_groups: int) -> None:
        index: dict[tuple, int] = {}
        rows: list[tuple[int, list[tuple[int, int]]]] = []

        def layout_index(layout: Layout) -> int:
            const, linear = resolve(layout)
            key = (const, tuple(sorted(linear)))
            if key not in index:
                index[key] = len(rows)
                rows.append((const, linear))
            return index[key]

        a_idx, b_idx, coefs, divs = [], [], [], []
        for t in terms:
            if len(t.layouts) > 2:
                raise AssertionError("cost terms have at most two layouts")
            ids = [layout_index(lay) for lay in t.layouts]
            a_idx.append(ids[0] if ids else -1)
            b_idx.append(ids[1] if len(ids) > 1 else -1)
            coefs.append(t.coef)
            divs.append(t.div)
        n = len(rows)
        self._A = np.zeros((n, num_groups), dtype=np.int64)
        self._c = np.zeros(n + 1, dtype=np.int64)
        self._c[n] = 1  # index -1 (no layout) reads size 1
        for i, (const, linear) in enumerate(rows):
            self._c[i] = const
            for g, inner in linear:
                self._A[i, g] += inner
        self._a = np.asarray(a_idx, dtype=np.int64)
        self._b = np.asarray(b_idx, dtype=np.int64)
        self._coef = np.asarray(coefs, dtype=np.int64)
        self._div = np.asarray(divs, dtype=np.int64)
        self.constant = 0

    def variable(self, widths: np.ndarray) -> int:
        """The width-dependent part of the count for a vector of group widths."""
        sizes = self._c.copy()
        sizes[:-1] += self._A @ widths
        # exact: a term's divisor (a grouped conv's groups) divides its input's size
        return int(((self._coef * sizes[self._a] * sizes[self._b]) // self._div).sum())

    def __call__(self, widths: np.ndarray) -> int:
        return self.constant + self.variable(widths)

    def calibrate(self, base_widths: np.ndarray, reference: int, what: str) -> bool:
        """Sets the constant so that the base count equals ``reference``; False if impossible."""
        self.constant = reference - self.variable(base_widths)
        if self.constant < 0:
            logger.warning(
                "analytic %s model over-counts the base model by %d; "
                "falling back to exact counting",
                what,
                -self.constant,
            )
            return False
        return True
