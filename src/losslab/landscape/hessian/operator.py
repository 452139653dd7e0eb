"""Matrix-free symmetric operators: the Hessian of a data set's mean loss, and explicit matrices.

The algorithms of this package (:func:`~losslab.landscape.hessian.eigensolvers.lanczos`, power
iteration, Hutchinson / Hutch++ traces, stochastic Lanczos quadrature) only need an object
with ``size`` (P), ``dtype``, ``device`` and ``matvec(v) -> H v`` on flat vectors of length P;
:class:`SymmetricOperator` is that interface. The operator is kept apart from the algorithm,
after hessian-eigenthings (v1), so every algorithm works on any operator and is tested on
matrices whose spectrum is known exactly (:class:`MatrixOperator`).

:class:`HessianOperator` is the Hessian

    H = ∇²_θ L(θ),   L(θ) = (1/N) Σ_i ℓ(f(x_i; θ), y_i),   N = Σ_b n_b,

of the *mean* loss over a fixed list of batches, with respect to a chosen subset θ of the
parameters (the others held fixed). Each batch loss L_b is the mean of ``loss_fn``'s
per-example losses (or its 0-d batch mean: the loss contract of
:mod:`~losslab.landscape.options`), so L = Σ_b (n_b / N) L_b and

    H v = Σ_b (n_b / N) H_b v,

a batch-size-weighted *average* of the per-batch products, never their sum (summing multiplies
every eigenvalue by the number of batches: a trap of existing Hessian tools). One
Hessian-vector product is two backward passes per batch (Pearlmutter 1994): g = ∇L_b with a
graph, then ∇(g·v); it is evaluated by ``torch.func.functional_call`` on a dict of the
parameters, so the model is never mutated.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from losslab.errors import InputError, NotFoundError
from losslab.landscape.directions import as_params, point_buffers
from losslab.landscape.options import EvalOptions, batch_mean, cross_entropy_per_example
from losslab.params import ParamDict, flatten, unflatten
from losslab.progress import Progress, track

__all__ = ["SymmetricOperator", "MatrixOperator", "HessianOperator", "select_parameters",
           "random_vector", "model_output_loss"]

ParamSelection = str | Sequence[str]
DEFAULTS = EvalOptions()


class SymmetricOperator:
    """A symmetric linear map on flat vectors of length ``size``, applied by :meth:`matvec`.

    Subclasses implement ``_matvec``. :meth:`matvec` checks the shape, casts ``v`` to the
    operator's dtype and device and counts the products in ``num_products`` (each call is one
    product with the whole operator, whatever it costs inside).
    """

    def __init__(self, size: int, dtype: torch.dtype, device: torch.device | str) -> None:
        self.size = int(size)
        self.dtype = dtype
        self.device = torch.device(device)
        self.num_products = 0

    def _matvec(self, v: Tensor) -> Tensor:
        raise NotImplementedError

    def matvec(self, v: Tensor) -> Tensor:
        """``H v`` for a flat vector ``v`` of shape (P,); the result has the operator's dtype."""
        if v.shape != (self.size,):
            raise InputError(f"expected a vector of shape ({self.size},), got {tuple(v.shape)}")
        v = v.detach().to(device=self.device, dtype=self.dtype)
        self.num_products += 1
        return self._matvec(v)

    def __matmul__(self, v: Tensor) -> Tensor:
        return self.matvec(v)

    def dense(self, max_size: int = 4096) -> Tensor:
        """The full (P, P) matrix from P products with the unit vectors (for tiny operators).

        Raises ``ValueError`` when P exceeds ``max_size``. The P products are counted.
        """
        if self.size > max_size:
            raise InputError(f"dense(): the operator has {self.size} rows, more than "
                             f"max_size={max_size}; pass a larger max_size to build it anyway")
        eye = torch.eye(self.size, dtype=self.dtype, device=self.device)
        return torch.stack([self.matvec(eye[i]) for i in range(self.size)], dim=1)


class MatrixOperator(SymmetricOperator):
    """An explicit symmetric matrix as an operator (test oracles, benchmarks, small problems)."""

    def __init__(self, matrix: Tensor, *, check_symmetric: bool = True) -> None:
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise InputError(f"expected a square matrix, got shape {tuple(matrix.shape)}")
        if check_symmetric and not torch.allclose(matrix, matrix.T, rtol=1e-10, atol=1e-12):
            raise InputError("the matrix is not symmetric")
        super().__init__(matrix.shape[0], matrix.dtype, matrix.device)
        self.matrix = matrix

    @classmethod
    def from_eigenvalues(cls, eigenvalues: Tensor | Sequence[float], *, seed: int = 0,
                         dtype: torch.dtype = torch.float64) -> MatrixOperator:
        """Q diag(λ) Qᵀ with Q a random orthogonal matrix (QR of a seeded Gaussian matrix)."""
        lam = torch.as_tensor(eigenvalues, dtype=torch.float64)
        n = lam.numel()
        gen = torch.Generator().manual_seed(seed)
        q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
        q = q * torch.sign(torch.diagonal(r))
        m = (q * lam) @ q.T
        return cls(((m + m.T) / 2).to(dtype))

    def _matvec(self, v: Tensor) -> Tensor:
        return self.matrix @ v

    def dense(self, max_size: int = 4096) -> Tensor:
        return self.matrix.clone()


class _Tracked:
    """An operator seen through a progress bar: each product also advances ``bar``; ``size``,
    ``dtype``, ``device``, ``num_products`` and the product itself are the operator's."""

    def __init__(self, op: Any, bar: Progress) -> None:
        self._op, self._bar = op, bar

    def __getattr__(self, name: str) -> Any:
        return getattr(self._op, name)

    def matvec(self, v: Tensor) -> Tensor:
        out = self._op.matvec(v)
        self._bar.update()  # the algorithm reads this product on the host at once
        return out


@contextmanager
def tracked(op: Any, total: int, desc: str, enabled: bool | None, logger: str) -> Iterator[Any]:
    """``op`` with a bar over its products (:func:`~losslab.progress.track`, ``unit="product"``):
    the algorithms' progress, without touching what they compute or count."""
    with track(total, desc, unit="product", enabled=enabled, logger=logger) as bar:
        yield _Tracked(op, bar)


def random_vector(size: int, generator: torch.Generator, *, dtype: torch.dtype,
                  device: torch.device | str, distribution: str = "gaussian") -> Tensor:
    """A seeded random vector drawn on the CPU (so the draw does not depend on the device).

    ``distribution``: ``"gaussian"`` (N(0, 1) entries) or ``"rademacher"`` (±1 entries).
    """
    if distribution == "gaussian":
        v = torch.randn(size, generator=generator, dtype=torch.float64)
    elif distribution == "rademacher":
        v = torch.randint(0, 2, (size,), generator=generator, dtype=torch.int64) * 2.0 - 1.0
        v = v.to(torch.float64)
    else:
        raise InputError(f"distribution must be 'gaussian' or 'rademacher', got {distribution!r}")
    return v.to(device=device, dtype=dtype)


def select_parameters(names: Sequence[str], wrt: ParamSelection,
                      shapes: Mapping[str, torch.Size] | None = None) -> list[str]:
    """The parameter names chosen by ``wrt``, in the model's order.

    * ``"all"``: every (trainable) parameter;
    * ``"weights"``: the weight matrices and convolution kernels, i.e. every parameter with
      two or more dimensions, whatever its name (``nn.MultiheadAttention.in_proj_weight``, a
      custom matrix), as the directions and PCA code choose them; no biases, no
      BatchNorm/LayerNorm affines;
    * any other string: a layer prefix, e.g. ``"classifier"`` selects ``classifier.weight``
      and ``classifier.bias`` (a full parameter name also works);
    * a list of names: exactly those.
    """
    names = list(names)
    if isinstance(wrt, str):
        if wrt == "all":
            chosen = names
        elif wrt == "weights":
            if shapes is None:
                raise InputError("select_parameters('weights') needs the shapes")
            chosen = [n for n in names if len(shapes[n]) >= 2]
        else:
            chosen = [n for n in names if n == wrt or n.startswith(wrt + ".")]
            if not chosen:
                prefixes = sorted({n.rsplit(".", 1)[0] for n in names})
                close = difflib.get_close_matches(wrt, prefixes, n=3)
                hint = f"; did you mean {close}?" if close else f"; layers: {prefixes[:10]}"
                raise NotFoundError(f"no parameter has the prefix {wrt!r}{hint}")
    else:
        wanted = list(wrt)
        unknown = [n for n in wanted if n not in names]
        if unknown:
            close = difflib.get_close_matches(unknown[0], names, n=3)
            raise NotFoundError(f"unknown parameter names {unknown[:5]}"
                           + (f"; did you mean {close}?" if close else ""))
        chosen = [n for n in names if n in set(wanted)]
    if not chosen:
        raise InputError(f"the selection {wrt!r} chose no parameters")
    return chosen


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every module in eval mode, then restore each module's own ``training`` flag."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _cast(t: Tensor, device: torch.device, dtype: torch.dtype) -> Tensor:
    return t.detach().to(device=device, dtype=dtype if t.is_floating_point() else t.dtype)


def _batch_size(x: Any, y: Any) -> int:
    if isinstance(y, Tensor) and y.ndim >= 1:
        return int(y.shape[0])
    if isinstance(x, Mapping):
        first = next(v for v in x.values() if isinstance(v, Tensor))
    else:
        first = x[0] if isinstance(x, (tuple, list)) else x
    return int(first.shape[0])


def _cast_tree(x: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """Tensors of a batch (a tensor, a tuple of them, a dict of them) cast for evaluation;
    anything else (a string, a flag) as it is."""
    if isinstance(x, Tensor):
        return _cast(x, device, dtype)
    if isinstance(x, Mapping):
        return {k: _cast_tree(v, device, dtype) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return tuple(_cast_tree(v, device, dtype) for v in x)
    return x


def _rows(x: Any, start: int, stop: int, n: int) -> Any:
    """Examples ``start:stop`` of every tensor of a batch whose leading dimension is ``n``."""
    if isinstance(x, Tensor):
        return x[start:stop] if x.ndim >= 1 and x.shape[0] == n else x
    if isinstance(x, Mapping):
        return {k: _rows(v, start, stop, n) for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(_rows(v, start, stop, n) for v in x)
    return x


def _split(batch: Any) -> tuple[Any, Any]:
    """``(inputs, targets)``: a pair as it is; a dict batch (``model(**batch)``, Hugging Face
    style) is both its inputs and what the loss reads its labels from."""
    if isinstance(batch, Mapping):
        return dict(batch), dict(batch)
    x, y = batch
    return x, y


def model_output_loss(outputs: Any, batch: Any) -> Tensor:
    """The default loss of a dict batch: the model's own ``.loss`` when its output carries one
    (a 0-d mean, weighted by the batch's size), else the per-example cross-entropy of
    ``.logits`` against ``batch["labels"]`` (the mean over the positions of a sequence)."""
    loss = outputs.get("loss") if isinstance(outputs, Mapping) else getattr(outputs, "loss", None)
    if isinstance(loss, Tensor):
        return loss
    logits = outputs if isinstance(outputs, Tensor) else (
        outputs.get("logits") if isinstance(outputs, Mapping) else outputs.logits)
    labels = batch["labels"]
    per = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                            labels.reshape(-1), reduction="none")
    return per.reshape(labels.shape[0], -1).mean(dim=1)


class HessianOperator(SymmetricOperator):
    """The Hessian of the mean loss over ``batches`` w.r.t. a parameter subset, matrix-free.

    Args:
        model: the network; it is never modified (its parameters and buffers are read once,
            at construction, unless ``point`` / ``buffers`` give the point to evaluate).
        point: the parameter values to evaluate the Hessian at (a name-keyed dict, a
            LoadedCheckpoint or a module); default the model's current parameters.
        batches: an iterable of ``(inputs, targets)`` pairs (``inputs`` a tensor, or a tuple
            of tensors passed as positional arguments) or of dicts (passed as keyword
            arguments, ``model(**batch)``, Hugging Face style; ``loss_fn(outputs, batch)`` then
            gets the whole dict, and by default is :func:`model_output_loss`: the output's
            ``.loss``, else cross-entropy of ``.logits`` against ``batch["labels"]``), or one
            such pair or dict. It is materialized once, so a shuffling loader yields one fixed
            subset: the operator is deterministic.
        buffers: the buffer values (e.g. BatchNorm running statistics); default the point's
            own (a LoadedCheckpoint's or a module's), else the model's.
        wrt: which parameters θ the Hessian is taken with respect to (see
            :func:`select_parameters`); the others stay fixed at their values.
        options: the evaluation options shared with the maps
            (:class:`~losslab.landscape.options.EvalOptions`): ``loss_fn`` (per-example losses
            or a batch mean, averaged over the data) and ``device`` (default the first selected
            parameter's). BatchNorm is always ``"keep"`` here (eval mode).
        dtype: the floating dtype to compute in (default the first selected parameter's).
            Parameters, buffers and floating inputs are cast.
        microbatch: at most this many examples per forward and backward pass: each batch is
            split and the parts' products, weighted by their sizes, add up to the batch's
            (equal up to rounding), so one product of a large model fits in memory.

    The products run with the model in **eval mode**: BatchNorm uses its running statistics,
    so H is the Hessian of the deterministic eval-mode loss (train-mode BatchNorm would make
    the loss depend on the batch composition and update the buffers). Every module's mode is
    restored afterwards. Dropout is off for the same reason.

    ``num_products`` counts full-data products (one per :meth:`matvec`, each costing one
    forward and two backward passes per batch). Where the data is one batch, the forward pass
    and the gradient's graph are kept after the first product, so each later one is a single
    backward pass through that graph (same numbers, about 1.6x faster; see
    :meth:`_keeps_forward`).
    """

    def __init__(self, model: nn.Module, point: Mapping[str, Tensor] | Any = None, *,
                 batches: Iterable[tuple[Any, Any]] | tuple[Tensor, Tensor],
                 buffers: Mapping[str, Tensor] | None = None, wrt: ParamSelection = "all",
                 options: EvalOptions = DEFAULTS, dtype: torch.dtype | None = None,
                 microbatch: int | None = None) -> None:
        if options.bn not in (None, "keep"):
            raise InputError(f"HessianOperator evaluates in eval mode with the given buffers "
                             f"(bn='keep'); options.bn={options.bn!r} is not supported")
        source = model if point is None else point
        buffers = point_buffers(source, model, buffers)
        point = {k: v.detach() for k, v in as_params(source).items()}
        shapes = {k: v.shape for k, v in point.items()}
        self.wrt = wrt
        self.names = select_parameters(list(point), wrt, shapes)
        first = point[self.names[0]]
        device = options.device
        device = torch.device(device) if device is not None else first.device
        dtype = dtype if dtype is not None else first.dtype
        if not dtype.is_floating_point:
            raise InputError(f"dtype must be a floating dtype, got {dtype}")
        chosen = set(self.names)
        #: the values of the selected parameters θ (the point), keyed by name
        self.params: ParamDict = {k: _cast(point[k], device, dtype) for k in self.names}
        # every other parameter is held fixed at the point's value, else the model's (frozen
        # ones included, which parameters_of leaves out), cast like the selected ones
        every = {k: v.detach() for k, v in model.named_parameters()}
        fixed = {k: _cast(v, device, dtype) for k, v in {**every, **point}.items()
                 if k not in chosen}
        fixed.update({k: _cast(v, device, dtype) for k, v in buffers.items()})
        self._fixed = fixed
        super().__init__(sum(t.numel() for t in self.params.values()), dtype, device)

        if isinstance(batches, Mapping) or (isinstance(batches, tuple) and len(batches) == 2
                                            and isinstance(batches[0], Tensor)):
            batches = [batches]
        if microbatch is not None and microbatch < 1:
            raise InputError(f"microbatch must be a positive number of examples, got {microbatch}")
        self.batches: list[tuple[Any, Any]] = []
        sizes = []
        dict_batches = False
        for batch in batches:
            dict_batches |= isinstance(batch, Mapping)
            x, y = (_cast_tree(t, device, dtype) for t in _split(batch))
            n = _batch_size(x, y)
            step = microbatch or n  # products of microbatches add up to the batch's product
            for start in range(0, n, step):
                stop = min(start + step, n)
                self.batches.append((_rows(x, start, stop, n), _rows(y, start, stop, n)))
                sizes.append(stop - start)
        if not self.batches:
            raise InputError("HessianOperator needs at least one batch")
        self.num_examples = sum(sizes)
        # n_b / N: the weight of each batch's mean loss in the data set's mean loss.
        self.batch_weights = [n / self.num_examples for n in sizes]
        self.microbatch = microbatch
        self.model = model
        default = options.loss_fn is cross_entropy_per_example
        self.loss_fn = model_output_loss if dict_batches and default else options.loss_fn

    def to_dict(self, vector: Tensor) -> ParamDict:
        """A flat vector (e.g. an eigenvector) as a name-keyed dict of the selected parameters."""
        return unflatten(vector, self.params)

    def loss(self) -> Tensor:
        """The mean loss L(θ) over the batches (eval mode), as a 0-d tensor."""
        total = torch.zeros((), dtype=self.dtype, device=self.device)
        with eval_mode(self.model), torch.no_grad():
            for (x, y), w in zip(self.batches, self.batch_weights, strict=True):
                total = total + w * self._batch_loss(self.params, x, y)
        return total

    def _call(self, params: Mapping[str, Tensor], x: Any) -> Any:
        """The model's output on inputs ``x`` (positional, or keyword for a dict batch)."""
        weights = {**self._fixed, **params}
        # Curvature needs second (and forward-mode) derivatives, which the fused attention
        # kernels lack; attention's plain formulation has them.
        with sdpa_kernel(SDPBackend.MATH):
            if isinstance(x, Mapping):
                return functional_call(self.model, weights, (), dict(x))
            return functional_call(self.model, weights, tuple(x) if isinstance(x, tuple) else (x,))

    def _batch_loss(self, params: Mapping[str, Tensor], x: Any, y: Any) -> Tensor:
        return batch_mean(self.loss_fn(self._call(params, x), y))

    #: keep the first product's forward pass (and gradient graph) for every later product;
    #: None: when the data is one batch (see :meth:`_keeps_forward`)
    reuse_forward: bool | None = None

    def _keeps_forward(self) -> bool:
        """Whether products reuse stored forward passes. The point and the data are fixed, so
        one pass serves every product; by default only one batch's is kept, since keeping
        several would hold all their activations at once, which microbatching is there to
        avoid. ``op.reuse_forward = True`` (or ``False``) overrides the choice."""
        keep = self.reuse_forward
        return len(self.batches) == 1 if keep is None else bool(keep)

    def _gradient(self, x: Any, y: Any) -> tuple[list[Tensor], tuple[Tensor | None, ...]]:
        """The selected parameters as leaves and the batch loss's gradient in them, with its
        graph (so that it can be differentiated again)."""
        leaves = {k: t.detach().requires_grad_(True) for k, t in self.params.items()}
        inputs = [leaves[k] for k in self.names]
        loss = self._batch_loss(leaves, x, y)
        return inputs, torch.autograd.grad(loss, inputs, create_graph=True, allow_unused=True)

    def _matvec(self, v: Tensor) -> Tensor:
        vs = unflatten(v, self.params)
        out = torch.zeros(self.size, dtype=self.dtype, device=self.device)
        keep = self._keeps_forward()
        graphs = self.__dict__.setdefault("_graphs", {})
        with eval_mode(self.model), torch.enable_grad():
            for b, ((x, y), w) in enumerate(zip(self.batches, self.batch_weights, strict=True)):
                if keep and b not in graphs:
                    graphs[b] = self._gradient(x, y)
                inputs, grads = graphs[b] if keep else self._gradient(x, y)
                gv = sum((g * vs[k]).sum() for g, k in zip(grads, self.names, strict=True)
                         if g is not None and g.requires_grad)
                if not isinstance(gv, Tensor):  # the loss is at most linear in θ here
                    continue
                # H v = ∇(∇L · v): a second backward pass through the (kept) gradient graph
                hv = torch.autograd.grad(gv, inputs, allow_unused=True, retain_graph=keep)
                hv = [torch.zeros_like(p) if h is None else h for h, p in zip(hv, inputs, strict=True)]
                out.add_(flatten(dict(zip(self.names, hv, strict=True))), alpha=w)
        return out
