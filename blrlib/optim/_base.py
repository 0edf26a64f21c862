"""The optimizer class shared by every BLR optimizer: a diagonal Gaussian and an estimator.

    opt = blrlib.optim.VON(model.parameters(), lr=0.1, n_data=len(train_set))
    for x, y in loader:
        with opt.sampled_params(train=True):      # theta ~ q, restored on exit
            loss = F.cross_entropy(model(x), y)   # the batch mean
            loss.backward()
        opt.step()

The class holds q = N(m, diag(N h + delta)^-1) per parameter tensor (m is the parameter
itself, h is in ``state``) and calls :func:`blrlib.families.diag_gaussian.blr_update_`, the
one diagonal-Gaussian BLR step; the subclasses differ only in how they estimate E_q[grad] and
E_q[diag Hessian] (Khan & Rue 2023, Sec 4.2 and 4.4).

With ``dropout = pi1 < 1`` every weight tensor gets dropout on its input units, the step
being Eq 42-43 with the optimizer's diagonal S (``_dropout``); with
``dropout = ConcreteDropout(pi1)`` a group learns its pi1 (``_concrete``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Any

import torch
from torch import Tensor, nn

from blrlib._checks import n_data as check_n_data
from blrlib._checks import positive_float
from blrlib.estimators import Estimator, parse_option
from blrlib.families.diag_gaussian import Momentum, blr_update_
from blrlib.families.spike_slab import check_pi1
from blrlib.optim import _checkpoint, _concrete, _curvature, _distributed, _dropout
from blrlib.optim._draws import Draws, rademacher_

__all__ = ["BLROptimizer", "HessianEstimate"]

LOW_PRECISION = (torch.bfloat16, torch.float16)


class HessianEstimate(str, Enum):
    """How E_q[diag Hessian] of the batch-mean loss is estimated.

    ``gradsq``: the squared gradient (Eq 38, RMSprop/Adam); ``autograd``: the exact diagonal
    (Eq 37, small models); ``abs_autograd``: Eq 36's mean of per-example |diagonals|, never
    negative; ``gauss_newton``: the mean squared per-example gradient (Eq 45);
    ``reparam``: Price's identity E[(theta - m) s g] from the one backward pass (Sec 4.4).
    """

    GRADSQ = "gradsq"
    AUTOGRAD = "autograd"
    ABS_AUTOGRAD = "abs_autograd"
    GAUSS_NEWTON = "gauss_newton"
    REPARAM = "reparam"


def _number(value: object, name: str, low: float, high: float, *, closed: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float; got {type(value).__name__}")
    ok = math.isfinite(value) and low <= value and (value <= high if closed else value < high)
    if not ok:
        interval = f"[{low}, {high}{']' if closed else ')'}"
        raise ValueError(f"{name} must be in {interval}; got {value!r}")
    return float(value)


class BLROptimizer(torch.optim.Optimizer):
    """The diagonal-Gaussian BLR (Eq 36-38, 44-46) as a ``torch.optim.Optimizer``.

    Args:
        params: parameters or parameter groups, as for any torch optimizer.
        n_data: N, the size of the training set (the loss is the batch mean); required.
        lr: the rate of the mean (rho, or alpha of Eq 36), > 0.
        beta: the rate of the precision (rho, or beta of Eq 36), in (0, 1].
        gamma: momentum coefficient in [0, 1) (App F).
        prior_prec: delta > 0 of the prior N(0, I / delta).
        hess_init: initial h >= 0, so that s_0 = N h_0 + delta.
        eps: added to sqrt(h) with ``sqrt=True``.
        estimator: ``"delta"`` (at the mean) or ``"mc"`` (one draw per step).
        hessian: a :class:`HessianEstimate`.
        momentum: ``"natural"`` (Eq 80) or ``"ema"`` (Eq 77).
        sqrt, bias_correction, positive: options of :func:`blr_update_`.
        model, loss_fn: the network and its per-example loss (outputs, targets) -> (M,),
            needed by :meth:`backward` (``gauss_newton`` and ``autograd``).
        generator: random generator for the draws (and the dropout masks); None: torch's
            global one (under torch.distributed: one the optimizer shares across ranks).
        draws: the training draws eps, ``"gaussian"`` (q's own) or ``"rademacher"`` (+-1,
            cheaper on a CPU; ``blrlib.optim._draws`` says what changes). Predictions always
            draw from q.
        dropout: pi1, the probability of keeping a unit, in (0, 1]; 1 (the default) is no
            dropout and gives exactly the iterates without it; or a :class:`ConcreteDropout`,
            which learns pi1 (per group: a group may override it).
        process_group: the ranks to keep in step (``blrlib.optim`` docstring); None: the
            default group when torch.distributed is initialised with several ranks.

    Raises:
        ValueError, TypeError: a setting outside its range, naming it.
    """

    samples_posterior: bool = True  # False: predict() refuses draws from q (AdamLike)

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        *,
        n_data: float,
        lr: float,
        beta: float,
        gamma: float = 0.0,
        prior_prec: float = 1.0,
        hess_init: float = 0.0,
        eps: float = 0.0,
        estimator: Estimator | str = Estimator.DELTA,
        hessian: HessianEstimate | str = HessianEstimate.GRADSQ,
        momentum: Momentum | str = Momentum.NATURAL,
        sqrt: bool = False,
        bias_correction: bool = False,
        positive: bool = False,
        model: nn.Module | None = None,
        loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
        generator: torch.Generator | None = None,
        dropout: float | _concrete.ConcreteDropout = 1.0,
        draws: Draws | str = Draws.GAUSSIAN,
        process_group: Any = None,
    ) -> None:
        n_data = check_n_data(n_data)  # Python, numpy or 0-d tensor number >= 1
        self.draws = parse_option(draws, Draws, "draws")
        if not isinstance(dropout, _concrete.ConcreteDropout):
            check_pi1(dropout, "dropout")
        positive_float(lr, "lr")
        if _number(beta, "beta", 0.0, 1.0, closed=True) == 0:
            raise ValueError("beta must be in (0, 1]; got 0")
        _number(gamma, "gamma", 0.0, 1.0, closed=False)
        positive_float(prior_prec, "prior_prec")
        _number(hess_init, "hess_init", 0.0, math.inf, closed=False)
        _number(eps, "eps", 0.0, math.inf, closed=False)
        self.estimator = parse_option(estimator, Estimator, "estimator")
        if self.estimator is Estimator.EXACT:
            raise ValueError("estimator must be 'delta' or 'mc'; got 'exact'")
        self.hessian = parse_option(hessian, HessianEstimate, "hessian")
        if self.hessian is HessianEstimate.REPARAM and self.estimator is not Estimator.MC:
            raise ValueError("hessian: 'reparam' needs estimator='mc' (it uses the draw)")
        self.momentum = parse_option(momentum, Momentum, "momentum")
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module; got {type(model).__name__}")
        self.model, self.loss_fn, self.generator = model, loss_fn, generator
        self.process_group, self._draws_checked = process_group, False
        self.options = {"sqrt": sqrt, "bias_correction": bias_correction, "positive": positive}
        defaults = dict(
            lr=lr, beta=beta, gamma=gamma, prior_prec=prior_prec, n_data=n_data,
            hess_init=hess_init, eps=eps, dropout=dropout,
        )  # fmt: skip
        super().__init__(params, defaults)
        for group in self.param_groups:
            group["n_data"] = check_n_data(group["n_data"])
            _concrete.setup(group)
            check_pi1(group["dropout"], "dropout")
        self._masks: dict[Tensor, Tensor] = {}  # z (broadcastable) of the last training draw
        self._premask: dict[Tensor, tuple[Tensor, Tensor]] = {}  # theta, probes (learned pi1)
        self._noise: dict[Tensor, tuple[Tensor, Tensor]] = {}  # theta - m and s of the draw
        self._hess_hat: dict[Tensor, Tensor] = {}  # from backward() (gauss_newton, autograd)
        self._scratch: dict[tuple[Any, ...], Any] = {}  # buffers reused by sampled_params

    # ------------------------------------------------------------------ state
    def _state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        state = self.state[p]
        if not state:
            dtype = torch.float32 if p.dtype in LOW_PRECISION else p.dtype
            state["step"] = 0
            state["hess"] = torch.full_like(p, group["hess_init"], dtype=dtype)
            if group["gamma"] != 0 and self.momentum is Momentum.NATURAL:
                state["hess_delta"] = torch.zeros_like(state["hess"])
                state["velocity"] = torch.zeros_like(state["hess"])
            elif group["gamma"] != 0:
                state["momentum"] = torch.zeros_like(state["hess"])
        return state

    def _params(self) -> Iterator[tuple[dict[str, Any], Tensor]]:
        for group in self.param_groups:
            for p in group["params"]:
                if p.requires_grad:
                    yield group, p

    def _precisions(
        self, group: dict[str, Any], ps: list[Tensor], out: list[Tensor] | None = None
    ) -> list[Tensor]:
        """s = N D(h) for each parameter of a group: D = h + delta / N, or sqrt(h) + eps."""
        hess = [self._state(p, group)["hess"] for p in ps]
        out = [torch.empty_like(h) for h in hess] if out is None else out
        if self.options["sqrt"]:
            torch._foreach_copy_(out, hess)
            torch._foreach_sqrt_(out)
            torch._foreach_add_(out, group["eps"])
            torch._foreach_mul_(out, group["n_data"])
        else:
            for o, h in zip(out, hess, strict=True):  # N h, one pass (no copy first)
                torch.mul(h, group["n_data"], out=o)
            torch._foreach_add_(out, group["prior_prec"])
        return out

    def precision(self, p: Tensor) -> Tensor:
        """The posterior precision s = N h + delta of parameter ``p`` (a copy)."""
        for group in self.param_groups:
            if any(p is q for q in group["params"]):
                return self._precisions(group, [p])[0]
        raise ValueError("p: not a parameter of this optimizer")

    # ------------------------------------------------------------------ sampling
    @contextmanager
    def sampled_params(self, train: bool = True, *, noise: bool = True) -> Iterator[None]:
        """Replace each mean m by a draw theta = m + s^-1/2 eps, restored on exit (even on error).

        With ``train=True`` the draw is kept for the next :meth:`step` (the ``reparam``
        estimate needs theta - m). With the delta method (OGN, Eq 36-38) theta = m when
        training: the gradient is taken at the mean. With dropout the draw is z * theta.
        ``noise=False`` (prediction only) draws the dropout masks alone, theta = z * m: the
        MC-dropout predictive of the slab means (the delta method of Eq 84 at test time).
        """
        if train and not noise:
            raise ValueError("noise: noise=False is for prediction (train=False) only")
        restore: list[tuple[list[Tensor], list[Tensor]]] = []
        try:
            with torch.no_grad():
                if train:
                    self._noise.clear()
                    self._masks.clear()
                    self._premask.clear()
                    draws = self.estimator is Estimator.MC
                    if draws or any(_dropout.active(g) for g in self.param_groups):
                        self._share_draws()
                for group in self.param_groups:
                    ps = [p for p in group["params"] if p.requires_grad]
                    if not ps:
                        continue
                    if noise and not (train and self.estimator is Estimator.DELTA):
                        restore.append((ps, self._perturb(group, ps, train)))
                    if _dropout.active(group):
                        if not restore or restore[-1][0] is not ps:
                            restore.append((ps, [p.clone() for p in ps]))
                        _dropout.draw_(group, ps, train=train, generator=self.generator,
                                       masks=self._masks, premask=self._premask)  # fmt: skip
            yield
        finally:
            with torch.no_grad():
                for ps, means in restore:
                    torch._foreach_copy_(ps, means)

    @contextmanager
    def mode_params(self) -> Iterator[None]:
        """The weights at the mode of q, restored on exit; a no-op here (the mean is the mode)."""
        yield

    def _share_draws(self) -> None:
        """Under torch.distributed, make sure every rank's next training draw is the same one.

        A generator given by the caller must be in the same state on every rank (checked at
        each training draw, a 2-number all-reduce); with ``generator=None`` the optimizer
        makes one, seeded by rank 0, on the parameters' device.

        Raises:
            ValueError: the ranks' generators were seeded differently (per-rank noise).
            RuntimeError: they diverged since the last training draw.
        """
        group = _distributed.active(self.process_group)
        if group is None:
            return
        device = next(p for _, p in self._params()).device
        if self.generator is None:
            self.generator = _distributed.shared_generator(device, group)
        else:
            _distributed.check_generator(
                self.generator, group, device, first=not self._draws_checked
            )
        self._draws_checked = True

    def _perturb(self, group: dict[str, Any], ps: list[Tensor], train: bool) -> list[Tensor]:
        """theta = m + eps / sqrt(s) in place (one flat draw per group); returns the means.

        eps ~ N(0, I); with ``draws="rademacher"`` the training draws are eps_j = +-1 instead
        (:class:`Draws`). The draw, s, sqrt(s) and the copy of the means live in scratch
        buffers kept between steps (allocating them anew costs more than the arithmetic on a
        CPU). The operations and their order are those the experiments' records were made
        with, so that runs with Gaussian draws repeat to the bit.
        """
        key = (train, *(id(p) for p in ps))  # predictions must not overwrite a training draw
        if key not in self._scratch:
            sizes = [p.numel() for p in ps]
            dtype = self._state(ps[0], group)["hess"].dtype
            padded = -(-sum(sizes) // 64) * 64  # whole words of random bits (rademacher_)
            flat = torch.empty(padded, dtype=dtype, device=ps[0].device)
            eps = [e.view_as(p) for e, p in zip(flat[: sum(sizes)].split(sizes), ps, strict=True)]
            self._scratch[key] = (flat, eps, [torch.empty_like(e) for e in eps],
                                  [torch.empty_like(e) for e in eps],
                                  [torch.empty_like(p) for p in ps])  # fmt: skip
        flat, eps, precs, roots, means = self._scratch[key]
        if train and self.draws is Draws.RADEMACHER:
            rademacher_(flat, generator=self.generator)
        else:  # exactly P numbers: the stream of blr.step's draws (tests/optim)
            flat[: sum(e.numel() for e in eps)].normal_(generator=self.generator)
        self._precisions(group, ps, out=precs)
        for r, s in zip(roots, precs, strict=True):  # sqrt(s) into a kept buffer
            torch.sqrt(s, out=r)
        torch._foreach_div_(eps, roots)  # theta - m = eps / sqrt(s)
        torch._foreach_copy_(means, ps)
        if ps[0].dtype in LOW_PRECISION:
            torch._foreach_add_(ps, [e.to(p.dtype) for e, p in zip(eps, ps, strict=True)])
        else:
            torch._foreach_add_(ps, eps)
        if train:  # kept for step(): theta - m and s (Price's identity)
            self._noise.update(zip(ps, zip(eps, precs, strict=True), strict=True))
        return means

    def backward(self, inputs: Tensor, targets: Tensor) -> Tensor:
        """Gradient and Hessian-diagonal estimate of the batch-mean loss at the current weights.

        Needs ``model`` and ``loss_fn``: per-example gradients by ``torch.func`` (Eq 45), or
        the exact Hessian diagonal (Eq 36-37). Accumulates into ``p.grad``; returns the loss.
        Under torch.distributed the loss, gradient and Hessian estimate are averaged over the
        ranks (as DDP averages gradients): the batch is then the ranks' batches together.
        """
        if self.model is None or self.loss_fn is None:
            raise ValueError("model, loss_fn: backward() needs both (set them in the constructor)")
        params = [p for _, p in self._params()]
        model = self.model
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module  # torch.func calls the module itself; averaged below
        if self.hessian in (HessianEstimate.AUTOGRAD, HessianEstimate.ABS_AUTOGRAD):
            loss, grads, hess = _curvature.hessian_diag(
                model, self.loss_fn, params, inputs, targets,
                absolute=self.hessian is HessianEstimate.ABS_AUTOGRAD,
            )  # fmt: skip
        else:
            loss, grads, hess = _curvature.gauss_newton(
                model, self.loss_fn, params, inputs, targets
            )
        group = _distributed.active(self.process_group)
        if group is not None:  # DDP's all-reduce never sees these: the mean over ranks
            _distributed.mean_([loss, *grads, *hess], group)
        for p, g, h in zip(params, grads, hess, strict=True):
            p.grad = g.detach() if p.grad is None else p.grad + g.detach()
            self._hess_hat[p] = h.detach()
        return loss

    # ------------------------------------------------------------------ checkpoints, copies
    def state_dict(self) -> dict[str, Any]:
        """torch's state dict plus the generator's state (``_checkpoint``): tensors, numbers
        and strings only, so that ``torch.load(weights_only=True)`` reads it."""
        return _checkpoint.state_dict(self, super().state_dict())

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a :meth:`state_dict`: the state, the groups' settings and the generator."""
        _checkpoint.load_state_dict(self, state_dict, super().load_state_dict)

    def __getstate__(self) -> dict[str, Any]:
        """For ``copy.deepcopy`` and ``pickle``: every attribute, not only torch's three."""
        return _checkpoint.getstate(self)

    # ------------------------------------------------------------------ step
    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:  # type: ignore[override]
        """One BLR step (Eq 37 / 46) for every parameter with a gradient.

        Raises:
            RuntimeError: no parameter has a gradient, or the estimator needs a draw or
                :meth:`backward` that did not happen. The state is left unchanged.
            ValueError: a gradient or Hessian estimate is NaN or inf; the state is unchanged.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        pairs = [(g, p) for g, p in self._params() if p.grad is not None]
        if not pairs:
            raise RuntimeError("step: no parameter has a gradient (call loss.backward() first)")
        needs_draw = self.estimator is Estimator.MC
        needs_hess = self.hessian not in (HessianEstimate.GRADSQ, HessianEstimate.REPARAM)
        for group, p in pairs:
            if needs_draw and p not in self._noise:
                raise RuntimeError("step: no draw to use; compute the loss inside sampled_params()")
            if needs_hess and p not in self._hess_hat:
                raise RuntimeError("step: no Hessian estimate; call opt.backward(x, y) first")
            if _dropout.active(group) and p.dim() >= 2 and p not in self._masks:
                raise RuntimeError("step: dropout needs the masks; compute inside sampled_params()")
        grads = [p.grad for _, p in pairs]
        norms = torch._foreach_norm(grads + [self._hess_hat[p] for _, p in pairs if needs_hess])
        if not bool(torch.isfinite(torch.stack([n.float() for n in norms]).sum())):
            raise ValueError("grad: a gradient or Hessian estimate is NaN or inf; nothing changed")
        for group in self.param_groups:
            ps = [p for g, p in pairs if g is group]
            if ps and _concrete.learned(group) is not None:  # pi1's step, after the means'
                precs = self._precisions(group, ps) if self.estimator is Estimator.MC else None
                new_pi1 = _concrete.logit_step(group, ps, self._premask, precs)
                self._group_step(group, ps)
                group.update(new_pi1)
            elif ps:
                self._group_step(group, ps)
        self._noise.clear()
        self._hess_hat.clear()
        self._masks.clear()
        self._premask.clear()
        return loss

    def _group_step(self, group: dict[str, Any], ps: list[Tensor]) -> None:
        states = [self._state(p, group) for p in ps]
        low = ps[0].dtype in LOW_PRECISION
        means = [p.float() for p in ps] if low else ps
        grads = [p.grad.to(s["hess"].dtype) for p, s in zip(ps, states, strict=True)]
        pi1 = group["dropout"]
        if _dropout.active(group):  # Eq 84: z grad(theta~) / pi1 (the 1/pi1 of Eq 42)
            grads = _dropout.scale(grads, ps, self._masks, pi1)
        hess = [s["hess"] for s in states]
        work = None
        if self.hessian is HessianEstimate.GRADSQ:
            hess_hat = None
        elif self.hessian is HessianEstimate.REPARAM:  # E[(theta - m) s g] (Price, App D)
            hess_hat = [self._noise[p][0] for p in ps]  # the draw's buffers, overwritten
            torch._foreach_mul_(hess_hat, grads)
            work = [self._noise[p][1] for p in ps]
            torch._foreach_mul_(hess_hat, work)  # then work is free: blr_update_'s scratch
        else:
            hess_hat = [self._hess_hat[p].to(h.dtype) for p, h in zip(ps, hess, strict=True)]
            if _dropout.active(group):  # Eq 43: z H(theta~) / pi1
                hess_hat = _dropout.scale(hess_hat, ps, self._masks, pi1)
        if self.momentum is Momentum.NATURAL and group["gamma"] != 0:
            buffers = ([s["hess_delta"] for s in states], [s["velocity"] for s in states])
        elif group["gamma"] != 0:
            buffers = ([s["momentum"] for s in states],)
        else:
            buffers = ()
        if work is None:  # kept between steps, as the draw's buffers are
            key = ("work", *(id(p) for p in ps))
            if key not in self._scratch:
                self._scratch[key] = [torch.empty_like(h) for h in hess]
            work = self._scratch[key]
        for s in states:
            s["step"] += 1
        blr_update_(
            means, hess, grads, hess_hat,
            lr=group["lr"], beta=group["beta"], n_data=group["n_data"],
            prior_prec=group["prior_prec"], gamma=group["gamma"], momentum=self.momentum,
            buffers=buffers, step=states[0]["step"], eps=group["eps"], work=work, **self.options,
        )  # fmt: skip
        if low:
            torch._foreach_copy_(ps, means)
