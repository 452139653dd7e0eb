"""per_layer_curvature against the dense diagonal blocks of explicit matrices (float64).

The truths are built without the operators: the Hessian of the flattened mean loss by
``torch.func.hessian``, the GGN as (1/N) Σ_i J_iᵀ (diag p_i − p_i p_iᵀ) J_i with J_i from
``torch.func.jacrev`` and the softmax's closed-form output Hessian, the empirical Fisher as the
mean of g_i g_iᵀ with per-example gradients from ``vmap(grad)``. Each group's block is
C[idx][:, idx] with idx the group's slice of the flat parameter vector.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, hessian, jacrev, vmap

from losslab.errors import InputError, NotFoundError
from losslab.landscape.hessian.per_layer import module_groups, per_layer_curvature
from losslab.params import flatten, unflatten

UNEVEN = (7, 4)
N = sum(UNEVEN)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _mlp(seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()


class _Named(nn.Module):
    """features.0 (conv), features.2 (conv), classifier (linear), and a top-level parameter."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.features = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Conv2d(2, 2, 2))
        self.classifier = nn.Linear(2 * 2 * 2, 3)
        self.scale = nn.Parameter(torch.tensor(1.3))

    def forward(self, x):
        return self.scale * self.classifier(self.features(x).flatten(1))


def _data(n=N, image=False, seed=1):
    gen = torch.Generator().manual_seed(seed)
    shape = (n, 1, 5, 5) if image else (n, 3)
    x = torch.randn(*shape, generator=gen, dtype=torch.float64)
    return x, torch.randint(0, 3, (n,), generator=gen)


def _batches(x, y):
    a = UNEVEN[0]
    return [(x[:a], y[:a]), (x[a:], y[a:])]


def _params(model):
    return {k: v.detach() for k, v in model.named_parameters()}


def _dense_hessian(model, x, y):
    params = _params(model)

    def loss(flat):
        return F.cross_entropy(functional_call(model, unflatten(flat, params), (x,)), y)

    return hessian(loss)(flatten(params))


def _dense_ggn(model, x, y):
    params = _params(model)
    total = 0
    for i in range(len(x)):
        def out(flat, xi=x[i:i + 1]):
            return functional_call(model, unflatten(flat, params), (xi,)).reshape(-1)
        j = jacrev(out)(flatten(params))
        p = torch.softmax(out(flatten(params)), dim=0)
        total = total + j.T @ (torch.diag(p) - torch.outer(p, p)) @ j
    return total / len(x)


def _dense_empirical_fisher(model, x, y):
    params = _params(model)

    def one(p, xi, yi):
        return F.cross_entropy(functional_call(model, p, (xi.unsqueeze(0),)), yi.unsqueeze(0))

    g = vmap(grad(one), in_dims=(None, 0, 0))(params, x, y)
    g = torch.cat([g[k].reshape(len(x), -1) for k in params], dim=1)
    return g.T @ g / len(x)


TRUTHS = {"hessian": _dense_hessian, "ggn": _dense_ggn, "empirical_fisher": _dense_empirical_fisher}


def _index(model, names):
    """The flat indices of the parameters ``names`` in the model's flat order."""
    out, start = [], 0
    for k, v in model.named_parameters():
        if k in names:
            out.extend(range(start, start + v.numel()))
        start += v.numel()
    return torch.tensor(out)


def _check_against(model, result, truth, top_k, trace_exact=True):
    rows = result["groups"] + [result["whole"]]
    for row in rows:
        idx = _index(model, set(row["parameters"]))
        assert row["size"] == len(idx)
        block = truth[idx][:, idx]
        eig = torch.linalg.eigvalsh(block).flip(0)[:top_k].tolist()
        assert np.allclose(row["top_eigenvalues"], eig, rtol=1e-8, atol=1e-10), row["name"]
        assert row["converged"]
        tr = float(torch.trace(block))
        if trace_exact:
            assert abs(row["trace"] - tr) <= 1e-9 * max(1.0, abs(tr)), row["name"]
        else:
            assert abs(row["trace"] - tr) <= 5 * row["trace_std_error"] + 1e-9, row["name"]


@pytest.mark.parametrize("operator", list(TRUTHS))
def test_blocks_match_the_dense_diagonal_blocks(operator):
    model = _mlp()
    x, y = _data()
    truth = TRUTHS[operator](model, x, y)
    # a budget >= 3 x the size makes Hutch++ exact on the whole, the blocks take the unit vectors
    r = per_layer_curvature(model, batches=_batches(x, y), operator=operator, top_k=2,
                            trace_products=100)
    assert [g["name"] for g in r["groups"]] == ["0", "2"]
    assert [g["parameters"] for g in r["groups"]] == [["0.weight", "0.bias"],
                                                      ["2.weight", "2.bias"]]
    assert r["operator"] == operator and r["num_examples"] == N
    _check_against(model, r, truth, top_k=2)
    assert all(g["trace_method"] == "exact" for g in r["groups"])
    assert r["whole"]["trace_std_error"] == 0.0
    # the diagonal blocks hold the whole diagonal: the trace shares sum to 1
    assert r["partition"]
    assert abs(r["trace_share_sum"] - 1.0) <= 1e-10
    assert abs(r["block_trace_sum"] - r["whole"]["trace"]) <= 1e-9 * abs(r["whole"]["trace"])
    assert r["block_trace_std_error"] == 0.0
    # interlacing: a principal block's top eigenvalue never exceeds the whole's
    assert all(g["lambda_share"] <= 1 + 1e-9 for g in r["groups"])
    if operator != "hessian":  # PSD: shares in [0, 1], lambda shares sum to at least 1
        assert all(-1e-9 <= g["lambda_share"] for g in r["groups"])
        assert all(-1e-9 <= g["trace_share"] <= 1 + 1e-9 for g in r["groups"])
        assert r["lambda_share_sum"] >= 1 - 1e-9
    assert r["all_converged"]
    assert r["total_products"] == sum(g["products"] for g in r["groups"] + [r["whole"]])
    json.dumps(r, allow_nan=False)


def test_default_budget_hutch_plus_plus_on_the_whole_within_its_error():
    model = _mlp()
    x, y = _data()
    truth = _dense_hessian(model, x, y)
    r = per_layer_curvature(model, batches=_batches(x, y))  # trace_products=30 < 31 params
    assert r["whole"]["trace_method"] == "hutch++" and r["whole"]["trace_products"] <= 30
    assert r["whole"]["trace_std_error"] > 0
    _check_against(model, r, truth, top_k=1, trace_exact=False)
    for g in r["groups"]:  # 16 and 15 parameters: exact
        assert g["trace_method"] == "exact" and g["trace_products"] == g["size"]
    assert abs(r["trace_share_sum"] - 1) <= 5 * r["whole"]["trace_std_error"] / abs(
        r["whole"]["trace"])


def test_conv_net_modules_dict_groups_and_model_untouched():
    model = _Named().double()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = _data(image=True)
    truth = _dense_ggn(model, x, y)
    r = per_layer_curvature(model, batches=_batches(x, y), operator="ggn", trace_products=300)
    assert [g["name"] for g in r["groups"]] == ["scale", "features.0", "features.2",
                                                "classifier"]
    _check_against(model, r, truth, top_k=1)
    assert r["partition"] and abs(r["trace_share_sum"] - 1) <= 1e-10
    assert all(g["lambda_share"] <= 1 + 1e-9 for g in r["groups"])
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    spec = {"convs": ["features"], "head": ["classifier.weight", "classifier.bias"]}
    r = per_layer_curvature(model, batches=_batches(x, y), operator="ggn", groups=spec,
                            trace_products=300)
    assert [g["name"] for g in r["groups"]] == ["convs", "head"]
    assert r["groups"][0]["parameters"] == ["features.0.weight", "features.0.bias",
                                            "features.2.weight", "features.2.bias"]
    assert not r["partition"]  # "scale" is in no group
    _check_against(model, r, truth, top_k=1)


def test_module_groups_names():
    assert list(module_groups([k for k, _ in _mlp().named_parameters()])) == ["0", "2"]
    assert module_groups(["w", "a.b.weight", "a.b.bias"]) == {"w": ["w"],
                                                              "a.b": ["a.b.weight", "a.b.bias"]}


def test_bad_groups_raise_clearly():
    model = _Named().double()
    x, y = _data(image=True)
    batches = _batches(x, y)
    with pytest.raises(NotFoundError, match="clasifier.*classifier"):
        per_layer_curvature(model, batches=batches, groups=["features.0", "clasifier"])
    with pytest.raises(NotFoundError, match="group 'a'.*'feature'"):
        per_layer_curvature(model, batches=batches, groups={"a": ["feature"]})
    with pytest.raises(InputError, match="modules"):
        per_layer_curvature(model, batches=batches, groups="classifier")
    with pytest.raises(InputError, match="operator"):
        per_layer_curvature(model, batches=batches, operator="kfac")
    with pytest.raises(InputError, match="trace_products"):
        per_layer_curvature(model, batches=batches, trace_products=2)


def test_fisher_runs_and_is_psd_by_block():
    model = _mlp()
    x, y = _data()
    r = per_layer_curvature(model, batches=_batches(x, y), operator="fisher",
                            trace_products=100, operator_kwargs={"mc_samples": 2})
    assert r["all_converged"]
    assert all(-1e-9 <= g["lambda_share"] <= 1 + 1e-9 for g in r["groups"])
    assert abs(r["trace_share_sum"] - 1) <= 1e-10 and r["lambda_share_sum"] >= 1 - 1e-9
    again = per_layer_curvature(model, batches=_batches(x, y), operator="fisher",
                                trace_products=100, operator_kwargs={"mc_samples": 2})
    assert again == r  # the labels are drawn from the seed: deterministic
