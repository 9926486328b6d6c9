"""The code's shape, measured: no function body over 60 lines, no function with more than 8
parameters (typer commands excepted: typer reads each option from the signature). A regression
names the function."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "prunesearch"
MAX_BODY_LINES = 60
MAX_PARAMS = 8
TYPER_COMMANDS = PACKAGE / "cli" / "commands.py"


def _functions():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield path, node


def body_lines(node: ast.FunctionDef) -> int:
    """Lines from the first statement after the docstring to the end: the signature and the
    docstring do not count (a formatter spreads a signature over a line per parameter)."""
    body = node.body
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
        and len(body) > 1
    ):
        body = body[1:]
    return node.end_lineno - body[0].lineno + 1


def params(node: ast.FunctionDef) -> int:
    a = node.args
    names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
    # **settings that name a dataclass's fields (ps.search) are that dataclass, not parameters
    return len(names) + bool(a.vararg)


def _where(path: Path, node: ast.FunctionDef) -> str:
    return f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}"


def test_no_function_body_over_60_lines():
    long = [
        f"{_where(p, n)} ({body_lines(n)})"
        for p, n in _functions()
        if body_lines(n) > MAX_BODY_LINES
    ]
    assert long == [], "split these functions: " + ", ".join(long)


def test_no_function_over_8_parameters():
    many = [
        f"{_where(p, n)} ({params(n)})"
        for p, n in _functions()
        if params(n) > MAX_PARAMS and p != TYPER_COMMANDS
    ]
    assert many == [], "group these parameters (a dataclass): " + ", ".join(many)


def test_the_measures_count_what_they_say():
    tree = ast.parse('def f(a, b, *c, d=1, **e):\n    """Doc."""\n    x = 1\n\n    return x\n')
    fn = tree.body[0]
    assert (body_lines(fn), params(fn)) == (3, 4)
