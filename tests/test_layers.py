"""The package's layering, checked from the source.

A unit is a subpackage (``engine``, ``find``, ...) or a top-level module (``spec``, ``errors``).
A module imports only from its own unit and the units of lower levels; ``experiments`` and
``deploy`` share a level and never import each other; no import cycle between modules. Every
import counts: at module level, inside functions, and under ``if TYPE_CHECKING:`` (a type-level
cycle is still a cycle in the design).
"""

import ast
from pathlib import Path

import networkx as nx
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "prunesearch"

# lowest first; a unit may import from its own unit and the levels before it
LEVELS = [
    {"errors", "vocab", "fileio", "allow_import", "paths", "progress", "compat", "device"},
    {"engine", "models"},  # the engine knows nothing above it
    {"spec", "space"},  # the contracts: an architecture, a search space
    {"data"},
    {"latency"},
    {"training"},
    {"find"},
    {"experiments", "deploy"},
    {"family"},  # composes experiments and deploy: trained, exported families
    {"cli", "__main__", "__init__"},
]
LEVEL_OF = {unit: i for i, units in enumerate(LEVELS) for unit in units}
SIBLINGS_APART = {("experiments", "deploy"), ("deploy", "experiments")}


def _module_name(path: Path) -> str:
    """``engine.graph``, ``spec``, ``models`` (a package's ``__init__``), ``__init__``."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def _unit(module: str) -> str:
    return module.split(".")[0]


def _imports(path: Path) -> set[str]:
    """The prunesearch modules a file imports (dotted, without ``prunesearch.``)."""
    tree = ast.parse(path.read_text())
    here = _module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(
                a.name.removeprefix("prunesearch.")
                for a in node.names
                if a.name.startswith("prunesearch.")
            )
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                if not node.module:  # from . import graph: the names are modules
                    found.update(".".join([*base, a.name]) for a in node.names)
                    continue
                module = ".".join([*base, node.module])
            elif (node.module or "") == "prunesearch":
                module = ""
            elif (node.module or "").startswith("prunesearch."):
                module = node.module.removeprefix("prunesearch.")
            else:
                continue
            if module:
                found.add(module)
            else:  # from prunesearch import x: x is a module or a unit
                found.update(a.name for a in node.names)
    return found


def _graph() -> nx.DiGraph:
    g = nx.DiGraph()
    for path in PACKAGE.rglob("*.py"):
        src = _module_name(path)
        g.add_node(src)
        for dst in _imports(path):
            if dst != src:
                g.add_edge(src, dst)
    return g


def test_every_unit_has_a_level():
    units = {_unit(_module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert units - set(LEVEL_OF) == set(), "give new subpackages or modules a level in LEVELS"


def test_imports_point_down_the_levels():
    bad = [
        (a, b)
        for a, b in _graph().edges
        if _unit(b) in LEVEL_OF
        and (LEVEL_OF[_unit(b)] > LEVEL_OF[_unit(a)] or (_unit(a), _unit(b)) in SIBLINGS_APART)
    ]
    assert bad == [], f"imports against the layering: {bad}"


def test_no_import_cycles():
    g = _graph()
    g = g.subgraph([n for n in g if n != "__init__"])
    # a package's __init__ re-exporting its modules is not a cycle of the design
    g = nx.DiGraph([(a, b) for a, b in g.edges if not b.startswith(f"{a}.")])
    cycles = list(nx.simple_cycles(g))
    assert cycles == [], f"import cycles: {cycles}"


def test_subpackage_inits_load_nothing():
    """Subpackage ``__init__`` files are empty or docstrings: ``import prunesearch.engine``
    must not load torch, so budget parsing and the CLI start fast."""
    for init in PACKAGE.glob("*/__init__.py"):
        if init.parent.name == "models":
            continue  # the zoo registers its constructors on import (a registry)
        body = ast.parse(init.read_text()).body
        assert all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body), (
            f"{init.relative_to(PACKAGE)} should hold no code"
        )


@pytest.mark.parametrize(
    "source, expected",
    [
        ("def f():\n    from prunesearch.find.find import find\n", {"find.find"}),
        ("if TYPE_CHECKING:\n    from prunesearch.cli.app import app\n", {"cli.app"}),
        ("from . import graph\nfrom .ops import x\n", {"engine.graph", "engine.ops"}),
        ("from ..errors import E\nimport prunesearch.spec\n", {"errors", "spec"}),
    ],
)
def test_the_checker_reads_every_import(tmp_path, source, expected):
    """The checker itself: imports inside functions and under TYPE_CHECKING count, relative
    ones resolve against the file's package, so an engine module importing the search would be
    reported."""
    (tmp_path / "engine").mkdir()
    fake = tmp_path / "engine" / "graph.py"
    fake.write_text(source)
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path
    try:
        assert _imports(fake) == expected
    finally:
        PACKAGE = saved
    assert LEVEL_OF["find"] > LEVEL_OF["engine"]


def test_the_readme_package_map_matches_the_package():
    """README's package map names every subpackage and each of its modules, and every
    top-level module: the map matches ``ls src/prunesearch``."""
    readme = (PACKAGE.parents[1] / "README.md").read_text()
    rows = {}
    for line in readme.splitlines():
        if line.startswith("| `") and "|" in line[1:]:
            first, rest = line[2:].split("|", 1)
            rows[first.strip()] = rest
    missing = []
    for path in sorted(PACKAGE.iterdir()):
        name = path.stem
        if path.is_dir() and (path / "__init__.py").is_file() and name != "search_spaces":
            row = rows.get(f"`{name}/`") or ""
            missing += [
                f"{name}/{m.stem}"
                for m in path.glob("*.py")
                if m.stem != "__init__" and f"`{m.stem}`" not in row and not m.stem.startswith("_")
            ]
            if not row:
                missing.append(f"{name}/")
        elif (
            path.suffix == ".py"
            and name not in ("__init__", "__main__")
            and not any(f"`{name}`" in key for key in rows)
        ):
            missing.append(name)
    assert missing == [], f"README's package map does not name: {missing}"
