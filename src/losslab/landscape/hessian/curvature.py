"""Curvature in the network's output space: the generalized Gauss-Newton and the Fisher matrices.

With z = f(x; θ) the network's outputs and J = ∂z/∂θ, the mean loss's Hessian splits as
H = JᵀH_z J + Σ (∂ℓ/∂z)·∂²z/∂θ²; dropping the second term gives the **generalized Gauss-Newton**
G = Jᵀ H_z J (Schraudolph 2002; Martens 2014, "New insights and perspectives on the natural
gradient method"), positive semi-definite whenever the loss is convex in z (cross-entropy,
squared error). For a loss that is the negative log-likelihood of an exponential family in its
natural parameters (cross-entropy on logits, squared error) G equals the **Fisher**

    F = E_x E_{ŷ ~ p(·|f(x))} [ ∇_θ log p(ŷ|x) ∇_θ log p(ŷ|x)ᵀ ],

which :class:`FisherOperator` estimates by Monte Carlo, labels drawn from the model's own
predictive (seeded, drawn once, so the operator is one fixed PSD matrix), and
:class:`EmpiricalFisherOperator` replaces by the **empirical Fisher** (1/N) Σ_i g_i g_iᵀ of the
per-example gradients at the true labels (Kunstner, Hennig & Balles 2019 on how it differs).

All three are products in output space: per batch, J v by forward mode (``torch.func.jvp``),
the output-space matrix applied to it, and Jᵀ(·) by reverse mode (``torch.func.vjp``), on
``functional_call`` of the model, never mutated. The Fishers' output matrix is the average of
s sᵀ over the examples (and samples), with s = ∂ℓ_i/∂z_i the gradient of one example's loss at
its outputs, so g_i = J_iᵀ s_i without per-example parameter gradients. Batches are weighted by
their sizes exactly as :class:`~losslab.landscape.hessian.operator.HessianOperator`'s, the same
``wrt=`` selection applies, and every algorithm (Lanczos, traces, SLQ) runs on them unchanged.

The point and the data are fixed, so where the data is one batch the forward pass is done once:
``torch.func.linearize`` keeps v ↦ J v and ``vjp`` keeps u ↦ Jᵀu, and each later product
propagates only the tangent and the cotangent (the same numbers, in about half the time). With
several batches or microbatches nothing is kept, since that would hold all their activations at
once; ``op.reuse_forward = True`` (or ``False``) overrides the choice.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import jvp, linearize, vjp

from losslab.errors import InputError
from losslab.landscape.options import EvalOptions, batch_mean
from losslab.params import flatten, unflatten

from .operator import DEFAULTS, HessianOperator, ParamSelection, eval_mode

__all__ = ["GGNOperator", "FisherOperator", "EmpiricalFisherOperator", "LIKELIHOODS", "OPERATORS",
           "operator_class"]

log = logging.getLogger(__name__)

LIKELIHOODS = ("categorical", "gaussian")


def _tensor_output(out: Any) -> Tensor:
    """The outputs as one tensor: a tensor, or the ``logits`` of a model output object or
    dict (a Hugging Face-style ``ModelOutput``)."""
    if isinstance(out, Tensor):
        return out
    logits = out.get("logits") if isinstance(out, Mapping) else getattr(out, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    raise InputError(f"the model returned a {type(out).__name__}; the output-space curvature "
                     "needs a tensor of outputs, or an object or dict with .logits")


class _OutputSpaceOperator(HessianOperator):
    """Jᵀ M J summed over batches with the Hessian's batch weights; subclasses give M."""

    def _outputs(self, params: Mapping[str, Tensor], x: Any) -> Tensor:
        return _tensor_output(self._call(params, x))

    def _output_product(self, index: int, z: Tensor, y: Any, u: Tensor) -> Tensor:
        raise NotImplementedError

    forward_mode = True  # J v by forward mode until an operator lacks it (then reverse mode)

    def _matvec(self, v: Tensor) -> Tensor:
        vs = unflatten(v, self.params)
        out = torch.zeros(self.size, dtype=self.dtype, device=self.device)
        with eval_mode(self.model):
            for b, ((x, y), w) in enumerate(zip(self.batches, self.batch_weights, strict=True)):
                grads = self._jt_m_j(b, x, y, vs)
                out.add_(flatten({k: grads[k] for k in self.names}), alpha=w)
        return out

    def _linearized(self, b: int, f) -> tuple[Tensor, Any, Any] | None:
        """Batch b's outputs z, v ↦ J v and u ↦ Jᵀu, computed once: the point and the data are
        fixed, so one forward pass serves every product (``torch.func.linearize`` traces the
        tangent computation; ``vjp`` keeps the graph for the pullback), about half the time of
        a product that runs its own forward passes. None where the model cannot be traced."""
        cache = self.__dict__.setdefault("_linear", {})
        if b not in cache:
            try:
                with warnings.catch_warnings():  # const folding's note about unnamed constants
                    warnings.filterwarnings("ignore", message="Attempted to insert a get_attr")
                    z, push = linearize(f, self.params)
                _, pull = vjp(f, self.params)
                cache[b] = (z.detach(), push, pull)
            except (RuntimeError, NotImplementedError, TypeError) as e:
                log.info("cannot keep the linearization (%s); each product runs forward", e)
                self.reuse_forward, cache[b] = False, None
        return cache[b]

    def _jt_m_j(self, b: int, x: Any, y: Any, vs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Jᵀ M J v for one batch: J v by ``torch.func.jvp`` and Jᵀ by ``vjp`` (from a stored
        linearization where :meth:`_keeps_forward`); for a model with an operation that has no
        forward-mode derivative (CPU attention kernels), J v by reverse over reverse,
        J v = ∂/∂u (Jᵀu · v), from one forward pass."""
        def f(params):
            return self._outputs(params, x)

        if self.forward_mode:
            try:
                stored = self._linearized(b, f) if self._keeps_forward() else None
                if stored is not None:
                    z, push, pull = stored
                    jv = push(vs)
                else:
                    z, jv = jvp(f, (self.params,), (vs,))
            except NotImplementedError as e:  # e.g. scaled_dot_product attention on a CPU
                log.info("no forward-mode derivative (%s); J v by reverse mode", e)
                self.forward_mode = False
            else:
                mu = self._output_product(b, z.detach(), y, jv.detach())
                if stored is None:
                    _, pull = vjp(f, self.params)
                return pull(mu)[0]
        with torch.enable_grad():
            leaves = {k: t.detach().requires_grad_(True) for k, t in self.params.items()}
            z = f(leaves)
            u = torch.zeros_like(z, requires_grad=True)
            jtu = torch.autograd.grad(z, list(leaves.values()), u, create_graph=True)
            dot = sum((g * vs[k]).sum() for g, k in zip(jtu, leaves, strict=True))
            (jv,) = torch.autograd.grad(dot, u)
            mu = self._output_product(b, z.detach(), y, jv.detach())
            grads = torch.autograd.grad(z, list(leaves.values()), mu)
        return dict(zip(leaves, grads, strict=True))


class GGNOperator(_OutputSpaceOperator):
    """The generalized Gauss-Newton Jᵀ H_z J of the mean loss, matrix-free (see the module
    docstring). H_z, the Hessian of a batch's mean loss in its outputs, is applied by double
    backpropagation through ``loss_fn`` alone, so any loss twice differentiable in the outputs
    works (cross-entropy, squared error, a user's). Arguments as
    :class:`~losslab.landscape.hessian.operator.HessianOperator`'s."""

    def _output_product(self, index: int, z: Tensor, y: Any, u: Tensor) -> Tensor:
        with torch.enable_grad():
            z = z.requires_grad_(True)
            (g,) = torch.autograd.grad(batch_mean(self.loss_fn(z, y)), z, create_graph=True)
            (hu,) = torch.autograd.grad((g * u).sum(), z, allow_unused=True)
        return torch.zeros_like(z) if hu is None else hu


def _per_example(losses: Tensor, n: int, what: str) -> Tensor:
    if losses.ndim != 1 or losses.shape[0] != n:
        raise InputError(f"{what} needs per-example losses from loss_fn (shape ({n},), as "
                         f"cross_entropy_per_example gives), got shape {tuple(losses.shape)}")
    return losses


class _FisherBase(_OutputSpaceOperator):
    """The average over examples (and samples) of s sᵀ in output space, with the gradients s of
    each example's loss at its outputs computed once at construction (the point is fixed):
    ``self._scores[b]`` of shape (S, n, *output) for batch b."""

    what = "the Fisher"

    def _scores_of(self, z: Tensor, y: Any) -> Tensor:
        """The per-example output gradients at targets ``y``: (n, *output)."""
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            losses = _per_example(self.loss_fn(z, y), z.shape[0], self.what)
            (s,) = torch.autograd.grad(losses.sum(), z)  # ℓ_i depends on z_i alone
        return s

    def _output_product(self, index: int, z: Tensor, y: Any, u: Tensor) -> Tensor:
        s = self._scores[index]                              # (S, n, *out)
        dims = tuple(range(2, s.ndim))
        coef = (s * u.unsqueeze(0)).sum(dim=dims, keepdim=True)  # s_i · u_i per sample
        return (s * coef).mean(dim=0) / z.shape[0]           # (1/n) Σ_i mean_s s (s·u)

    def _outputs_at_point(self) -> list[Tensor]:
        with eval_mode(self.model), torch.no_grad():
            return [self._outputs(self.params, x) for x, _ in self.batches]


class EmpiricalFisherOperator(_FisherBase):
    """The empirical Fisher (1/N) Σ_i g_i g_iᵀ, g_i = ∇_θ ℓ(f(x_i; θ), y_i) at the true labels
    (see the module docstring). ``loss_fn`` must give per-example losses. Arguments as
    :class:`~losslab.landscape.hessian.operator.HessianOperator`'s."""

    what = "the empirical Fisher"

    def __init__(self, model: nn.Module, point: Mapping[str, Tensor] | Any = None, *,
                 batches: Iterable[tuple[Any, Any]] | tuple[Tensor, Tensor],
                 buffers: Mapping[str, Tensor] | None = None, wrt: ParamSelection = "all",
                 options: EvalOptions = DEFAULTS, dtype: torch.dtype | None = None,
                 microbatch: int | None = None) -> None:
        super().__init__(model, point, batches=batches, buffers=buffers, wrt=wrt,
                         options=options, dtype=dtype, microbatch=microbatch)
        self._scores = [self._scores_of(z, y).unsqueeze(0)
                        for z, (_, y) in zip(self._outputs_at_point(), self.batches, strict=True)]


def _with_labels(y: Any, labels: Tensor) -> Any:
    """The targets with sampled labels: the labels themselves, or a dict batch with them."""
    return {**y, "labels": labels} if isinstance(y, Mapping) else labels


class FisherOperator(_FisherBase):
    """The Monte-Carlo Fisher: ``mc_samples`` labels per example drawn from the model's
    predictive at the point (``seed``, once), F ≈ (1/N) Σ_i (1/S) Σ_s g_is g_isᵀ.

    ``likelihood``: ``"categorical"`` (outputs are logits of shape (n, classes), the predictive
    is their softmax; the default when the targets are class indices) or ``"gaussian"`` (the
    loss is a squared error c·‖z − y‖², whose Gaussian predictive N(z, I/(2c)) has it as its
    negative log-likelihood up to a constant; the default for floating targets). In
    expectation F equals the GGN for both (see the module docstring)."""

    def __init__(self, model: nn.Module, point: Mapping[str, Tensor] | Any = None, *,
                 batches: Iterable[tuple[Any, Any]] | tuple[Tensor, Tensor],
                 buffers: Mapping[str, Tensor] | None = None, wrt: ParamSelection = "all",
                 options: EvalOptions = DEFAULTS, dtype: torch.dtype | None = None,
                 microbatch: int | None = None, likelihood: str | None = None,
                 mc_samples: int = 1, seed: int = 0) -> None:
        super().__init__(model, point, batches=batches, buffers=buffers, wrt=wrt,
                         options=options, dtype=dtype, microbatch=microbatch)
        if likelihood is not None and likelihood not in LIKELIHOODS:
            raise InputError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        if mc_samples < 1:
            raise InputError(f"mc_samples must be >= 1, got {mc_samples}")
        self.mc_samples, self.seed = int(mc_samples), int(seed)
        gen = torch.Generator().manual_seed(self.seed)
        self._scores = []
        kinds = set()
        for z, (_, y) in zip(self._outputs_at_point(), self.batches, strict=True):
            labels = y["labels"] if isinstance(y, Mapping) else y
            kind = likelihood or ("gaussian" if labels.is_floating_point() else "categorical")
            draw = self._categorical if kind == "categorical" else self._gaussian
            self._scores.append(torch.stack([self._scores_of(z, _with_labels(y, draw(z, gen)))
                                             for _ in range(self.mc_samples)]))
            kinds.add(kind)
        self.likelihood = kinds.pop() if len(kinds) == 1 else likelihood

    @staticmethod
    def _categorical(z: Tensor, gen: torch.Generator) -> Tensor:
        """One class per example (per position of a sequence) from the softmax of the logits
        (the last dimension)."""
        if z.ndim < 2 or not z.is_floating_point():
            raise InputError(f"the categorical Fisher needs logits of shape (batch, ..., "
                             f"classes) from the model, got a tensor of shape {tuple(z.shape)}")
        probs = torch.softmax(z.detach().to("cpu", torch.float64), dim=-1)
        flat = torch.multinomial(probs.reshape(-1, z.shape[-1]), 1, generator=gen)
        return flat.reshape(z.shape[:-1]).to(z.device)

    def _gaussian(self, z: Tensor, gen: torch.Generator) -> Tensor:
        c = self._squared_error_scale(z)
        noise = torch.randn(z.shape, generator=gen, dtype=torch.float64).to(z.device, z.dtype)
        return (z + noise / (2 * c) ** 0.5).detach()

    def _squared_error_scale(self, z: Tensor) -> float:
        """c of a loss c·‖z − y‖² per example, read from the loss at two offsets (and checked:
        a loss that is not a squared error has no Gaussian predictive it is the NLL of)."""
        base = torch.zeros_like(z[:1])
        one, two = base.clone(), base.clone()
        one.view(-1)[0], two.view(-1)[0] = 1.0, 2.0
        at1, at2 = (float(self.loss_fn(base, t).reshape(-1)[0]) for t in (one, two))
        if not at1 > 0 or abs(at2 - 4 * at1) > 1e-6 * abs(at2):
            raise InputError("the gaussian Fisher needs a squared-error loss c·‖z − y‖² "
                             f"(loss_fn gave {at1:g} and {at2:g} at distances 1 and 2)")
        return at1


#: the curvature operators by the names options and the command line use
OPERATORS: dict[str, type[HessianOperator]] = {
    "hessian": HessianOperator, "ggn": GGNOperator, "fisher": FisherOperator,
    "empirical_fisher": EmpiricalFisherOperator}


def operator_class(name: str, allowed: Iterable[str] = tuple(OPERATORS)) -> type[HessianOperator]:
    """The operator class ``name`` names; an error listing the ``allowed`` names otherwise."""
    allowed = list(allowed)
    if name not in allowed:
        raise InputError(f"operator must be one of {allowed}, got {name!r}")
    return OPERATORS[name]
