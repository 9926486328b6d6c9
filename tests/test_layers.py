"""The package's layering, checked from the source: a module imports only from its own layer
or those below it, and no two modules import each other (directly or in a cycle).

Imports under ``if TYPE_CHECKING:`` do not count (they never run); imports inside functions do.
"""

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "prunesearch"

# lowest first; a module may import from its own layer and the ones before it
LAYERS = [
    ("base", {"errors", "choices", "compat", "fileio", "imports", "paths", "stats",
              "progress"}),
    ("engine", {"channels", "ops", "layer_rules", "dependency", "graph", "prune", "flops",
                "importance", "models", "budget", "spec"}),
    ("config", {"space", "data", "loader", "memory_format", "speed", "latency",
                "latency_model"}),
    ("training", {"train", "runs"}),
    ("search", {"objectives", "granularity", "studies", "latency_search", "candidates",
                "baselines", "choice", "find"}),
    ("experiments", {"cells", "compare", "fidelity", "report", "figures", "transfer",
                     "export"}),
    ("cli", {"cli", "__main__", "__init__"}),
]
LAYER_OF = {m: i for i, (_, mods) in enumerate(LAYERS) for m in mods}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 or rel.parts[0] != \
        "__init__.py" else "__init__"


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _imports(path: Path) -> set[str]:
    """First-level prunesearch modules a file imports at run time."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    inside_models = path.parent.name == "models"
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.lineno in skip:
            continue
        if node.level == 0:
            if (node.module or "").startswith("prunesearch."):
                found.add(node.module.split(".")[1])
            continue
        if node.level == 1 and inside_models:
            continue  # within the models package
        if node.module:
            found.add(node.module.split(".")[0])
        else:
            found.update(a.name for a in node.names)
    return found


def _graph() -> nx.DiGraph:
    g = nx.DiGraph()
    for path in PACKAGE.rglob("*.py"):
        src = _module_name(path)
        for dst in _imports(path):
            if dst != src:
                g.add_edge(src, dst)
    return g


def test_every_module_has_a_layer():
    names = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    assert names - set(LAYER_OF) == set(), "add new modules to LAYERS"


def test_imports_point_down_the_layers():
    bad = [(a, b) for a, b in _graph().edges
           if b in LAYER_OF and LAYER_OF[b] > LAYER_OF[a]]
    assert bad == [], f"imports against the layering: {bad}"


def test_no_import_cycles():
    g = _graph().subgraph([n for n in _graph() if n != "__init__"])
    cycles = list(nx.simple_cycles(g))
    assert cycles == [], f"import cycles: {cycles}"


def test_the_checker_reads_imports_as_they_run(tmp_path):
    """The checker itself: a run-time import inside a function counts, a TYPE_CHECKING one
    does not, so an engine module importing the search would be reported."""
    fake = tmp_path / "graph.py"
    fake.write_text("def f():\n    from .find import find\n"
                    "if TYPE_CHECKING:\n    from .cli import app\n")
    assert _imports(fake) == {"find"}
    assert LAYER_OF["find"] > LAYER_OF["graph"]
