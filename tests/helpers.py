"""Test helpers: random widths and the dead-channel equivalence check."""

from __future__ import annotations

import contextlib
import io
import os
import random
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

import prunesearch as ps


def random_widths(graph: ps.ChannelGraph, seed: int) -> dict[str, int]:
    """Widths in 1..size for each group, multiples of its step (whole conv/norm groups)."""
    rng = random.Random(seed)
    return {g.name: rng.randint(1, g.size // g.step) * g.step for g in graph.groups}


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial norm affine parameters and BN statistics, so that slicing mistakes show."""
    gen = torch.Generator().manual_seed(seed)
    norms = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm, torch.nn.GroupNorm)
    for m in model.modules():
        if isinstance(m, norms) and m.weight is not None:
            n = m.weight.numel()
            with torch.no_grad():
                m.weight.copy_(torch.rand(n, generator=gen).view_as(m.weight) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen).view_as(m.bias) * 0.2)
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)


def _dead(size: int, kept: torch.Tensor) -> torch.Tensor:
    dead = torch.ones(size, dtype=torch.bool)
    dead[kept] = False
    return dead


def kill_removed_channels(graph: ps.ChannelGraph, widths: dict[str, int]) -> dict:
    """Makes the channels that ``widths`` removes dead in ``graph.model`` (in place).

    Producers' rows and biases are zeroed and BNs and GroupNorms map those channels to 0, so
    removing them cannot change the output (a GroupNorm loses whole groups: the others keep
    their statistics). Returns an importance mapping that keeps exactly the live ones.
    """
    kept = graph.keep_indices(widths, "l1")
    modules = dict(graph.model.named_modules())
    scores = {}
    with torch.no_grad():
        for name, idx in kept.items():
            g = graph.group(name)
            dead = _dead(g.size, idx)
            scores[name] = (~dead).double()
            for p, offset in g.rows:
                m = modules[p]
                rows = torch.nonzero(dead).flatten() + offset
                m.weight[rows] = 0
                if m.bias is not None:
                    m.bias[rows] = 0
            for bn, offset, inner in g.norms:
                feat = (
                    torch.nonzero(dead).flatten()[:, None] * inner + torch.arange(inner)
                ).flatten() + offset
                modules[bn].weight[feat] = 0
                modules[bn].bias[feat] = 0
        for name, (in_idx, _) in graph.kept_slices(widths, scores).items():
            m = modules.get(name)
            if isinstance(m, torch.nn.GroupNorm) and in_idx is not None:
                m.weight[_dead(m.num_channels, in_idx)] = 0
                m.bias[_dead(m.num_channels, in_idx)] = 0
    return scores


@contextlib.contextmanager
def layer_norms_over_kept(graph: ps.ChannelGraph, widths: dict, importance) -> Iterator[None]:
    """The reference for pruned LayerNorms over channels: while active, every LayerNorm that
    pruning slices normalises the kept channels alone and outputs 0 on the others (its
    statistics are those of the kept channels: the pruned model's, by decision)."""
    modules = dict(graph.model.named_modules())
    kept = {
        id(modules[n].weight): idx
        for n, (idx, _) in graph.kept_slices(widths, importance).items()
        if isinstance(modules.get(n), torch.nn.LayerNorm) and idx is not None
    }
    layer_norm = F.layer_norm

    def over_kept(x, shape, weight=None, bias=None, eps=1e-5):
        idx = kept.get(id(weight))
        if idx is None:
            return layer_norm(x, shape, weight, bias, eps)
        out = torch.zeros_like(x)
        out[..., idx] = layer_norm(
            x[..., idx], (len(idx),), weight[idx], None if bias is None else bias[idx], eps
        )
        return out

    F.layer_norm = over_kept
    try:
        yield
    finally:
        F.layer_norm = layer_norm


@contextlib.contextmanager
def standardised_over_kept(graph: ps.ChannelGraph, widths: dict, importance) -> Iterator[None]:
    """The reference for weight-standardised convs pruned on their inputs: while active, each
    one that pruning slices sees the kept input channels alone (its filters standardised over
    them: the pruned model's, by decision) and keeps all its output channels."""
    import copy

    from prunesearch.engine.prune import slice_module

    modules = dict(graph.model.named_modules())
    slices = graph.kept_slices(widths, importance)
    patched = []
    for name in graph.standardised:
        in_idx = slices[name][0]
        if in_idx is not None:
            over_kept = copy.deepcopy(modules[name])
            slice_module(over_kept, "conv", in_idx, None)
            modules[name].forward = lambda x, m=over_kept, i=in_idx: m(x[:, i])
            patched.append(modules[name])
    try:
        yield
    finally:
        for m in patched:
            del m.forward


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out - ref).abs().max() / ref.abs().max().clamp_min(1e-12))


def assert_equivalent_after_pruning(model: torch.nn.Module, x: torch.Tensor, seed: int) -> None:
    """Prunes random widths of a dead-channel model and checks the outputs do not change
    (pruned LayerNorms and weight-standardised convs: against the model whose LayerNorms and
    weight-standardised convs see the kept channels alone)."""
    randomize_bn(model, seed)
    model.eval()
    graph = ps.trace(model, x[:1])
    widths = random_widths(graph, seed)
    importance = kill_removed_channels(graph, widths)
    pruned = graph.prune(widths, importance).eval()
    with (
        torch.no_grad(),
        layer_norms_over_kept(graph, widths, importance),
        standardised_over_kept(graph, widths, importance),
    ):
        ref = model(x)
    with torch.no_grad():
        out = pruned(x)
    err = relative_error(out, ref)
    assert err < 1e-4, f"relative error {err:.2e} with widths {widths}"


def run_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    """``prunesearch ARGS`` in this process: :func:`prunesearch.cli.app.main`, the function
    ``python -m prunesearch`` runs (usage errors become its one ``error:`` line too), with
    stdout and stderr captured apart. Returns what ``subprocess.run`` would, less the import
    cost of a fresh interpreter. ``cwd``: a folder to run in (restored afterwards)."""
    from prunesearch.cli.app import main

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
    return subprocess.CompletedProcess(
        ["prunesearch", *map(str, args)], code, out.getvalue(), err.getvalue()
    )


def tiny_find_args(base, out, trials: int, *extra) -> list[str]:
    """``find``'s arguments for a 50%-FLOPs search of the tiny space from ``base`` into
    ``out`` (``extra`` appended)."""
    tiny = Path(__file__).parent / "spaces" / "tiny.yaml"
    return ["find", "--space", str(tiny), "--budget", "50%FLOPs", "--base", str(base),
            "--trials", str(trials), "--out", str(out), *map(str, extra)]  # fmt: skip


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


def write_image_folder(root: Path, classes=("ant", "bee", "cat"), per_class: int = 6) -> Path:
    """A real image folder, ``root/<class>/*``: PNGs and JPEGs of odd sizes, each class a
    different brightness (so it is learnable), one grayscale, one RGBA and one palette image,
    and a ``.DS_Store`` and a ``notes.txt`` that are not images."""
    from PIL import Image

    gen = random.Random(0)
    for ci, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            h, w = 9 + i % 4, 11 + i % 3
            level = 40 + 80 * ci
            pixels = bytes(min(255, level + gen.randrange(40)) for _ in range(h * w * 3))
            image = Image.frombytes("RGB", (w, h), pixels)
            if i == 0:
                image = image.convert("L")
            elif i == 1:
                image = image.convert("RGBA")
            elif i == 2:
                image = image.convert("P")
            suffix = ".jpg" if i == 3 else ".png"
            image.save(folder / f"img{i}{suffix}")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / classes[0] / "notes.txt").write_text("not an image")
    return root
