"""Fast evaluation of a private copy: BatchNorm folding and conv+ReLU fusion leave the function
unchanged (float64 / float32 tolerances), the user's model is untouched, and models that cannot
be rewritten run as they are."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from losslab import create_model
from losslab.cpu_allocator import keep_freed_memory
from losslab.landscape import Directions, EvalOptions, evaluate_points
from losslab.landscape.fusion import pointwise_kernel_works
from losslab.landscape.inference import FastForward, resolve_memory_format
from losslab.params import buffers_of, parameters_of

CPU = torch.device("cpu")


class Block(nn.Module):
    """Conv-BN-ReLU, conv (no bias) - BN + residual - ReLU, a BN without affine, a layer whose
    output is read twice, and Linear-BN1d: every case the rewrites must get right or leave."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(4, affine=False)
        self.conv3 = nn.Conv2d(4, 4, 1)
        self.bn3 = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 6)
        self.bn4 = nn.BatchNorm1d(6)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)) + h)
        c = self.conv3(h)  # read twice: bn3 cannot be folded into conv3
        h = self.bn3(c) + c
        h = h.mean(dim=(2, 3))
        return self.head(torch.tanh(self.bn4(self.fc(h))))


def randomized(net: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 2 - 1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                    m.bias.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
    return net.eval()


def run(ff: FastForward, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    state = {k: ff.layout(v) for k, v in {**parameters_of(net), **buffers_of(net)}.items()}
    with torch.no_grad():
        return ff(ff.fold(state), x)


def test_batchnorm_folding_is_exact_in_float64_and_skips_unsafe_pairs():
    torch.manual_seed(0)
    net = randomized(Block().double())
    before = copy.deepcopy(net.state_dict())
    ff = FastForward(net, parameters_of(net), CPU, memory_format="contiguous")
    assert len(ff.pairs) == 3  # bn1, bn2 (conv without bias, BN without affine), bn4
    assert {p.bn for p in ff.pairs} == {"bn1", "bn2", "bn4"}
    x = torch.randn(5, 2, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        expect = net(x)
    torch.testing.assert_close(run(ff, net, x), expect, rtol=1e-12, atol=1e-12)
    assert net.conv2.bias is None  # the user's model is not rewritten
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())


@pytest.mark.skipif(not pointwise_kernel_works(), reason="oneDNN pointwise kernel unavailable")
def test_conv_relu_fusion_matches_in_float32_channels_last():
    torch.manual_seed(0)
    net = randomized(Block())
    ff = FastForward(net, parameters_of(net), CPU)
    assert ff.memory_format == "channels_last"
    assert ff.fused_convs == 2  # relu(conv1) and relu(conv2 + h)
    x = torch.randn(5, 2, 6, 6)
    with torch.no_grad():
        expect = net(x)
    torch.testing.assert_close(run(ff, net, x), expect, rtol=1e-5, atol=1e-5)
    d = ff.describe()
    assert d == {"memory_format": "channels_last", "folded_batchnorms": 3, "fused_conv_relu": 2,
                 "shared_first_layer": None}  # float32, 18 multiply-adds: not shared


@pytest.mark.skipif(not pointwise_kernel_works(), reason="oneDNN pointwise kernel unavailable")
@pytest.mark.parametrize("name", ["resnet20", "preresnet110", "vgg11_bn", "mobilenetv2",
                                  "densenet_bc"])
def test_zoo_models_agree_fused_and_unfused(name):
    torch.manual_seed(0)
    size = 32 if name.startswith("vgg") else 8
    net = randomized(create_model(name, num_classes=10, in_channels=3, image_size=size))
    ff = FastForward(net, parameters_of(net), CPU)
    assert ff.pairs or ff.fused_convs
    x = torch.randn(3, 3, size, size)
    with torch.no_grad():
        expect = net(x)
    got = run(ff, net, x)
    assert float((got - expect).abs().max() / expect.abs().max()) < 1e-5


def test_untraceable_models_run_as_they_are():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: fx cannot trace it
                x = -x
            return self.bn(self.conv(x)).flatten(1)

    net = Branchy().eval()
    ff = FastForward(net, parameters_of(net), CPU)
    assert ff.net is net and ff.describe()["folded_batchnorms"] == 0
    x = torch.randn(2, 1, 5, 5)
    with torch.no_grad():
        assert torch.equal(run(ff, net, x), net(x))


def test_evaluation_fused_equals_unfused_and_unfused_is_bitwise():
    torch.manual_seed(1)
    net = randomized(Block().double())
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 2, 6, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (32,), generator=g)
    batches = [(x[:16], y[:16]), (x[16:], y[16:])]
    dirs = Directions.random(parameters_of(net), n=2, seed=0)
    coords = torch.tensor([[0.0, 0.0], [0.5, -0.25]], dtype=torch.float64)
    for bn in ("keep", "recompute"):
        on = EvalOptions(bn=bn)
        fused = evaluate_points(net, net, list(dirs), batches=batches, coords=coords, options=on)
        plain = evaluate_points(net, net, list(dirs), batches=batches, coords=coords,
                                options=on.with_(fuse=False))
        for a, b in zip(fused, plain, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        direct = F.cross_entropy(net(x), y).item()
    plain, _ = evaluate_points(net, net, list(dirs), batches=batches, coords=coords[:1],
                               options=EvalOptions(fuse=False))
    assert float(plain[0]) == pytest.approx(direct, rel=1e-15)


def test_memory_format_choice():
    conv = parameters_of(nn.Conv2d(1, 2, 3))
    dense = parameters_of(nn.Linear(2, 3))
    assert resolve_memory_format("auto", CPU, conv) == "channels_last"
    assert resolve_memory_format("auto", CPU, dense) == "contiguous"
    assert resolve_memory_format("auto", torch.device("meta"), conv) == "contiguous"
    assert resolve_memory_format("contiguous", CPU, conv) == "contiguous"
    with pytest.raises(ValueError, match="memory_format must be one of"):
        resolve_memory_format("nhwc", CPU, conv)


def test_one_channel_batches_get_exact_channels_last_strides():
    """A grey-scale batch (C = 1) is contiguous and channels-last at once; left with NCHW
    strides, it makes the convolutions choose NCHW outputs, and the max-pool after them ran
    10x slower. The layout gives it the exact NHWC strides, so every activation is NHWC."""
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    ff = FastForward(net, parameters_of(net), CPU)
    x = torch.randn(5, 1, 8, 8)
    laid = ff.layout(x)
    assert laid.stride() == (64, 1, 8, 1)
    assert torch.equal(laid, x)
    assert ff.layout(laid) is laid  # already there: no copy
    state = {k: ff.layout(v) for k, v in parameters_of(net).items()}
    out = ff(ff.fold(state), laid)
    assert out.stride() == (16 * 4, 1, 4 * 4, 4)  # (5, 4, 4, 4) in NHWC
    contiguous = FastForward(net, parameters_of(net), CPU, memory_format="contiguous")
    assert contiguous.layout(laid).is_contiguous()


def test_keep_freed_memory_is_idempotent_and_can_be_switched_off():
    first = keep_freed_memory()
    assert keep_freed_memory() is first
    if sys.platform.startswith("linux"):
        assert first is True  # glibc: both thresholds accepted
    code = "from losslab.cpu_allocator import keep_freed_memory as k; print(k())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"LOSSLAB_KEEP_FREED_MEMORY": "0", "PATH": ""}, check=True)
    assert out.stdout.strip() == "False"
