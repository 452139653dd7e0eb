"""The 1-D models for MNIST-1D: shapes, sizes, the BatchNorm and shortcut options, torch.func."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from losslab.models import (
    ModelOptionError,
    check_inputs,
    create_model,
    list_models,
    model_inputs,
)
from losslab.models.cnn1d import cnn1d_lengths
from losslab.models.resnet1d import BasicBlock1d

SIGNAL_MODELS = ["cnn1d", "cnn1d_bn", "mlp1d", "resnet1d_20", "resnet1d_8"]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build(name: str, **options) -> nn.Module:
    return create_model(name, num_classes=10, in_channels=1, image_size=40, **options)


def test_the_signal_models_are_registered_as_such():
    assert sorted(n for n in list_models() if model_inputs(n) == "signal") == SIGNAL_MODELS
    assert model_inputs("resnet20") == "image" and model_inputs("mlp") == "image"
    with pytest.raises(ValueError, match="unknown model"):
        model_inputs("cnn2d")


def test_a_model_on_the_wrong_kind_of_data_is_a_one_line_error():
    check_inputs("cnn1d", 3, "mnist1d")
    check_inputs("small_cnn", 4, "digits")
    with pytest.raises(ValueError, match=r"model 'small_cnn' takes \(N, C, H, W\) images, but "
                                         r"mnist1d holds \(N, C, L\) 1-D signals; models for "
                                         r"those: cnn1d, cnn1d_bn, mlp1d, resnet1d_20, "
                                         r"resnet1d_8$"):
        check_inputs("small_cnn", 3, "mnist1d")
    with pytest.raises(ValueError, match=r"'cnn1d' takes \(N, C, L\) 1-D signals, but digits "
                                         r"holds \(N, C, H, W\) images; models for those: "
                                         r"alexnet, densenet121"):
        check_inputs("cnn1d", 4, "digits")


@pytest.mark.parametrize("name", SIGNAL_MODELS)
def test_forward_and_backward_on_mnist1d_shapes(name):
    model = build(name)
    x = torch.randn(8, 1, 40)
    out = model(x)  # train mode: BatchNorm uses batch statistics
    assert out.shape == (8, 10)
    out.logsumexp(1).mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert any(float(p.grad.abs().sum()) > 0 for p in model.parameters())
    # Other class counts, channels and lengths are honoured too.
    other = create_model(name, num_classes=3, in_channels=2, image_size=24).eval()
    assert other(torch.randn(2, 2, 24)).shape == (2, 3)


def test_cnn1d_is_the_papers_convbase():
    """Greydanus 2020's ConvBase: 25 channels, kernels 5/3/3, stride 2, padding 1, 125 -> 10."""
    assert cnn1d_lengths(40) == [40, 19, 10, 5]
    model = build("cnn1d")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv1d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0], c.padding[0]) for c in convs] == \
           [(25, 5, 2, 1), (25, 3, 2, 1), (25, 3, 2, 1)]
    assert model.fc.in_features == 125
    # (1*5+1)*25 + 2 * (25*3+1)*25 + 125*10+10 = 150 + 3800 + 1260
    assert n_params(model) == 5210
    assert n_params(build("mlp1d")) == 40 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10
    assert n_params(build("mlp1d", hidden_sizes=())) == 410  # logistic regression


def test_batchnorm_option_and_name_agree():
    a, b = build("cnn1d", bn=True), build("cnn1d_bn")
    assert [(k, v.shape) for k, v in a.state_dict().items()] == \
           [(k, v.shape) for k, v in b.state_dict().items()]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in b.modules()) == 3
    assert all(m.bias is None for m in b.modules() if isinstance(m, nn.Conv1d))
    assert not any(isinstance(m, nn.BatchNorm1d) for m in build("cnn1d").modules())
    # 75 BatchNorm parameters replace the 75 conv biases.
    assert n_params(b) == n_params(build("cnn1d")) - 75 + 2 * 75


@pytest.mark.parametrize("name, blocks", [("resnet1d_8", 3), ("resnet1d_20", 9)])
def test_resnet1d_structure(name, blocks):
    model = build(name)
    assert sum(isinstance(m, BasicBlock1d) for m in model.modules()) == blocks
    assert model.fc.in_features == 32  # widths 8, 16, 32
    assert build(name, width=16).fc.in_features == 64  # the CIFAR widths


@pytest.mark.parametrize("name", ["resnet1d_8", "resnet1d_20"])
def test_skip_false_removes_the_residual_add(name, monkeypatch):
    with_skip = build(name).eval()
    no_skip = build(name, skip=False).eval()
    # Option A shortcuts have no parameters: the same weights fit both networks.
    no_skip.load_state_dict(with_skip.state_dict())
    assert n_params(with_skip) == n_params(no_skip)
    x = torch.randn(4, 1, 40)
    with torch.no_grad():
        assert not torch.allclose(with_skip(x), no_skip(x))
    # Known answer: with every block's convolutions zero, a block outputs relu(shortcut(x))
    # with the skip and relu(0) = 0 without: the no-skip net is then constant (its fc bias).
    with torch.no_grad():
        for model in (with_skip, no_skip):
            for block in (m for m in model.modules() if isinstance(m, BasicBlock1d)):
                block.conv1.weight.zero_()
                block.conv2.weight.zero_()
        constant = no_skip(x)
        torch.testing.assert_close(constant, no_skip.fc.bias.expand(4, 10))
        assert with_skip(x).std(0).abs().sum() > 0  # the input still reaches the output
    # And the shortcut is never even computed without the skip.
    monkeypatch.setattr(BasicBlock1d, "shortcut", lambda self, x: 1 / 0)
    no_skip(x)
    with pytest.raises(ZeroDivisionError):
        with_skip(x)


@pytest.mark.parametrize("name, smallest", [("cnn1d", 7), ("cnn1d_bn", 7), ("resnet1d_8", 3),
                                            ("resnet1d_20", 3), ("mlp1d", 1)])
def test_too_short_signals_are_refused_and_the_shortest_runs(name, smallest):
    model = create_model(name, in_channels=1, image_size=smallest).eval()
    assert model(torch.randn(2, 1, smallest)).shape == (2, 10)
    if smallest > 1:
        with pytest.raises(ValueError, match=rf"too small.*image_size >= {smallest}"):
            create_model(name, in_channels=1, image_size=smallest - 1)


@pytest.mark.parametrize("name, options, message", [
    ("cnn1d", {"channels": 0}, "cnn1d: channels must be a positive integer"),
    ("cnn1d", {"bn": "yes"}, "cnn1d: bn must be true or false"),
    ("resnet1d_8", {"width": 7}, r"resnet1d_8: width must be a positive even integer"),
    ("resnet1d_20", {"skip": 0}, r"resnet1d_20 \(skip=False\): skip must be true or false"),
    ("mlp1d", {"hidden_sizes": (10, 0)}, "mlp1d: hidden_sizes must be positive integers"),
])
def test_bad_option_values_are_one_line_errors(name, options, message):
    with pytest.raises(ValueError, match=message) as info:
        build(name, **options)
    assert "\n" not in str(info.value)


def test_unknown_options_name_the_allowed_ones():
    with pytest.raises(ModelOptionError, match=r"'cnn1d' has no option 'batchnorm'.*allowed "
                                               r"options: channels=25, bn=False"):
        build("cnn1d", batchnorm=True)
    with pytest.raises(ModelOptionError, match=r"allowed options: skip=True, width=8"):
        build("resnet1d_8", skp=False)


@pytest.mark.parametrize("name", SIGNAL_MODELS)
def test_vmap_over_stacked_models(name):
    """An ensemble evaluated with vmap matches running its members one by one."""
    members = [build(name).eval() for _ in range(2)]
    params, buffers = stack_module_state(members)
    base = members[0]

    def run(p, b, x):
        return functional_call(base, (p, b), (x,))

    x = torch.randn(3, 1, 40)
    with torch.no_grad():
        out = vmap(run, in_dims=(0, 0, None))(params, buffers, x)
        for i, member in enumerate(members):
            torch.testing.assert_close(out[i], member(x), rtol=1e-4, atol=1e-5)


def test_resnet1d_convolutions_are_he_initialized():
    model = build("resnet1d_20", width=16)
    conv = model.layer3[1].conv1  # 64 -> 64 channels, kernel 3: fan_out = 192
    expected = (2.0 / (64 * 3)) ** 0.5
    assert float(conv.weight.detach().std()) == pytest.approx(expected, rel=0.05)


def test_a_run_refuses_the_wrong_kind_of_model_and_scales_1d_inits(tmp_path):
    from losslab.runs.config import load_config
    from losslab.train.run import _scale_init, build_trainer

    config = load_config(overrides=["data.name=mnist1d", "data.options.num_samples=200",
                                    f"data.root={tmp_path}", "model.name=small_cnn", "epochs=1"])
    with pytest.raises(ValueError, match="model 'small_cnn' takes .* 'mnist1d' holds"):
        build_trainer(config)
    torch.manual_seed(0)
    model = create_model("cnn1d", num_classes=10, in_channels=1, image_size=40)
    before = {n: p.clone() for n, p in model.named_parameters() if n.endswith("weight")}
    _scale_init(model, 3.0)  # the "larger init variance" variant must reach the 1-D convs
    for n, p in model.named_parameters():
        if n in before:
            assert torch.equal(p, 3.0 * before[n]), n
