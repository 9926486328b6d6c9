"""The guard around oneDNN's NHWC strided-1x1 backward-weights bug (see memory_format.py).

The checks that train run in a subprocess with a timeout: without the guard the kernel can hang
or corrupt the heap, and a test must fail, not stall the suite.
"""

import json
import subprocess
import sys
import textwrap

import torch
from torch import nn

from prunesearch.device import at_risk, to_device

CPU = torch.device("cpu")


def _run(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_strided_1x1_weight_gradients_are_right_in_channels_last():
    # one fresh process (the guard acts at import) for the three input widths
    out = _run("""
        import json, torch
        from prunesearch.device import to_device
        worst = {}
        for cin in (2, 4, 7):
            torch.manual_seed(0)
            conv = torch.nn.Conv2d(cin, 19, 1, stride=2, bias=False)
            x = torch.randn(128, cin, 28, 28)
            g = torch.randn(128, 19, 14, 14)
            conv(x).backward(g)
            ref = conv.weight.grad.clone()
            conv.weight.grad = None
            conv = to_device(conv, torch.device("cpu"), channels_last=True)
            worst[cin] = 0.0
            for _ in range(3):
                conv(x.contiguous(memory_format=torch.channels_last)).backward(
                    g.contiguous(memory_format=torch.channels_last))
                err = ((conv.weight.grad - ref).abs().max() / ref.abs().max()).item()
                worst[cin] = max(worst[cin], err)
                conv.weight.grad = None
        print(json.dumps(worst))
    """)
    worst = json.loads(out)
    assert sorted(worst) == ["2", "4", "7"]
    assert all(w < 1e-4 for w in worst.values()), worst


def test_pruned_resnet_trains_the_same_in_both_formats():
    """A resnet20 cut to 3 channels everywhere (its shortcuts: strided 1x1 convs on 3
    channels) gets the same gradients channels-last as in NCHW."""
    out = _run("""
        import copy, torch
        import prunesearch as ps
        from prunesearch.device import to_device
        torch.manual_seed(0)
        graph = ps.trace(ps.create_model("resnet20", num_classes=4), torch.zeros(1, 3, 16, 16))
        nchw = graph.prune({g.name: 3 for g in graph.groups})
        nhwc = to_device(copy.deepcopy(nchw), torch.device("cpu"), channels_last=True)
        x, y = torch.randn(32, 3, 16, 16), torch.randint(0, 4, (32,))
        worst = 0.0
        for _ in range(3):
            for m, inp in ((nchw, x), (nhwc, x.contiguous(memory_format=torch.channels_last))):
                m.zero_grad()
                torch.nn.functional.cross_entropy(m(inp), y).backward()
            for (name, a), b in zip(nchw.named_parameters(), nhwc.parameters()):
                worst = max(worst, ((a.grad - b.grad).abs().max() /
                                    a.grad.abs().max().clamp_min(1e-12)).item())
        print(worst)
    """)
    assert float(out) < 1e-3


def test_only_strided_1x1_convs_on_few_channels_are_guarded():
    model = nn.Sequential(
        nn.Conv2d(4, 8, 1, stride=2),
        nn.Conv2d(8, 8, 1, stride=1),
        nn.Conv2d(8, 8, 3, stride=2),
        nn.Conv2d(16, 8, 1, stride=2),
        nn.Conv2d(8, 8, 1, stride=2, groups=8),
    )
    assert [at_risk(m) for m in model] == [True, False, False, False, False]
    to_device(model, CPU, channels_last=True)
    to_device(model, CPU, channels_last=True)  # idempotent
    assert len(model[0]._forward_pre_hooks) == 1 and len(model[0]._forward_hooks) == 1
    # the guarded layer's output is channels-last again: the format does not leak downstream
    out = model[0](torch.randn(2, 4, 8, 8).contiguous(memory_format=torch.channels_last))
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    nchw = torch.empty(8, 4, 1, 1).stride()  # 1x1 weights: strides tell the formats apart
    assert model[0].weight.stride() == nchw
    assert model[1].weight.is_contiguous(memory_format=torch.channels_last)
    assert model[3].weight.stride() != torch.empty(8, 16, 1, 1).stride()
    assert not any(m._forward_pre_hooks for m in model[1:])
    plain = to_device(nn.Sequential(nn.Conv2d(4, 8, 1, stride=2)), CPU, channels_last=False)
    assert not plain[0]._forward_pre_hooks
