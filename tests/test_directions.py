"""Random, interpolation and plane directions (Li et al. 2018) and their storage."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from losslab.landscape import (
    Directions,
    interpolation_direction,
    plane_through,
    project,
    random_direction,
)
from losslab.params import dot, norm, parameters_of


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 5)).double()


def test_entries_are_standard_normal_not_uniform():
    params = {"w": torch.zeros(400, 500)}
    d = random_direction(params, normalization="none", seed=3)["w"]
    assert abs(float(d.mean())) < 0.01
    assert abs(float(d.std()) - 1.0) < 0.01
    assert 0.45 < float((d < 0).double().mean()) < 0.55  # U[0,1] would be all positive
    assert float(d.abs().max()) > 3.0


def test_filter_normalization_matches_each_filter_norm():
    model = tiny_cnn()
    params = parameters_of(model)
    d = random_direction(params, normalization="filter", ignore="biasbn", seed=1)
    assert d.keys() == params.keys()
    for name, theta in params.items():
        if theta.ndim >= 2:
            dn = d[name].reshape(theta.shape[0], -1).norm(dim=1)
            tn = theta.reshape(theta.shape[0], -1).norm(dim=1)
            torch.testing.assert_close(dn, tn, rtol=1e-12, atol=0)
        else:  # conv bias, BN weight and bias, linear bias
            assert torch.count_nonzero(d[name]) == 0, name
    assert not any("running" in k for k in d)  # buffers are never directions


def test_ignore_none_normalizes_1d_tensors_as_a_whole():
    params = parameters_of(tiny_cnn())
    d = random_direction(params, normalization="filter", ignore="none", seed=1)
    d0 = random_direction(params, normalization="filter", ignore="biasbn", seed=1)
    for name, theta in params.items():
        if theta.ndim <= 1 and float(theta.norm()) == 0.0:  # BN bias starts at 0: ‖θ‖ = 0
            assert torch.count_nonzero(d[name]) == 0
        elif theta.ndim <= 1:
            assert torch.count_nonzero(d[name]) == theta.numel()
            torch.testing.assert_close(d[name].norm(), theta.norm(), rtol=1e-12, atol=0)
            assert not torch.equal(d[name], theta)  # not copied from θ (reference-tool trap)
        else:  # weight directions do not depend on ``ignore``
            assert torch.equal(d[name], d0[name])


def test_layer_and_no_normalization():
    params = parameters_of(tiny_cnn())
    lay = random_direction(params, normalization="layer", seed=2)
    raw = random_direction(params, normalization="none", ignore="none", seed=2)
    for name, theta in params.items():
        if theta.ndim >= 2:
            torch.testing.assert_close(lay[name].norm(), theta.norm(), rtol=1e-12, atol=0)
            torch.testing.assert_close(lay[name] / lay[name].norm(), raw[name] / raw[name].norm())


def test_seeded_and_reproducible():
    params = parameters_of(tiny_cnn())
    a = random_direction(params, seed=5)
    b = random_direction(params, seed=5)
    c = random_direction(params, seed=6)
    g = torch.Generator().manual_seed(5)
    e = random_direction(params, generator=g)
    assert all(torch.equal(a[k], b[k]) and torch.equal(a[k], e[k]) for k in a)
    assert not torch.equal(a["0.weight"], c["0.weight"])
    dirs = Directions.random(params, n=2, seed=5)
    assert torch.equal(dirs[0]["0.weight"], a["0.weight"])
    assert not torch.equal(dirs[0]["0.weight"], dirs[1]["0.weight"])


def test_bad_options_are_errors():
    params = {"w": torch.zeros(2, 2)}
    with pytest.raises(ValueError, match="normalization"):
        random_direction(params, normalization="filters")
    with pytest.raises(ValueError, match="ignore"):
        random_direction(params, ignore="bias")


def test_save_load_round_trip(tmp_path):
    params = parameters_of(tiny_cnn())
    dirs = Directions.random(params, n=2, normalization="layer", ignore="none", seed=9)
    weights = dirs.save(tmp_path / "dirs")
    assert weights.exists() and weights.with_suffix(".json").exists()
    back = Directions.load(tmp_path / "dirs")
    assert (back.kind, back.normalization, back.ignore, back.seed) == ("random", "layer", "none", 9)
    assert back.names == list(params) and back.shapes == [list(t.shape) for t in params.values()]
    for d, e in zip(dirs, back, strict=True):
        assert all(torch.equal(d[k], e[k]) and d[k].dtype == e[k].dtype for k in d)
    meta = json.loads(weights.with_suffix(".json").read_text())
    assert meta["count"] == 2 and len(meta["sha256"]) == 64
    weights.write_bytes(weights.read_bytes()[:-8] + b"corrupt!")
    with pytest.raises(ValueError, match="SHA-256"):
        Directions.load(tmp_path / "dirs")


def test_interpolation_direction_and_plane():
    torch.manual_seed(1)
    a, b, c = ({"w": torch.randn(3, 4, dtype=torch.float64), "b": torch.randn(3, dtype=torch.float64)}
               for _ in range(3))
    d = interpolation_direction(a, b)
    assert torch.equal(d["w"], b["w"] - a["w"])
    origin, d1, d2 = plane_through(a, b, c)
    assert abs(float(dot(d1, d2))) < 1e-12
    torch.testing.assert_close(norm(d1), norm(d2))
    coords = project([a, b, c], origin, [d1, d2])
    torch.testing.assert_close(coords[0], torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(coords[1], torch.tensor([1.0, 0.0], dtype=torch.float64))
    recon = {k: origin[k] + coords[2, 0] * d1[k] + coords[2, 1] * d2[k] for k in c}
    assert all(torch.allclose(recon[k], c[k], atol=1e-12) for k in c)
    with pytest.raises(ValueError, match="collinear"):
        plane_through(a, b, {k: 2 * b[k] - a[k] for k in a})
