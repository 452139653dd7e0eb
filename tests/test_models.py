"""Tests for the model zoo: shapes, input-size checks, parameter counts, errors, torch.func."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from losslab.models import (
    ModelOptionError,
    create_model,
    list_models,
    model_inputs,
    model_options,
)

EXPECTED_NAMES = {
    "mlp", "small_cnn", "lenet", "alexnet",
    "vgg9", "vgg11", "vgg16", "vgg19", "vgg9_bn", "vgg11_bn", "vgg16_bn", "vgg19_bn",
    "vgg16_dmc", "vgg16_bn_dmc",
    "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
    "preresnet110", "preresnet164",
    "wide_resnet", "wrn28_10", "wrn16_4",
    "resnet18", "resnet34",
    "mobilenetv2",
    "densenet121", "densenet_bc",
    # 1-D signal models (MNIST-1D), tested in test_models_1d.py
    "mlp1d", "cnn1d", "cnn1d_bn", "resnet1d_8", "resnet1d_20",
}
CIFAR_RESNETS = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]
SMALL = ["mlp", "lenet", "small_cnn", *CIFAR_RESNETS]
ALL = sorted(n for n in list_models() if model_inputs(n) == "image")  # NCHW models


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def logits(model: nn.Module, c: int, size: int, batch: int = 2) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.randn(batch, c, size, size))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --- registry ---------------------------------------------------------------------------------


def test_list_models_covers_every_name():
    models = list_models()
    assert set(models) == EXPECTED_NAMES
    for name, description in models.items():
        assert description.strip() and "\n" not in description, name


def test_unknown_name_suggests_the_closest():
    with pytest.raises(ValueError, match=r"unknown model 'resnet21'.*'resnet20'") as info:
        create_model("resnet21")
    assert "valid models:" in str(info.value) and "densenet121" in str(info.value)
    with pytest.raises(ValueError, match=r"did you mean 'resnet20'"):
        create_model("ResNet20")


def test_unknown_option_names_it_and_the_allowed_ones():
    with pytest.raises(ModelOptionError, match=r"'resnet20' has no option 'skp'.*did you mean "
                                               r"'skip'.*allowed options: skip=True"):
        create_model("resnet20", skp=False)
    # Both: a TypeError like any unexpected keyword, a ValueError like any bad config.
    with pytest.raises(TypeError):
        create_model("mlp", hidden=(10,))
    with pytest.raises(ValueError, match=r"allowed options: none"):
        create_model("resnet18", dropout=0.1)


def test_common_arguments_are_validated():
    for bad in ({"num_classes": 0}, {"in_channels": -1}, {"image_size": 2.5},
                {"num_classes": True}):
        with pytest.raises(ValueError, match="must be a positive integer"):
            create_model("small_cnn", **bad)
    # Sizes read off numpy arrays are fine.
    model = create_model("small_cnn", num_classes=np.int64(7), in_channels=np.int32(1),
                         image_size=np.int64(8))
    assert logits(model, 1, 8).shape == (2, 7)


def test_bad_option_values_are_refused():
    with pytest.raises(ValueError, match="6n \\+ 4"):
        create_model("wide_resnet", depth=27)
    with pytest.raises(ValueError, match="hidden_sizes"):
        create_model("mlp", hidden_sizes=(10, 0))
    with pytest.raises(ValueError, match="dropout"):
        create_model("wrn16_4", dropout=1.5)


def test_model_options_report_defaults():
    assert model_options("resnet56") == {"skip": True}
    assert model_options("wide_resnet") == {"depth": 28, "widen_factor": 10, "dropout": 0.0}
    assert model_options("lenet") == {}


# --- shapes and input sizes ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_forward_on_cifar_and_mnist_shapes(name):
    for c, size in ((3, 32), (1, 28)):
        model = create_model(name, in_channels=c, image_size=size)
        out = logits(model, c, size)  # train mode: BatchNorm uses batch statistics
        assert out.shape == (2, 10), (name, c, size)
        assert torch.isfinite(out).all(), (name, c, size)


@pytest.mark.parametrize("name", SMALL)
def test_small_models_run_on_digits(name):
    model = create_model(name, in_channels=1, image_size=8).eval()
    assert logits(model, 1, 8).shape == (2, 10)


@pytest.mark.parametrize("name", ALL)
def test_num_classes_is_honoured(name):
    model = create_model(name, num_classes=100, in_channels=1, image_size=28)
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    assert last.out_features == 100
    assert logits(model.eval(), 1, 28).shape == (2, 100)


@pytest.mark.parametrize("name, size, message", [
    ("vgg16", 8, r"vgg16 downsamples by 32 \(5 max-pools\); image_size=8 is too small: the 4th "
                 r"downsampling would see a 1x1 map. It needs image_size >= 17"),
    ("vgg16_bn", 16, r"vgg16_bn downsamples by 32.*image_size >= 17"),
    ("vgg11", 8, r"vgg11 downsamples by 32"),
    ("vgg19", 8, r"vgg19 downsamples by 32"),
    ("alexnet", 8, r"alexnet downsamples by 16 \(a stride-2 stem and 3 max-pools\); "
                   r"image_size=8 is too small.*>= 9"),
    ("resnet18", 4, r"resnet18 downsamples by 8"),
    ("mobilenetv2", 4, r"mobilenetv2 downsamples by 8"),
    ("densenet121", 4, r"densenet121 downsamples by 8 \(3 transitions\)"),
    ("resnet20", 2, r"resnet20 downsamples by 4"),
])
def test_impossible_input_sizes_are_refused(name, size, message):
    with pytest.raises(ValueError, match=message):
        create_model(name, in_channels=1, image_size=size)


@pytest.mark.parametrize("name", ALL)
def test_smallest_accepted_size_runs(name):
    """The size check is tight: the smallest accepted size runs, one pixel less is refused."""
    size = next(s for s in range(1, 40) if _accepts(name, s))
    model = create_model(name, in_channels=1, image_size=size).eval()
    assert logits(model, 1, size).shape == (2, 10)
    if size > 1:
        with pytest.raises(ValueError, match="too small"):
            create_model(name, in_channels=1, image_size=size - 1)


def _accepts(name: str, size: int) -> bool:
    try:
        create_model(name, in_channels=1, image_size=size)
    except ValueError:
        return False
    return True


# --- parameter counts ---------------------------------------------------------------------------

# (model, options, published count, source). Counts are for 10 classes, 3 input channels.
PUBLISHED = [
    # He et al. 2016, "Deep residual learning", Table 6 (CIFAR-10, option A shortcuts).
    ("resnet20", {}, 0.27e6, "He et al. 2016 Table 6"),
    ("resnet32", {}, 0.46e6, "He et al. 2016 Table 6"),
    ("resnet44", {}, 0.66e6, "He et al. 2016 Table 6"),
    ("resnet56", {}, 0.85e6, "He et al. 2016 Table 6"),
    ("resnet110", {}, 1.7e6, "He et al. 2016 Table 6"),
    # He et al. 2016b, "Identity mappings in deep residual networks", CIFAR tables.
    ("preresnet110", {}, 1.7e6, "He et al. 2016b"),
    ("preresnet164", {}, 1.7e6, "He et al. 2016b"),
    # Zagoruyko & Komodakis 2016, "Wide residual networks", CIFAR tables.
    ("wrn28_10", {}, 36.5e6, "Zagoruyko & Komodakis 2016"),
    ("wide_resnet", {"depth": 16, "widen_factor": 4}, 2.75e6, "Zagoruyko & Komodakis 2016"),
    # CIFAR ResNet-18/34 (3x3 stem, no max-pool), the counts widely reported for CIFAR-10.
    ("resnet18", {}, 11.17e6, "CIFAR ResNet-18, 10 classes"),
    ("resnet34", {}, 21.28e6, "CIFAR ResNet-34, 10 classes"),
    # Sandler et al. 2018 body (3.50M with 1000 classes) with a 1280 -> 10 classifier.
    ("mobilenetv2", {}, 2.24e6, "Sandler et al. 2018, 10-way head"),
    # Huang et al. 2017: DenseNet-121 body with CIFAR stem; DenseNet-BC (L=100, k=12) 0.8M.
    ("densenet121", {}, 6.96e6, "Huang et al. 2017, CIFAR stem"),
    ("densenet_bc", {}, 0.8e6, "Huang et al. 2017 Table 2 (rounded to 0.1M)"),
    # Simonyan & Zisserman config D convs (14.71M) + a single 512 -> 10 linear classifier.
    ("vgg16", {}, 14.72e6, "Simonyan & Zisserman 2015 config D, CIFAR classifier"),
]


@pytest.mark.parametrize("name, options, published, source", PUBLISHED,
                         ids=[f"{p[0]}{p[1] or ''}" for p in PUBLISHED])
def test_parameter_counts_match_published(name, options, published, source):
    count = n_params(create_model(name, **options))
    # 3% covers the papers' rounding (0.8M is 0.77M exactly: 4%, hence its own tolerance).
    tolerance = 0.05 if name == "densenet_bc" else 0.03
    assert abs(count - published) <= tolerance * published, (name, count, published, source)


def test_wrn_conveniences_match_the_generic_builder():
    assert n_params(create_model("wrn16_4")) == n_params(
        create_model("wide_resnet", depth=16, widen_factor=4))


def test_vgg_batch_norm_option_equals_bn_name():
    a, b = create_model("vgg16", batch_norm=True), create_model("vgg16_bn")
    assert [(k, v.shape) for k, v in a.state_dict().items()] == \
           [(k, v.shape) for k, v in b.state_dict().items()]


# --- shortcuts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CIFAR_RESNETS)
def test_noshort_resnets_share_parameters_but_not_function(name):
    with_skip = create_model(name, in_channels=1, image_size=8).eval()
    no_skip = create_model(name, in_channels=1, image_size=8, skip=False).eval()
    # Option A shortcuts have no parameters: the same weights fit both networks.
    no_skip.load_state_dict(with_skip.state_dict())
    assert n_params(with_skip) == n_params(no_skip)
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert not torch.allclose(with_skip(x), no_skip(x))


# --- torch.func ---------------------------------------------------------------------------------


def test_functional_call_does_not_touch_the_model():
    model = create_model("resnet20", in_channels=1, image_size=8).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = {k: torch.zeros_like(v) for k, v in model.named_parameters()}
    x = torch.randn(2, 1, 8, 8)
    out = functional_call(model, params, (x,))
    assert torch.allclose(out, torch.zeros_like(out))  # all-zero weights: zero logits
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("name", ALL)
def test_vmap_over_stacked_models(name):
    """An ensemble evaluated with vmap matches running its members one by one."""
    size = next(s for s in (3, 5, 9, 17) if _accepts(name, s))
    members = [create_model(name, in_channels=1, image_size=size).eval() for _ in range(2)]
    params, buffers = stack_module_state(members)
    base = members[0]

    def run(p, b, x):
        return functional_call(base, (p, b), (x,))

    x = torch.randn(2, 1, size, size)
    with torch.no_grad():
        out = vmap(run, in_dims=(0, 0, None))(params, buffers, x)
        for i, member in enumerate(members):
            torch.testing.assert_close(out[i], member(x), rtol=1e-4, atol=1e-5)


# --- the quick-start promise ----------------------------------------------------------------------


def test_small_cnn_learns_digits_quickly():
    """The CPU quick-start default: > 95% test accuracy on sklearn digits within 10 epochs."""
    datasets = pytest.importorskip("sklearn.datasets")
    x, y = datasets.load_digits(return_X_y=True)
    x = torch.tensor(x, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
    x = (x - x.mean()) / x.std()
    y = torch.tensor(y)
    perm = torch.randperm(len(x))
    train, test = perm[:1437], perm[1437:]
    model = create_model("small_cnn", in_channels=1, image_size=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    epochs, batch = 10, 64
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * -(-len(train) // batch))
    for _ in range(epochs):
        model.train()
        order = train[torch.randperm(len(train))]
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x[test]).argmax(1) == y[test]).float().mean().item()
    assert accuracy > 0.95


def test_vgg16_dmc_is_the_mode_connectivity_codes_vgg16():
    """Garipov et al.'s VGG16 (dnn-mode-connectivity models/vgg.py): blocks [[64, 64], [128,
    128], [256]*3, [512]*3, [512]*3] of biased 3x3 convs, no BatchNorm, then Dropout-512-ReLU-
    Dropout-512-ReLU-classes; parameter shapes in their order."""
    blocks = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]
    expected, c_in = [], 3
    for block in blocks:
        for c in block:
            expected += [(c, c_in, 3, 3), (c,)]
            c_in = c
    expected += [(512, 512), (512,), (512, 512), (512,), (10, 512), (10,)]
    model = create_model("vgg16_dmc")
    assert [tuple(p.shape) for p in model.parameters()] == expected
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    x = torch.randn(4, 3, 32, 32)
    model.train()
    assert not torch.equal(model(x), model(x))  # dropout acts in training
    model.eval()
    assert torch.equal(model(x), model(x))
    bn = create_model("vgg16_bn_dmc")
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in bn.modules()) == 13
