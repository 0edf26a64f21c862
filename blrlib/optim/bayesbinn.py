"""BayesBiNN and STE (Khan & Rue 2023, Sec 4.5, Eq 48-52): the BLR for binary networks.

    opt = blrlib.optim.BayesBiNN(model.parameters(), lr=1e-3, n_data=N, tau=1e-2)
    with opt.sampled_params(train=True):   # weights <- tanh((lam + delta) / tau), Eq 50
        F.cross_entropy(model(x), y).backward()
    opt.step()                             # lam <- lam - lr (N s * g + lam - lam_0), Eq 52
    probs = blrlib.optim.predict(model, opt, x, n_samples=16)   # binary draws, probabilities

A parameter tensor holds lam, the natural parameters of q(theta) = prod Bernoulli on {-1, +1}
(``families.SignBernoulli``), i.e. the latent weights; the network only ever sees binary or
relaxed weights inside the contexts. Both classes are the one step
``families.sign_bernoulli.bayesbinn_update_`` with an estimator of grad_mu E_q[loss]:
:class:`BayesBiNN` the Concrete relaxation (Eq 51, one draw per step) with the entropy and the
prior; :class:`STE` the gradient at sign(lam) with the straight-through Jacobian 1 (a hybrid
of the delta method and the tau -> 0 limit, not a limit of Eq 51), without entropy, with latent
weights clipped to [-1, 1] as in STE practice.

Binary weights are sign(lam) with sign(0) = +1, as in the reference code of Meng et al. (2020);
a latent weight that ends exactly at 0, or within rounding of it, is undecided and its sign is
an accident of the last step (``undecided_fraction`` counts such weights).

Derived in :ref:`binary-bayesbinn` and :ref:`binary-ste`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from blrlib._checks import n_data as check_n_data
from blrlib._checks import positive_float
from blrlib.estimators import Estimator, parse_option
from blrlib.families.sign_bernoulli import (
    bayesbinn_update_,
    concrete,
    logistic_noise,
    relaxed_scale,
)
from blrlib.optim._base import LOW_PRECISION, BLROptimizer, HessianEstimate, _number

__all__ = ["STE", "BayesBiNN", "undecided_fraction"]

Prior = float | Iterable[Tensor] | None
REFERENCE_EPS = 1e-10
"""The regulariser Meng et al. (2020)'s code adds to both parts of s (``relaxed_scale``)."""
EXACT_TAU_MIN = 1e-3
"""Below this temperature the exact s of Eq 51 is 0 for almost every draw (see BayesBiNN)."""


def _sign(x: Tensor) -> Tensor:
    """sign with sign(0) = +1 (and sign(-0.0) = +1), as the reference code maps 0."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def undecided_fraction(params: Iterable[Tensor], *, threshold: float) -> float:
    """The fraction of latent weights with |lam| < ``threshold``: weights whose sign is not
    settled (for BayesBiNN, threshold 1.1 is q(theta = +1) in (0.1, 0.9), since
    sigmoid(2 * 1.1) = 0.9; for STE, a threshold below the last step size).

    Raises:
        ValueError: ``threshold`` not positive, or no parameters.
    """
    positive_float(threshold, "threshold")
    ps = [p.detach() for p in params]
    if not ps:
        raise ValueError("params: no latent weights given")
    small = sum(int((p.abs() < threshold).sum()) for p in ps)
    return small / sum(p.numel() for p in ps)


def _state_dtype(p: Tensor) -> torch.dtype:
    """float32 for bfloat16 and float16 weights (their state and prior), else the weights'."""
    return torch.float32 if p.dtype in LOW_PRECISION else p.dtype


class _SignBLR(BLROptimizer):
    """The {-1, +1} Bernoulli BLR as a torch optimizer (shared by BayesBiNN and STE)."""

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        *,
        n_data: float,
        lr: float,
        tau: float,
        beta: float,
        beta2: float = 0.0,
        prior: Prior,
        estimator: str,
        entropy: bool,
        clip: float | None,
        eps: float = 0.0,
        generator: torch.Generator | None = None,
        process_group: Any = None,
    ) -> None:
        self.estimator = parse_option(estimator, Estimator, "estimator")
        if self.estimator is Estimator.EXACT:
            raise ValueError("estimator must be 'delta' or 'mc'; got 'exact'")
        self.hessian = HessianEstimate.GRADSQ  # unused: the Bernoulli step needs no Hessian
        if clip is not None:
            positive_float(clip, "clip")
        _number(eps, "eps", 0.0, math.inf, closed=False)
        self.entropy, self.clip, self.eps = entropy, clip, float(eps)
        self.model = self.loss_fn = None
        self.generator = generator
        self.process_group, self._draws_checked = process_group, False
        self._noise: dict[Tensor, tuple[Tensor]] = {}
        self._hess_hat: dict[Tensor, Tensor] = {}
        self._masks: dict[Tensor, Tensor] = {}  # no dropout for binary weights: always empty
        self._premask: dict[Tensor, Tensor] = {}
        defaults = dict(lr=lr, n_data=n_data, tau=tau, beta=beta, beta2=beta2)
        torch.optim.Optimizer.__init__(self, params, defaults)
        self.set_prior(prior)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """As torch's, checking the group's settings and that every weight is floating point."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group["n_data"] = check_n_data(group["n_data"])
        positive_float(group["lr"], "lr")
        positive_float(group["tau"], "tau")
        _number(group["beta"], "beta", 0.0, 1.0, closed=False)
        _number(group["beta2"], "beta2", 0.0, 1.0, closed=False)
        if self.estimator is Estimator.MC and self.eps == 0 and group["tau"] < EXACT_TAU_MIN:
            warnings.warn(
                f"BayesBiNN with eps=0 and tau={group['tau']:g}: the exact scale s of Eq 51 is "
                "0 for almost every draw at this temperature (its variance grows like 1/tau), "
                "so the data term vanishes and q decays to the prior. Use the reference "
                f"code's eps={REFERENCE_EPS:g} (the default) or a tau >= {EXACT_TAU_MIN:g}.",
                UserWarning,
                stacklevel=3,
            )
        for p in group["params"]:
            if not p.dtype.is_floating_point:
                raise TypeError(f"params: the latent weights must be floating point; got {p.dtype}")

    # ------------------------------------------------------------------ state
    def _state(self, p: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        state = self.state[p]
        if "step" not in state:  # float32 for bfloat16 and float16 weights, as BLROptimizer's
            state["step"] = 0
            if group["beta"] != 0:
                state["momentum"] = torch.zeros_like(p, dtype=_state_dtype(p))
            if group["beta2"] != 0:
                state["second_moment"] = torch.zeros_like(p, dtype=_state_dtype(p))
        return state

    def set_prior(self, prior: Prior) -> None:
        """Set lam_0, the natural parameters of the prior (0: uniform on {-1, +1}).

        Args:
            prior: None or a float (the same lam_0 for every weight), or one tensor per
                parameter in the order of ``param_groups`` (e.g. a previous posterior).

        Raises:
            TypeError, ValueError: a prior that is not finite or not shaped like the weights.
        """
        params = [p for group in self.param_groups for p in group["params"]]
        if prior is None or isinstance(prior, (int, float)) and not isinstance(prior, bool):
            value = 0.0 if prior is None else float(prior)
            if not math.isfinite(value):
                raise ValueError(f"prior must be finite; got {prior!r}")
            priors = [torch.full_like(p, value, dtype=_state_dtype(p)) for p in params]
        elif isinstance(prior, Iterable) and not isinstance(prior, (str, Tensor)):
            priors = [torch.as_tensor(t).detach().clone() for t in prior]
            if len(priors) != len(params):
                raise ValueError(f"prior: expected {len(params)} tensors; got {len(priors)}")
            for i, (t, p) in enumerate(zip(priors, params, strict=True)):
                if t.shape != p.shape or not torch.isfinite(t).all():
                    raise ValueError(f"prior[{i}] must be finite with shape {tuple(p.shape)}")
            priors = [t.to(_state_dtype(p)) for t, p in zip(priors, params, strict=True)]
        else:
            raise TypeError(f"prior must be None, a float or tensors; got {type(prior).__name__}")
        for p, t in zip(params, priors, strict=True):
            self.state[p]["prior"] = t

    def posterior_as_prior(self) -> None:
        """lam_0 <- lam: the current posterior becomes the prior (continual learning)."""
        self.set_prior([p.detach() for group in self.param_groups for p in group["params"]])

    def probs(self, p: Tensor) -> Tensor:
        """q(theta = +1) = sigmoid(2 lam) of parameter ``p`` (call outside the contexts)."""
        return torch.sigmoid(2.0 * p.detach())

    def precision(self, p: Tensor) -> Tensor:
        """Not defined for a Bernoulli; raises TypeError (use :meth:`probs`)."""
        raise TypeError("precision: q is a Bernoulli; use probs(p) = sigmoid(2 lam)")

    # ------------------------------------------------------------------ contexts
    @contextmanager
    def _swap(self, make: Any) -> Iterator[None]:
        saved: list[tuple[list[Tensor], list[Tensor]]] = []
        try:
            with torch.no_grad():
                for group in self.param_groups:
                    ps = [p for p in group["params"] if p.requires_grad]
                    if ps:
                        lams = [p.detach().clone() for p in ps]
                        saved.append((ps, lams))
                        torch._foreach_copy_(ps, make(group, ps, lams))
            yield
        finally:
            with torch.no_grad():
                for ps, lams in saved:
                    torch._foreach_copy_(ps, lams)

    @contextmanager
    def sampled_params(self, train: bool = True) -> Iterator[None]:
        """Replace lam by weights, restored on exit (even on error).

        ``train=True``: the relaxed draw tanh((lam + delta) / tau) of Eq 50 (BayesBiNN; delta
        kept for :meth:`step`) or sign(lam) (STE, the delta method). ``train=False``: an exact
        draw theta in {-1, +1}, q(theta = +1) = sigmoid(2 lam), for the posterior predictive.
        """
        if train:
            self._noise.clear()
            if self.estimator is Estimator.MC:
                self._share_draws()  # the same draw on every rank (torch.distributed)

        def make(group: dict[str, Any], ps: list[Tensor], lams: list[Tensor]) -> list[Tensor]:
            if train and self.estimator is Estimator.DELTA:
                return [_sign(lam) for lam in lams]
            sizes = [p.numel() for p in ps]
            u = torch.rand(sum(sizes), generator=self.generator, dtype=ps[0].dtype,
                           device=ps[0].device)  # fmt: skip
            if not train:
                probs = torch.cat([torch.sigmoid(2.0 * lam).reshape(-1) for lam in lams])
                flat = 2.0 * (u < probs).to(u.dtype) - 1.0  # Bernoulli(p) by inversion
                return [f.view_as(p) for f, p in zip(flat.split(sizes), ps, strict=True)]
            flat = logistic_noise(u).split(sizes)
            deltas = [d.view_as(p) for d, p in zip(flat, ps, strict=True)]
            self._noise.update((p, (d,)) for p, d in zip(ps, deltas, strict=True))
            tau = group["tau"]
            return [concrete(lam, d, tau) for lam, d in zip(lams, deltas, strict=True)]

        with self._swap(make):
            yield

    @contextmanager
    def mode_params(self) -> Iterator[None]:
        """The weights at the mode of q, sign(lam), restored on exit."""
        with self._swap(lambda group, ps, lams: [_sign(lam) for lam in lams]):
            yield

    # ------------------------------------------------------------------ step
    def _group_step(self, group: dict[str, Any], ps: list[Tensor]) -> None:
        states = [self._state(p, group) for p in ps]
        low = ps[0].dtype in LOW_PRECISION  # then the step runs on float32 copies of lam
        lams = [p.detach().float() for p in ps] if low else ps
        grads = [p.grad.to(lam.dtype) for p, lam in zip(ps, lams, strict=True)]
        if self.estimator is Estimator.MC:  # Eq 51: s * grad at the relaxed draw
            grads = [relaxed_scale(lam.detach(), self._noise[p][0].to(lam.dtype), group["tau"],
                                   self.eps) * g
                     for p, lam, g in zip(ps, lams, grads, strict=True)]  # fmt: skip
        for s in states:
            s["step"] += 1
        bayesbinn_update_(
            lams, grads, lr=group["lr"], n_data=group["n_data"],
            priors=[s["prior"] for s in states], entropy=self.entropy, beta=group["beta"],
            momenta=[s["momentum"] for s in states] if group["beta"] != 0 else None,
            step=states[0]["step"], clip=self.clip, beta2=group["beta2"],
            second_moments=[s["second_moment"] for s in states] if group["beta2"] else None,
        )  # fmt: skip
        if low:
            torch._foreach_copy_(ps, lams)


class BayesBiNN(_SignBLR):
    """BayesBiNN (Eq 52, Meng et al. 2020): the Bernoulli BLR with the relaxed estimator of Eq 51.

    Args:
        params: the latent weights lam (parameters or groups), initialised by the caller.
        n_data: N, the size of the training set (the loss is the batch mean); required.
        lr: rho of Eq 52 (the step is lr (N s * g + lam - lam_0)).
        tau: the temperature of the relaxation (Eq 50), > 0.
        beta: momentum in [0, 1) of the reference code (0: Eq 52 exactly).
        prior: lam_0: None (uniform), a float, or one tensor per parameter (a posterior).
        eps: added to both parts of s as in the reference code (default 1e-10, theirs):
            s = (1 - theta_hat^2 + eps) / (tau (1 - mu^2 + eps)), computed in log space so
            that it is the same in float32 and float64. At tau = 1e-10 (their MNIST and CIFAR
            setting) it is about 1 / (1 - mu^2 + eps) for almost every draw; at tau >= 1e-2
            it moves Eq 51's s by at most eps / (tau (1 - mu^2)), negligible unless |lam|
            is large. ``eps=0``: Eq 51's s exactly, which at tau < 1e-3 is 0 for almost
            every draw (a UserWarning says so).
        generator: for the draws.
        process_group: the ranks to keep in step (None: the default group, if any).

    Raises:
        TypeError, ValueError: a setting out of range, a non-finite prior, non-float weights.

    Warns:
        UserWarning: ``eps=0`` with a tau below 1e-3, where the data term vanishes.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        *,
        n_data: float,
        lr: float = 1e-3,
        tau: float = 1.0,
        beta: float = 0.0,
        prior: Prior = None,
        eps: float = REFERENCE_EPS,
        generator: torch.Generator | None = None,
        process_group: Any = None,
    ) -> None:
        super().__init__(
            params, n_data=n_data, lr=lr, tau=tau, beta=beta, prior=prior, estimator="mc",
            entropy=True, clip=None, eps=eps, generator=generator, process_group=process_group,
        )  # fmt: skip


class STE(_SignBLR):
    """The straight-through estimator (Eq 48) as the same step, without entropy or noise.

    lam <- clip(lam - lr g, -clip, clip), g the gradient of the batch-mean loss at sign(lam)
    (sign(0) = +1): no noise, no entropy, no prior (and so no N), clipping as in Courbariaux
    et al. (2015). The gradient is the loss's at the point of the tau -> 0 limit with the
    delta method's Jacobian 1, a heuristic hybrid rather than a limit of Eq 51 (the exact s
    vanishes as tau -> 0). With ``beta=0.9, beta2=0.999`` the step is Adam's on g followed by
    the clip: the STE baseline of Meng et al. (2020).

    Args:
        params: the latent weights. lr: alpha of Eq 48. clip: the bound of |lam| (None: none).
        beta: momentum in [0, 1) (bias-corrected exponential average of g).
        beta2: in [0, 1); > 0 divides the step by the root of the bias-corrected exponential
            average of g^2 (plus 1e-8), as Adam does.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        *,
        lr: float = 1e-2,
        clip: float | None = 1.0,
        beta: float = 0.0,
        beta2: float = 0.0,
        process_group: Any = None,
    ) -> None:
        super().__init__(
            params, n_data=1.0, lr=lr, tau=1.0, beta=beta, beta2=beta2, prior=None,
            estimator="delta", entropy=False, clip=clip, process_group=process_group,
        )  # fmt: skip
