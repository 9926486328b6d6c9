"""Test helpers: random widths and the dead-channel equivalence check."""

from __future__ import annotations

import contextlib
import io
import os
import random
import signal
import subprocess
from pathlib import Path

import torch

import prunesearch as ps


def random_widths(graph: ps.ChannelGraph, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    return {g.name: rng.randint(1, g.size) for g in graph.groups}


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN affine parameters and statistics, so that slicing mistakes show."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            with torch.no_grad():
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.2)
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)


def kill_removed_channels(graph: ps.ChannelGraph, widths: dict[str, int]) -> dict:
    """Makes the channels that ``widths`` removes dead in ``graph.model`` (in place).

    Producers' rows and biases are zeroed and BNs map those channels to 0, so removing them
    cannot change the output. Returns an importance mapping that keeps exactly the live ones.
    """
    kept = graph.keep_indices(widths, "l1")
    modules = dict(graph.model.named_modules())
    scores = {}
    with torch.no_grad():
        for name, idx in kept.items():
            g = graph.group(name)
            dead = torch.ones(g.size, dtype=torch.bool)
            dead[idx] = False
            scores[name] = (~dead).double()
            for p in g.producers:
                m = modules[p]
                m.weight[dead] = 0
                if m.bias is not None:
                    m.bias[dead] = 0
            for bn, offset, inner in g.norms:
                feat = (torch.nonzero(dead).flatten()[:, None] * inner
                        + torch.arange(inner)).flatten() + offset
                modules[bn].weight[feat] = 0
                modules[bn].bias[feat] = 0
    return scores


def assert_equivalent_after_pruning(model: torch.nn.Module, x: torch.Tensor, seed: int) -> None:
    """Prunes random widths of a dead-channel model and checks the outputs do not change."""
    randomize_bn(model, seed)
    model.eval()
    graph = ps.trace(model, x[:1])
    widths = random_widths(graph, seed)
    importance = kill_removed_channels(graph, widths)
    pruned = graph.prune(widths, importance).eval()
    with torch.no_grad():
        ref, out = model(x), pruned(x)
    err = (out - ref).abs().max() / ref.abs().max().clamp_min(1e-12)
    assert err < 1e-4, f"relative error {err:.2e} with widths {widths}"


def run_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    """``prunesearch ARGS`` in this process: :func:`prunesearch.cli.main`, the function
    ``python -m prunesearch`` runs (usage errors become its one ``error:`` line too), with
    stdout and stderr captured apart. Returns what ``subprocess.run`` would, less the import
    cost of a fresh interpreter. ``cwd``: a folder to run in (restored afterwards)."""
    from prunesearch.cli import main

    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    with contextlib.ExitStack() as stack:
        if cwd is not None:  # contextlib.chdir is 3.11+
            stack.callback(os.chdir, os.getcwd())
            os.chdir(cwd)
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code
    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message"): printed, status 1
        err.write(f"{code}\n")
        code = 1
    return subprocess.CompletedProcess(["prunesearch", *map(str, args)], code, out.getvalue(),
                                       err.getvalue())


def run_script(path, *args, cwd=None) -> subprocess.CompletedProcess:
    """``python PATH ARGS`` in this process (``runpy`` as ``__main__``, with ``sys.argv`` and
    ``sys.path[0]`` as the interpreter sets them), captured like :func:`run_cli`."""
    import runpy
    import sys

    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    argv, path0 = [str(path), *map(str, args)], str(Path(path).resolve().parent)
    with contextlib.ExitStack() as stack:
        if cwd is not None:
            stack.callback(os.chdir, os.getcwd())
            os.chdir(cwd)
        saved_argv, saved_path = sys.argv, list(sys.path)
        stack.callback(setattr, sys, "argv", saved_argv)
        stack.callback(setattr, sys, "path", saved_path)
        sys.argv, sys.path = argv, [path0, *sys.path]
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        try:
            runpy.run_path(str(path), run_name="__main__")
        except SystemExit as exc:
            code = exc.code
    if code is None:
        code = 0
    elif not isinstance(code, int):
        err.write(f"{code}\n")
        code = 1
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def interruptible() -> None:
    """``preexec_fn`` for a child whose SIGINT acts as a terminal's Ctrl-C, even when the tests
    run where SIGINT is ignored (a background job, ``nohup``: Python then installs no
    KeyboardInterrupt handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
