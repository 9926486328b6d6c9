"""A built wheel, installed in a fresh virtual environment, works from an empty folder: the
bundled search spaces ship inside it (issue 12).

The wheel is built offline from a copy of the working tree (``pip wheel --no-build-isolation``)
and installed with ``--no-deps`` into a venv made with ``--system-site-packages``, so torch,
optuna etc. come from this interpreter and nothing is resolved again.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPACES = sorted(p for p in (ROOT / "search_spaces").glob("*.yaml"))


def _missing_build_tools() -> str | None:
    for module in ("pip", "setuptools"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed"
    text = importlib.metadata.version("setuptools")
    version = tuple(int(v) for v in text.split(".")[:2] if v.isdigit())
    if version < (69,):  # pyproject.toml's build-system requires setuptools>=69
        return f"setuptools {text} is older than the build-system's setuptools>=69"
    # bdist_wheel: setuptools' own since 70.1, else the wheel package's (found without
    # importing setuptools here, which would fight pytest's distutils)
    if version < (70, 1) and importlib.util.find_spec("wheel") is None:
        return f"setuptools {text} needs the wheel package to build wheels"
    return None


_REASON = _missing_build_tools()
pytestmark = pytest.mark.skipif(
    _REASON is not None, reason=f"cannot build a wheel offline here: {_REASON}"
)


def _run(
    argv: list[str], cwd: Path, env: dict[str, str], timeout: int = 300
) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(map(str, argv))} -> {proc.returncode}\n"
        f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """Builds the wheel, installs it in a fresh venv; the venv's bin, env and an empty cwd."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src-copy"  # build from a copy: no build/ or egg-info in the checkout
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in ("src", "search_spaces"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "setup.py", "setup.cfg", "MANIFEST.in", "LICENSE"):
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, src / name)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PRUNESEARCH_SPACES", "PYTHONPATH", "VIRTUAL_ENV")
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(tmp / "dist"),
            str(src),
        ],
        tmp,
        env,
    )
    (wheel,) = (tmp / "dist").glob("prunesearch-*.whl")
    venv = tmp / "venv"
    _run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
        tmp,
        env,
    )
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / ("python.exe" if os.name == "nt" else "python")
    # the system's pip, run by the venv's python, installs into the venv; --ignore-installed:
    # this interpreter's (editable) prunesearch stays where it is, and is shadowed
    _run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--ignore-installed",
            str(wheel),
        ],
        tmp,
        env,
    )
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    empty = tmp / "empty"
    empty.mkdir()
    return {
        "wheel": wheel,
        "venv": venv,
        "python": str(python),
        "cli": str(bin_dir / "prunesearch"),
        "env": env,
        "cwd": empty,
    }


def test_wheel_holds_every_package_and_the_bundled_spaces(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    packages = [
        p.parent.relative_to(ROOT / "src")
        for p in (ROOT / "src" / "prunesearch").rglob("__init__.py")
    ]
    for pkg in packages:  # pyproject.toml lists the packages: a new one must be added there
        assert f"{pkg.as_posix()}/__init__.py" in names, f"{pkg} missing: add it to pyproject"
    assert SPACES
    for f in SPACES:
        assert f"prunesearch/search_spaces/{f.name}" in names
    with zipfile.ZipFile(installed["wheel"]) as z:  # a copy of the one source, not another
        assert all(z.read(f"prunesearch/search_spaces/{f.name}") == f.read_bytes() for f in SPACES)


def test_installed_package_is_the_wheel(installed):
    out = _run(
        [installed["python"], "-c", "import prunesearch; print(prunesearch.__file__)"],
        installed["cwd"],
        installed["env"],
    ).stdout.strip()
    assert Path(out).resolve().is_relative_to(installed["venv"].resolve()), out


def test_cli_from_an_empty_folder(installed):
    cli, cwd, env = installed["cli"], installed["cwd"], installed["env"]
    assert "find" in _run([cli, "--help"], cwd, env).stdout
    models = json.loads(_run([cli, "models", "--json"], cwd, env).stdout.splitlines()[-1])
    assert "resnet20" in models["models"]
    spaces = json.loads(_run([cli, "spaces", "--json"], cwd, env).stdout.splitlines()[-1])
    assert spaces["spaces"] == sorted(f.stem for f in SPACES if f.stem != "default")
    # --space NAME resolves: the command gets as far as the budget
    proc = subprocess.run(
        [cli, "find", "--space", "resnet20-fmnist", "--budget", "50%bananas"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "budget '50%bananas'" in proc.stderr, proc.stderr
    assert list(cwd.iterdir()) == []  # bad input writes nothing


def test_bundled_and_default_space_load(installed):
    code = (
        "import json; from prunesearch.space import load_space; "
        "s = load_space('resnet20-fmnist'); d = load_space(None); "
        "print(json.dumps({'name': s.name, 'path': s.path, 'default': d.name}))"
    )
    out = json.loads(
        _run(
            [installed["python"], "-c", code], installed["cwd"], installed["env"]
        ).stdout.splitlines()[-1]
    )
    assert out["name"] == "resnet20-fmnist"
    assert Path(out["path"]).resolve().is_relative_to(installed["venv"].resolve()), out
    default = (ROOT / "search_spaces" / "default.yaml").read_text().split(":", 1)[1].strip()
    assert out["default"] == default


def test_tiny_find_from_an_empty_folder(installed, tmp_path):
    shutil.copy2(ROOT / "tests" / "spaces" / "tiny.yaml", tmp_path / "tiny.yaml")
    cli, env = installed["cli"], installed["env"]
    proc = _run(
        [
            cli,
            "find",
            "--space",
            "tiny.yaml",
            "--budget",
            "50%FLOPs",
            "--trials",
            "2",
            "--out",
            "out",
            "--json",
        ],
        tmp_path,
        env,
        timeout=600,
    )
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["exported"] and len(result["members"]) == 1
    spec = tmp_path / result["members"][0]["spec"]
    assert spec == tmp_path / "out" / "spec-50pct-flops.json" and spec.is_file()
    shown = json.loads(
        _run([cli, "show", str(spec), "--json"], tmp_path, env).stdout.splitlines()[-1]
    )
    assert shown["flops"] <= result["members"][0]["target"]
