"""GGN, Fisher and empirical Fisher operators against dense truth (float64, explicit Jacobians).

Every truth here is built without the operators' code path: the Jacobian of the flattened
outputs by ``torch.func.jacrev``, the output-space Hessian by ``torch.func.hessian``, the
per-example gradients by ``torch.func.vmap(grad)``, the exact categorical Fisher from the
softmax in closed form, and the closed forms of linear and logistic regression.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, hessian, jacrev, vmap

from losslab.landscape.hessian import (
    EmpiricalFisherOperator,
    FisherOperator,
    GGNOperator,
    HessianOperator,
    hutch_plus_plus,
    lanczos,
    spectral_density,
)
from losslab.landscape.options import EvalOptions
from losslab.params import flatten, unflatten

UNEVEN = (7, 4)  # two batches of different sizes: weighted by size, as the Hessian's


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _mlp(d_in=3, hidden=4, d_out=3, seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, d_out)).double()


N = sum(UNEVEN)


def _data(n=N, d_in=3, classes=3, seed=1, regression=False):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=gen, dtype=torch.float64)
    y = torch.randn(n, classes, generator=gen, dtype=torch.float64) if regression \
        else torch.randint(0, classes, (n,), generator=gen)
    return x, y


def _batches(x, y):
    a = UNEVEN[0]
    return [(x[:a], y[:a]), (x[a:], y[a:])]


def half_squared_error(z, y):
    """½‖z − y‖² per example."""
    return 0.5 * ((z - y) ** 2).sum(dim=1)


def _params(model):
    return {k: v.detach() for k, v in model.named_parameters()}


def _jacobian(model, x):
    """J (n·out, P) of the flattened outputs in the flattened parameters."""
    params = _params(model)

    def outputs(flat):
        return functional_call(model, unflatten(flat, params), (x,)).reshape(-1)

    return jacrev(outputs)(flatten(params))


def _dense_ggn(model, x, y, loss):
    """(1/N) Σ_i J_iᵀ ∇²_z ℓ_i J_i, with ∇²_z of the per-example loss by torch.func.hessian."""
    params = _params(model)
    z = functional_call(model, params, (x,)).detach()
    total = 0
    for i in range(len(x)):
        j = _jacobian(model, x[i:i + 1])
        h = hessian(lambda zi, yi=y[i:i + 1]: loss(zi.unsqueeze(0), yi).sum())(z[i])
        total = total + j.T @ h @ j
    return total / len(x)


def _per_example_grads(model, x, y, loss):
    params = _params(model)

    def one(p, xi, yi):
        return loss(functional_call(model, p, (xi.unsqueeze(0),)), yi.unsqueeze(0)).sum()

    grads = vmap(grad(one), in_dims=(None, 0, 0))(params, x, y)
    return torch.cat([grads[k].reshape(len(x), -1) for k in params], dim=1)


def _options(loss):
    return EvalOptions(loss_fn=loss) if loss is not None else EvalOptions()


CASES = {"cross_entropy": (False, None, lambda z, y: F.cross_entropy(z, y, reduction="none")),
         "squared_error": (True, half_squared_error, half_squared_error)}


@pytest.mark.parametrize("case", list(CASES))
def test_ggn_is_jt_hz_j_and_empirical_fisher_the_mean_of_g_gt(case):
    regression, loss_fn, loss = CASES[case]
    model = _mlp()
    x, y = _data(regression=regression)
    batches = _batches(x, y)
    ggn = GGNOperator(model, batches=batches, options=_options(loss_fn)).dense()
    truth = _dense_ggn(model, x, y, loss)
    assert torch.allclose(ggn, truth, rtol=1e-10, atol=1e-12)
    g = _per_example_grads(model, x, y, loss)
    emp = EmpiricalFisherOperator(model, batches=batches, options=_options(loss_fn)).dense()
    assert torch.allclose(emp, g.T @ g / len(x), rtol=1e-10, atol=1e-12)
    for dense in (ggn, emp):  # symmetric PSD
        assert torch.allclose(dense, dense.T, atol=1e-12)
        ev = torch.linalg.eigvalsh(dense)
        assert ev.min() >= -1e-10 * ev.max()


def test_monte_carlo_fisher_is_within_its_standard_error_of_the_exact_fisher():
    """Categorical: the exact Fisher is (1/N) Σ J_iᵀ (diag p_i − p_i p_iᵀ) J_i (= the GGN of
    cross-entropy); the MC estimate's entries differ from it by about their standard error."""
    model = _mlp()
    x, y = _data()
    exact = _dense_ggn(model, x, y, lambda z, t: F.cross_entropy(z, t, reduction="none"))
    samples = 400
    est = FisherOperator(model, batches=_batches(x, y), mc_samples=samples, seed=3).dense()
    # the standard error of each entry, from per-sample estimates of independent draws
    draws = torch.stack([FisherOperator(model, batches=_batches(x, y), mc_samples=1,
                                        seed=100 + s).dense() for s in range(40)])
    se = draws.std(dim=0) / samples ** 0.5
    z = (est - exact).abs() / se.clamp_min(1e-12)
    assert z.mean() < 1.5 and (z < 5).float().mean() > 0.97
    assert torch.allclose(est, est.T, atol=1e-12)
    assert torch.linalg.eigvalsh(est).min() >= -1e-10 * torch.linalg.eigvalsh(est).max()
    same = FisherOperator(model, batches=_batches(x, y), mc_samples=samples, seed=3).dense()
    assert torch.equal(est, same)  # seeded: one fixed matrix


def test_gaussian_fisher_matches_the_ggn_of_squared_error_in_expectation():
    model = _mlp()
    x, y = _data(regression=True)
    opts = _options(half_squared_error)
    ggn = GGNOperator(model, batches=_batches(x, y), options=opts).dense()
    fisher = FisherOperator(model, batches=_batches(x, y), options=opts, mc_samples=2000,
                            seed=0).dense()
    assert (fisher - ggn).norm() / ggn.norm() < 0.08


def test_closed_forms_linear_and_logistic_regression():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(11, 4, generator=gen, dtype=torch.float64)
    lin = nn.Linear(4, 1, bias=False).double()
    y = torch.randn(11, 1, generator=gen, dtype=torch.float64)
    opts = _options(half_squared_error)
    for op in (HessianOperator, GGNOperator):
        dense = op(lin, batches=_batches(x, y), options=opts).dense()
        assert torch.allclose(dense, x.T @ x / len(x), rtol=1e-12, atol=1e-13)
    logistic = nn.Linear(4, 3).double()
    labels = torch.randint(0, 3, (11,), generator=gen)
    h = HessianOperator(logistic, batches=_batches(x, labels)).dense()
    assert torch.allclose(GGNOperator(logistic, batches=_batches(x, labels)).dense(), h,
                          rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", [GGNOperator, EmpiricalFisherOperator, FisherOperator])
def test_every_algorithm_runs_on_every_operator(kind):
    model = _mlp(hidden=5)
    x, y = _data()
    op = kind(model, batches=_batches(x, y), wrt="weights")
    assert op.size == 3 * 5 + 5 * 3  # the weight matrices only
    dense = op.dense()
    truth = torch.linalg.eigvalsh(dense)
    top = lanczos(op, k=3, which="largest", max_iter=op.size, tol=1e-10)
    assert torch.allclose(torch.as_tensor(top.eigenvalues), truth[-3:], rtol=1e-8, atol=1e-10)
    bottom = lanczos(op, k=1, which="smallest", max_iter=op.size, tol=1e-10)
    assert bottom.eigenvalues[0] >= -1e-10 * float(truth.max())
    trace = hutch_plus_plus(op, num_products=30, seed=0)
    assert abs(trace.estimate - float(dense.trace())) <= 4 * trace.std_error + 1e-9
    density = spectral_density(op, num_vectors=2, lanczos_steps=op.size)
    assert density.num_products > 0


def test_the_model_and_its_mode_are_untouched_and_outputs_may_be_objects():
    class Wrapped(nn.Module):
        """A Hugging Face-style model: an output object with .logits."""

        def __init__(self):
            super().__init__()
            self.net = _mlp()

        def forward(self, x):
            return {"logits": self.net(x), "hidden": x}

    model = Wrapped().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = _data()
    ggn = GGNOperator(model, batches=_batches(x, y)).dense()
    plain = GGNOperator(model.net, batches=_batches(x, y)).dense()
    assert torch.equal(ggn, plain)
    assert model.training and all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_bad_input_says_what_is_required():
    model = _mlp()
    x, y = _data()
    with pytest.raises(ValueError, match="needs per-example losses"):
        EmpiricalFisherOperator(model, batches=_batches(x, y),
                                options=EvalOptions(loss_fn=F.cross_entropy))
    xr, yr = _data(regression=True)
    with pytest.raises(ValueError, match="needs a squared-error loss"):
        FisherOperator(model, batches=_batches(xr, yr),
                       options=EvalOptions(loss_fn=lambda z, t: (z - t).abs().sum(1)))
    scores = nn.Sequential(nn.Linear(3, 1), nn.Flatten(0)).double()  # one number each
    with pytest.raises(ValueError, match=r"logits of shape \(batch, ..., classes\)"):
        FisherOperator(scores, batches=(x, torch.zeros(len(x), dtype=torch.long)),
                       likelihood="categorical", options=EvalOptions(loss_fn=lambda z, t: z))
    with pytest.raises(KeyError, match="no parameter has the prefix 'classifer'"):
        GGNOperator(model, batches=_batches(x, y), wrt="classifer")


@pytest.mark.e2e  # trains a run
def test_the_landscape_command_computes_every_operators_spectrum(tmp_path, capsys):
    import json

    from losslab.cli import main
    from losslab.runs.config import load_config
    from losslab.train.run import train_run

    run = train_run(load_config(overrides=["epochs=1", "log.progress=false",
                                           "log.tensorboard=false"]), tmp_path / "r")
    top = {}
    for operator in ("hessian", "ggn", "empirical_fisher"):
        out = tmp_path / operator
        assert main(["landscape", "hessian", str(run), "--examples", "32", "--operator",
                     operator, "--out", str(out)]) == 0
        assert capsys.readouterr().out.startswith(f"{operator} on the train split")
        result = json.loads((out / "landscape_hessian.json").read_text())
        assert result["operator"] == operator
        top[operator] = result["eigenvalues"]
        if operator != "hessian":  # PSD: no negative eigenvalue beyond rounding
            assert min(result["eigenvalues"]) >= -1e-4 * max(result["eigenvalues"])
        page = (out / "landscape_hessian.html").read_text()
        assert {"hessian": "Hessian of the training loss", "ggn": "generalized Gauss-Newton",
                "empirical_fisher": "empirical Fisher"}[operator] in page
    assert top["ggn"] != top["hessian"]
    # the per-layer table: one row per module, its shares of the whole, and its bar chart
    assert main(["landscape", "curvature", str(run), "--examples", "32", "--operator", "ggn",
                 "--per-layer", "--out", str(tmp_path / "layers")]) == 0
    printed = capsys.readouterr().out
    table = json.loads((tmp_path / "layers" / "landscape_curvature.json").read_text())
    names = [g["name"] for g in table["groups"]]
    assert names[0] == "features.0.0" and names[-1] == "classifier"  # the small CNN's modules
    for g in table["groups"]:
        assert g["name"] in printed and 0 <= g["lambda_share"] <= 1 + 1e-4
    assert abs(sum(g["trace"] for g in table["groups"]) - table["whole"]["trace"]) \
        <= 4 * (table["block_trace_std_error"] + table["whole"]["trace_std_error"]) + 1e-6
    page = (tmp_path / "layers" / "landscape_curvature.html").read_text()
    assert "curvature per layer" in page and "Cauchy interlacing" in page
    with pytest.raises(SystemExit) as stop:  # argparse: one line naming the choices
        main(["landscape", "hessian", str(run), "--operator", "gauss"])
    assert stop.value.code == 2 and "invalid choice: 'gauss'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# microbatches and any model: dict batches, output objects, a user's loss


@pytest.mark.parametrize("kind", [HessianOperator, GGNOperator, EmpiricalFisherOperator,
                                  FisherOperator])
def test_microbatches_give_the_unsplit_product(kind):
    model = _mlp()
    x, y = _data()
    whole = kind(model, batches=_batches(x, y)).dense()
    split = kind(model, batches=_batches(x, y), microbatch=3)
    assert len(split.batches) == 3 + 2  # 7 -> 3+3+1, 4 -> 3+1
    assert torch.allclose(split.dense(), whole, rtol=1e-12, atol=1e-14)


class TokenOutput(dict):
    """A Hugging Face-style output: a dict whose keys are also attributes."""

    __getattr__ = dict.__getitem__


class TokenTagger(nn.Module):
    """A tiny transformer for token classification, called as ``model(**batch)``."""

    def __init__(self, vocab=6, d=4, classes=3):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(vocab, d)
        layer = nn.TransformerEncoderLayer(d, nhead=2, dim_feedforward=6, dropout=0.0,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        self.head = nn.Linear(d, classes)

    def forward(self, input_ids, labels=None):
        logits = self.head(self.encoder(self.embed(input_ids)))
        out = TokenOutput(logits=logits)
        if labels is not None:
            out["loss"] = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        return out


def _token_batches(n=6, length=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 6, (n, length), generator=gen)
    labels = torch.randint(0, 3, (n, length), generator=gen)
    return [{"input_ids": ids[:4], "labels": labels[:4]},
            {"input_ids": ids[4:], "labels": labels[4:]}]


def _finite_difference_hessian(model, loss_of_params, h=1e-5):
    """Columns (g(θ + h e_j) − g(θ − h e_j)) / 2h of first-order gradients alone: a truth
    independent of double backpropagation (torch.func.hessian through LayerNorm's batched
    double backward does not give a symmetric matrix here)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    params = _params(model)
    flat = flatten(params)

    def gradient(f):
        return grad(lambda q: loss_of_params(unflatten(q, params)))(f)

    eye = torch.eye(len(flat), dtype=flat.dtype)
    with sdpa_kernel(SDPBackend.MATH):
        cols = [(gradient(flat + h * e) - gradient(flat - h * e)) / (2 * h) for e in eye]
    return torch.stack(cols, dim=1)


def test_a_transformer_called_with_dict_batches():
    model = TokenTagger().double()
    batches = _token_batches()
    n = sum(len(b["labels"]) for b in batches)

    def mean_loss(params):  # the model's own .loss per batch, weighted by the batch's size
        return sum(len(b["labels"]) / n * functional_call(model, params, (), b)["loss"]
                   for b in batches)

    op = HessianOperator(model, batches=batches, dtype=torch.float64)
    truth = _finite_difference_hessian(model, mean_loss)
    assert torch.allclose(op.dense(max_size=2000), truth, rtol=1e-6, atol=1e-8)
    # the output-space operators use the logits and the per-example token cross-entropy
    whole = GGNOperator(model, batches=batches)
    ev = torch.linalg.eigvalsh(whole.dense(max_size=2000))
    assert ev.min() >= -1e-10 * ev.max()
    reverse = GGNOperator(model, batches=batches)
    reverse.forward_mode = False  # J v by reverse over reverse: the same matrix
    assert torch.allclose(reverse.dense(max_size=2000), whole.dense(max_size=2000),
                          rtol=1e-9, atol=1e-12)
    ggn = GGNOperator(model, batches=batches, wrt="head").dense()
    head = HessianOperator(model, batches=batches, wrt="head").dense()
    assert torch.allclose(ggn, head, rtol=1e-8, atol=1e-10)  # linear in the last layer: equal
    for kind in (EmpiricalFisherOperator, FisherOperator):
        dense = kind(model, batches=batches, wrt="head").dense()
        ev = torch.linalg.eigvalsh(dense)
        assert torch.allclose(dense, dense.T, atol=1e-12) and ev.min() >= -1e-10 * ev.max()


def test_a_regression_mlp_with_a_users_loss_of_outputs_and_batch():
    model = _mlp(d_out=2)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(9, 3, generator=gen, dtype=torch.float64)
    t = torch.randn(9, 2, generator=gen, dtype=torch.float64)
    batches = [{"x": x[:5], "target": t[:5]}, {"x": x[5:], "target": t[5:]}]

    class Regressor(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, x, target=None):
            return self.net(x)

    def loss(outputs, batch):  # per example, from the whole batch dict
        return 0.5 * ((outputs - batch["target"]) ** 2).sum(dim=1)

    options = EvalOptions(loss_fn=loss)
    reg = Regressor()
    h = HessianOperator(reg, batches=batches, options=options).dense()
    plain = HessianOperator(model, batches=[(x[:5], t[:5]), (x[5:], t[5:])],
                            options=EvalOptions(loss_fn=half_squared_error)).dense()
    assert torch.allclose(h, plain, rtol=1e-12, atol=1e-14)
    ggn = GGNOperator(reg, batches=batches, options=options).dense()
    assert torch.allclose(ggn, _dense_ggn(model, x, t, half_squared_error), rtol=1e-10,
                          atol=1e-12)


@pytest.mark.parametrize("kind", [HessianOperator, GGNOperator])
def test_eigenvector_directions_are_the_dense_eigenvectors(kind):
    from losslab.landscape.directions import Directions

    model = _mlp()
    x, y = _data()
    op = kind(model, batches=_batches(x, y))
    dense = op.dense()
    values, vectors = torch.linalg.eigh(dense)
    dirs = Directions.eigenvectors(op, _params(model), 2, max_iter=op.size, tol=1e-10)
    assert dirs.kind == "eigenvectors_largest" and len(dirs) == 2
    assert dirs.extra["eigenvalues"] == pytest.approx(values[-2:].flip(0).tolist(), rel=1e-9)
    for d, truth in zip(dirs, (vectors[:, -1], vectors[:, -2]), strict=True):
        flat = flatten(d)
        assert abs(float(flat @ truth)) == pytest.approx(1.0, abs=1e-9)  # the same, up to sign
        assert torch.allclose(dense @ flat, float(flat @ dense @ flat) * flat, atol=1e-8)
    if kind is HessianOperator:  # (the GGN's null space is one repeated 0: Lanczos sees it once)
        bottom = Directions.eigenvectors(op, _params(model), 2, which="smallest",
                                         max_iter=op.size, tol=1e-10)
        assert bottom.extra["eigenvalues"] == pytest.approx(values[:2].tolist(), abs=1e-9)
    filtered = Directions.eigenvectors(op, _params(model), 2, normalization="filter",
                                       ignore="biasbn", max_iter=op.size, tol=1e-10)
    w = _params(model)["0.weight"]
    assert torch.allclose(filtered[0]["0.weight"].norm(dim=1), w.norm(dim=1))
    assert filtered[0]["0.bias"].abs().max() == 0


class _Branchy(nn.Module):
    """A model whose forward pass reads a value on the host, which tracing cannot follow."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = _mlp()

    def forward(self, x):
        z = self.lin(x)
        return z * 2 if float(z.detach().sum()) > -1e9 else z


@pytest.mark.parametrize("kind", [HessianOperator, GGNOperator, EmpiricalFisherOperator,
                                  FisherOperator])
def test_one_batch_reuses_its_forward_pass_and_gives_the_same_products(kind):
    x, y = _data()
    for model in (_mlp(), _Branchy()):
        kept = kind(model, batches=(x, y))
        plain = kind(model, batches=(x, y))
        plain.reuse_forward = False
        assert kept._keeps_forward() and not plain._keeps_forward()
        assert torch.allclose(kept.dense(), plain.dense(), rtol=1e-13, atol=1e-15)
        assert kept.num_products == plain.num_products
        if kind is HessianOperator:  # the gradient's graph, kept for the second backward pass
            assert list(kept._graphs) == [0] and not plain._graphs
        else:  # a model that cannot be traced: each product runs its own forward pass
            assert (kept._linear[0] is not None) == (not isinstance(model, _Branchy))
    # several batches (microbatches) keep nothing unless asked: their activations would add up
    assert not kind(_mlp(), batches=(x, y), microbatch=4)._keeps_forward()
