"""The data of a channel-dependency analysis: layouts of channel spaces, the roles of the
modules and tensors that are sliced, exact cost terms, and the union-find over spaces.

A *channel space* is a run of channels born together (a conv's output channels, a fixed
source). A tensor's channel dimension is described by a *layout*: the spaces it holds, in
order. A space that an op later cuts (``split``, ``chunk``, a channel slice) is replaced by
its parts, two new spaces, everywhere: layouts are read through :meth:`Analysis.expand`.
Spaces that must keep the same channels are united; a space may also carry a *step*:
its width must be a multiple of ``step``, either as ``step`` interleaved runs that keep the
same positions (the inputs and outputs of a grouped convolution: each conv group loses the
same channels) or as whole runs of ``step`` channels (a GroupNorm's groups).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["Analysis", "Layout", "ModuleRole", "Segment", "Term"]


@dataclass(frozen=True)
class Segment:
    """A whole channel space inside a tensor's channel dim: ``length`` channels x ``inner``
    features (``inner`` > 1 after a flatten)."""

    space: int
    length: int
    inner: int = 1


Layout = tuple[Segment, ...]


@dataclass
class ModuleRole:
    """How a module's (or one tensor's) parameters are sliced when channels are removed.

    ``kind``: ``conv`` (dim 0 by ``out_space``, dim 1 by ``in_layout``), ``gconv`` (a grouped
    conv: the same, its input sliced within each conv group), ``dwconv`` (dim 0 by
    ``in_layout``; in = out = groups), ``linear`` (like conv), ``bn``, ``ln`` and ``gn`` (all
    by ``in_layout``), ``param`` (the tensor named ``name``, along ``dim``, by ``in_layout``:
    an elementwise scale such as a layer scale). ``standardised``: a weight-standardised conv,
    whose filters are standardised over the input channels it keeps.
    """

    name: str
    kind: str
    in_layout: Layout
    out_space: int | None
    order: int
    dim: int = 0
    standardised: bool = False


@dataclass(frozen=True)
class Term:
    """``coef * prod(size(layout) for layout in layouts) // div``: one exact cost term
    (``div`` is a grouped conv's group count, which divides the input's size)."""

    coef: int
    layouts: tuple[Layout, ...]
    div: int = 1


@dataclass
class Analysis:
    parent: list[int] = field(default_factory=list)
    size: list[int] = field(default_factory=list)
    fixed: list[bool] = field(default_factory=list)
    step: list[int] = field(default_factory=list)
    interleaved: list[bool] = field(default_factory=list)
    children: dict[int, tuple[int, int]] = field(default_factory=dict)  # a cut space's parts
    members: dict[int, list[int]] = field(default_factory=dict)  # root -> its class, if > 1
    layouts: dict[str, Layout] = field(default_factory=dict)
    dims: dict[str, int] = field(default_factory=dict)  # node -> channel dim, where not 1
    roles: dict[str, ModuleRole] = field(default_factory=dict)
    flop_terms: list[Term] = field(default_factory=list)
    param_terms: list[Term] = field(default_factory=list)
    unknown_ops: list[str] = field(default_factory=list)  # ops that fixed prunable channels
    opaque_ops: list[str] = field(default_factory=list)  # every op the rules do not cover
    # "module.attr" -> the parts of a split by that attribute's list of sizes (MixNet): the
    # pruned model's attribute holds the parts' widths
    split_sizes: dict[str, tuple[Layout, ...]] = field(default_factory=dict)

    # -- union-find over channel spaces -------------------------------------------------------
    def new_space(self, size: int, fixed: bool = False) -> int:
        self.parent.append(len(self.parent))
        self.size.append(size)
        self.fixed.append(fixed)
        self.step.append(1)
        self.interleaved.append(False)
        return len(self.parent) - 1

    def find(self, s: int) -> int:
        root = s
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[s] != root:  # path compression
            self.parent[s], s = root, self.parent[s]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if ra > rb:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.members[ra] = self.members.pop(ra, [ra]) + self.members.pop(rb, [rb])
        self.fixed[ra] = self.fixed[ra] or self.fixed[rb] or self.size[ra] != self.size[rb]
        self.constrain(ra, self.step[rb], self.interleaved[rb])

    def cut(self, space: int, at: int) -> bool:
        """Cuts ``space`` and every space united with it into channels ``[0, at)`` and
        ``[at, size)``: two new spaces each, the parts at the same place united. False (nothing
        cut) when the class is fixed or has a step: its channels are then kept whole."""
        r = self.find(space)
        if self.fixed[r] or self.step[r] > 1:
            self.fixed[r] = True
            return False
        parts = []
        for m in self.members.get(r, [r]):
            parts.append((self.new_space(at), self.new_space(self.size[m] - at)))
            self.children[m] = parts[-1]
        for head, tail in parts[1:]:
            self.union(head, parts[0][0])
            self.union(tail, parts[0][1])
        return True

    def expand(self, layout: Layout) -> Layout:
        """``layout`` with every cut space replaced by its parts (recursively)."""
        if not any(seg.space in self.children for seg in layout):
            return layout
        out: list[Segment] = []
        for seg in layout:
            parts = self.children.get(seg.space)
            if parts is None:
                out.append(seg)
            else:
                out.extend(self.expand(tuple(Segment(p, self.size[p], seg.inner) for p in parts)))
        return tuple(out)

    def constrain(self, space: int, step: int, interleaved: bool) -> None:
        """Widths of ``space`` must be multiples of ``step`` (see the module docstring). Two
        steps of one kind combine into their least common multiple; steps of both kinds, or
        one that leaves a single width, fix the space."""
        r = self.find(space)
        if step == 1:
            return
        if self.step[r] == 1:
            self.step[r], self.interleaved[r] = step, interleaved
        elif self.interleaved[r] != interleaved:
            self.fixed[r] = True
            return
        else:
            self.step[r] = math.lcm(self.step[r], step)
        if self.size[r] % self.step[r] or self.step[r] >= self.size[r]:
            self.fixed[r] = True

    def is_fixed(self, s: int) -> bool:
        return self.fixed[self.find(s)]

    def fix_layout(self, layout: Layout) -> bool:
        """Fixes every space of ``layout``; returns whether any was prunable before."""
        changed = False
        for seg in self.expand(layout):
            root = self.find(seg.space)
            changed |= not self.fixed[root]
            self.fixed[root] = True
        return changed

    def dim(self, node_name: str) -> int:
        """The channel dim of a node's tensor (1 unless a permute moved it)."""
        return self.dims.get(node_name, 1)
