"""The finished ``find`` run a family is trained from, read and checked before any work.

``family.json`` (written by ``find``) names the members' specs (relative to the run folder),
the base checkpoint, its sha256 and its epochs (``base_info``). Every problem, a folder without
family.json, a spec or base that is missing or does not fit, is one error, before anything is
written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunesearch.errors import PrunesearchError
from prunesearch.fileio import read_json
from prunesearch.space import Space, load_space, space_for_spec, space_from_dict
from prunesearch.spec import ArchSpec

if TYPE_CHECKING:
    from prunesearch.training.runs import DataOptions

__all__ = ["FindRun", "Member", "control_members", "parse_baselines", "read_find_run"]


@dataclass(frozen=True)
class Member:
    """One budget's spec of the find run (or, with ``control``, one of its baselines' specs
    at that budget: a control trained beside the member ``of``)."""

    budget: str
    slug: str
    spec_path: Path
    spec: ArchSpec
    baselines: dict[str, str] = field(default_factory=dict)  # name -> spec path, as listed
    control: str | None = None
    of: str | None = None


@dataclass(frozen=True)
class FindRun:
    """A finished find run: its folder, family.json, space, base and members (budget order)."""

    run_dir: Path
    family: dict[str, Any]
    space: Space
    base_path: Path
    base_epochs: int
    members: list[Member]

    @property
    def base_flops(self) -> int:
        return self.members[0].spec.base_flops

    @property
    def signal(self) -> str:
        return self.family.get("signal") or self.space.search.signal


def _space(run_dir: Path, first: ArchSpec, override: str | None, data: DataOptions) -> Space:
    """``--space`` resolved against its data (a folder's class count in the model's args, as
    find and train-arch resolve it), else the resolved space the find run wrote into its
    config.json, else the one its specs name."""
    if override:
        from prunesearch.training.runs import resolve_space

        return resolve_space(load_space(override), data)
    config_path = run_dir / "config.json"
    if config_path.is_file():
        config = read_json(config_path, "find run config")
        if isinstance(config.get("space"), dict):
            return space_from_dict(
                config["space"], f"{config_path} space", str(config.get("space_path") or "")
            )
    return space_for_spec(first.search)


def _base_path(run_dir: Path, family: dict[str, Any]) -> Path:
    base = family.get("base")
    if not isinstance(base, str) or not base:
        raise PrunesearchError(f"{run_dir}/family.json names no base checkpoint")
    path = Path(base)
    for candidate in (path, run_dir / path):  # as find wrote it, or relative to the run
        if candidate.is_file():
            return candidate
    raise PrunesearchError(
        f"{run_dir}/family.json: the base checkpoint {base} is missing (the members are pruned "
        "from it)"
    )


def _members(run_dir: Path, family: dict[str, Any]) -> list[Member]:
    raw = family.get("members")
    if not isinstance(raw, list) or not raw:
        raise PrunesearchError(f"{run_dir}/family.json lists no members")
    members = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or not isinstance(m.get("spec"), str):
            raise PrunesearchError(f"{run_dir}/family.json: members[{i}] names no spec")
        path = run_dir / m["spec"]
        if not path.is_file():
            raise PrunesearchError(f"{run_dir}/family.json: the spec {m['spec']} is missing")
        spec = ArchSpec.load(path)
        slug = m.get("slug") if isinstance(m.get("slug"), str) else path.stem
        baselines = m.get("baseline_specs") if isinstance(m.get("baseline_specs"), dict) else {}
        members.append(Member(str(m.get("budget") or slug), slug, path, spec, dict(baselines)))
    return members


def parse_baselines(text: str | None) -> tuple[str, ...]:
    """``--baselines uniform,global`` as names (None or empty: none)."""
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


def control_members(run: FindRun, names: tuple[str, ...]) -> dict[str, list[Member]]:
    """The find run's ``names`` baselines at every budget, as members to train beside the
    searched ones (slug ``<member slug>-<baseline>``), by baseline name.

    Raises:
        PrunesearchError: a budget without that baseline's spec, or its spec file missing.
    """
    controls: dict[str, list[Member]] = {}
    for name in dict.fromkeys(names):
        controls[name] = []
        for m in run.members:
            rel = m.baselines.get(name)
            if not isinstance(rel, str):
                have = ", ".join(sorted(m.baselines)) or "none"
                raise PrunesearchError(
                    f"--baselines {name}: the find run has no {name} spec at {m.budget} "
                    f"(its baselines: {have})"
                )
            path = run.run_dir / rel
            if not path.is_file():
                raise PrunesearchError(f"{run.run_dir}/family.json: the spec {rel} is missing")
            spec = ArchSpec.load(path)
            slug = f"{m.slug}-{name}"
            controls[name].append(Member(m.budget, slug, path, spec, control=name, of=m.slug))
    return controls


def read_find_run(
    run_dir: str | Path, space: str | None = None, data: DataOptions | None = None
) -> FindRun:
    """Reads and checks a find run folder (``space``: ``--space``, overriding the run's, read
    with ``data``'s options where its data decides part of it).

    Raises:
        PrunesearchError: no such folder, no or a damaged family.json, a missing spec or base,
            or a base whose sha256 is not the one the specs were searched on.
    """
    from prunesearch.training.base_weights import base_epochs, load_space_base
    from prunesearch.training.runs import DataOptions

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PrunesearchError(f"find run folder not found: {run_dir}")
    if not (run_dir / "family.json").is_file():
        raise PrunesearchError(
            f"{run_dir} has no family.json: family takes the folder of a finished find run"
        )
    family = read_json(run_dir / "family.json", "family")
    members = _members(run_dir, family)
    sp = _space(run_dir, members[0].spec, space, data or DataOptions())
    for m in members:
        if (m.spec.model, m.spec.model_args) != (sp.model.name, sp.model.args):
            raise PrunesearchError(
                f"spec {m.spec_path} is of {m.spec.model} {m.spec.model_args}, not of space "
                f"{sp.name}'s model"
            )
    path = _base_path(run_dir, family)
    base = load_space_base(path, sp)
    expected = family.get("base_sha256")
    if expected and expected != base.sha256:
        raise PrunesearchError(
            f"{path} is not the base the family was searched on (sha256 differs from "
            f"{run_dir}/family.json's)"
        )
    recorded = (family.get("base_info") or {}).get("epochs")
    epochs = recorded if isinstance(recorded, int) and recorded >= 1 else None
    return FindRun(run_dir, family, sp, path, epochs or base_epochs(base, None, sp)[0], members)
