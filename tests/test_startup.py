"""Start-up: ``import prunesearch`` and the CLI's help and bad-input errors load no torch
(issue 12); the lazily imported public names still work. Timings: benchmarks/startup.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

import prunesearch as ps

# runs the CLI in-process, then reports which heavy modules got imported
PROBE = """
import sys
from prunesearch.cli.app import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print("LOADED", sorted(m for m in ("torch", "optuna") if m in sys.modules), "EXIT", code)
"""


def _python(code: str, *args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_import_loads_no_torch():
    proc = _python(
        "import prunesearch, sys; assert 'torch' not in sys.modules, 'torch'; "
        "assert 'optuna' not in sys.modules, 'optuna'"
    )
    assert proc.returncode == 0, proc.stderr


def test_import_leaves_optuna_logging_alone():
    proc = _python(
        "import optuna; v = optuna.logging.get_verbosity(); "
        "import prunesearch, prunesearch.find.studies, prunesearch.find.find; "
        "assert optuna.logging.get_verbosity() == v == optuna.logging.INFO"
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    ("argv", "code", "stderr"),
    [
        (["--help"], 0, ""),
        (["find", "--help"], 0, ""),
        (["find", "--budget", "50%bananas"], 2, "error: budget '50%bananas' not understood"),
        (["show", "missing.json"], 2, "error: spec file not found: missing.json"),
        (["export", "run", "--format", "tflite"], 2, "error: unknown format 'tflite'; choose onnx"),
        (["family", "run", "--recipe", "prune"], 2, "error: unknown recipe 'prune'; choose"),
        (["family", "run", "--format", "tflite"], 2, "error: unknown format 'tflite'; choose onnx"),
    ],
)
def test_cli_help_and_bad_input_load_no_torch(argv, code, stderr, tmp_path):
    proc = _python(PROBE, *argv, cwd=tmp_path)
    assert proc.stdout.splitlines()[-1] == f"LOADED [] EXIT {code}", proc.stderr
    assert stderr in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_public_names_resolve_lazily():
    from prunesearch import errors, models, spec
    from prunesearch.engine import graph

    assert set(ps.__all__) <= set(dir(ps))
    assert ps.trace is graph.trace and ps.ChannelGroup is graph.ChannelGroup
    assert ps.ArchSpec is spec.ArchSpec and ps.build is spec.build
    assert ps.register_model is models.register_model
    assert ps.PrunesearchError is errors.PrunesearchError
    assert isinstance(ps.__version__, str) and ps.__version__
    assert ps.vocab.SIGNALS == ("slimming", "l1")  # modules load too
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ps.nope  # noqa: B018
    for name in ps.__all__:
        getattr(ps, name)
