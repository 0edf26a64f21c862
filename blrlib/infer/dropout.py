"""MC dropout (Gal & Ghahramani 2016): T stochastic forward passes as a Bayesian predictive.

    from blrlib.infer.dropout import dropout_noise_precision, mc_dropout_predict
    net = torch.nn.Sequential(torch.nn.Linear(1, 50), torch.nn.ReLU(), torch.nn.Dropout(0.1),
                              torch.nn.Linear(50, 1))   # trained with weight decay 1e-4 (say)
    tau = dropout_noise_precision(length_scale=1.0, keep_prob=0.9, n_data=500, weight_decay=1e-4)
    mean, var = mc_dropout_predict(net, X_test, likelihood="gaussian", noise_precision=tau)

A network trained with dropout before its weight layers is a variational approximation
q(W) = prod_l diag(eps_l) M_l, eps_l,i ~ Bernoulli(keep_prob), to a Bayesian network (Gal &
Ghahramani 2016; the lecture's "Dropout as a variational inference").
Keeping dropout on at test time draws W_t ~ q(W), and averaging T passes is the Monte Carlo
predictive p(y | x*, D) ~ (1/T) sum_t p(y | f^{W_t}(x*)).
For regression the lecture's propositions give its first two moments,

    E[y] ~ (1/T) sum_t f_t(x*),   Var[y] ~ 1/tau + (1/T) sum_t f_t(x*)^2 - E[y]^2,

with f_t the output of the t-th pass and tau the noise precision.

Used in :ref:`dropout-uq`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from blrlib import _checks
from blrlib.estimators import parse_option
from blrlib.infer.model import Likelihood

__all__ = ["DROPOUT_MODULES", "dropout_noise_precision", "fit_dropout", "mc_dropout_predict"]

DROPOUT_MODULES: tuple[type[nn.Module], ...] = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)


def fit_dropout(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    *,
    likelihood: Likelihood | str,
    prior_precision: float,
    noise_precision: float = 1.0,
    n_steps: int = 2000,
    lr: float = 1e-2,
) -> list[float]:
    """Train a network with dropout: full-batch Adam on its MAP loss, dropout on.

    The loss is bar-ell / N = mean_i nll_i + delta / (2N) |theta|^2, i.e. the Gaussian prior as
    weight decay delta / N on the mean loss (the lecture's "Gaussian prior <=> weight decay"),
    with a fresh dropout mask at every step; Gal & Ghahramani read this as fitting the
    variational distribution of :func:`mc_dropout_predict`.

    Args:
        model: a network containing dropout modules; trained in place and left in eval mode.
        X, y: the training set (full batch).
        likelihood: ``"bernoulli"``, ``"categorical"`` or ``"gaussian"``.
        prior_precision: delta of the Gaussian prior on all parameters.
        noise_precision: tau, for ``"gaussian"``.
        n_steps, lr: Adam steps and learning rate.

    Returns:
        The loss at every step.

    Raises:
        ValueError: a model without dropout modules, or a non-positive setting.
    """
    from blrlib.infer.model import BayesModel  # the same likelihood and prior as everywhere

    if not any(isinstance(m, DROPOUT_MODULES) for m in model.modules()):
        raise ValueError("model: has no dropout module (nn.Dropout, ...)")
    n_steps = _checks.count(n_steps, "n_steps")
    lr = _checks.positive_float(lr, "lr")
    bm = BayesModel(
        model, likelihood, prior_precision=prior_precision, noise_precision=noise_precision
    )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    trace = []
    model.train()
    try:
        for _ in range(n_steps):
            optimizer.zero_grad()
            f = model(X)
            if f.dim() == 2 and f.shape[1] == 1 and bm.likelihood is not Likelihood.CATEGORICAL:
                f = f.squeeze(1)
            weights = sum((p * p).sum() for p in params)
            loss = bm.nll_of_outputs(f, y).mean() + 0.5 * prior_precision * weights / len(X)
            loss.backward()
            optimizer.step()
            trace.append(loss.item())
    finally:
        model.eval()
    return trace


def mc_dropout_predict(
    model: nn.Module,
    X: Tensor,
    *,
    likelihood: Likelihood | str,
    n_samples: int = 100,
    noise_precision: float | None = None,
) -> tuple[Tensor, Tensor]:
    """The MC dropout predictive mean and variance from T = ``n_samples`` stochastic passes.

    Implements the lecture's moment estimators after Gal & Ghahramani (2016, Sec 4):

    * ``gaussian`` (f: means): mean = (1/T) sum_t f_t and
      var = 1/tau + (1/T) sum_t f_t^2 - mean^2, elementwise per output;
    * ``bernoulli`` (f: logits): mean = (1/T) sum_t sigmoid(f_t), var = (1/T) sum_t
      sigmoid(f_t)^2 - mean^2, the spread of p(y = 1 | x*, W_t) over the passes;
    * ``categorical`` (f: logits (N, K)): the same with softmax(f_t), per class.

    Only the dropout modules (``DROPOUT_MODULES``) run in training mode; every other module
    is put in eval mode, so that e.g. BatchNorm uses its running statistics rather than the
    test batch. Every module's previous mode is restored on exit, even if a pass raises.
    The passes run under ``torch.no_grad()``, and the moments are accumulated with Welford's
    update in preallocated buffers: no (T, N, K) stack, no negative variances from
    cancellation, and exactly zero spread when all passes agree (e.g. dropout p = 0).

    Args:
        model: a network containing at least one dropout module, mapping X to outputs f of
            shape (N,), (N, 1) (squeezed to (N,) except for ``categorical``) or (N, K).
        X: inputs (N, ...).
        likelihood: ``"gaussian"``, ``"bernoulli"`` or ``"categorical"``.
        n_samples: T, the number of stochastic forward passes.
        noise_precision: tau > 0 of the Gaussian likelihood, required for ``gaussian`` (see
            :func:`dropout_noise_precision`) and not accepted for classification.

    Returns:
        (mean, var), both of the shape of the (squeezed) outputs, or of the class
        probabilities (N, K) for ``categorical``.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: ``model`` has no dropout module, unknown ``likelihood``, non-positive
            ``n_samples``, or ``noise_precision`` missing or non-positive for ``gaussian``
            (or given for classification).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    likelihood = parse_option(likelihood, Likelihood, "likelihood")
    n_samples = _checks.count(n_samples, "n_samples")
    if likelihood is Likelihood.GAUSSIAN:
        if noise_precision is None:
            raise ValueError(
                "noise_precision: required for likelihood='gaussian' (there is no default "
                "noise level; see dropout_noise_precision)"
            )
        tau = _checks.positive_float(noise_precision, "noise_precision")
    elif noise_precision is not None:
        raise ValueError(
            f"noise_precision: only used with likelihood='gaussian'; got {noise_precision!r} "
            f"with likelihood={likelihood.value!r}"
        )
    dropouts = [m for m in model.modules() if isinstance(m, DROPOUT_MODULES)]
    if not dropouts:
        names = ", ".join(cls.__name__ for cls in DROPOUT_MODULES)
        raise ValueError(f"model: has no dropout module ({names}), so every pass is the same")

    previous = {module: module.training for module in model.modules()}
    try:
        model.eval()
        for module in dropouts:
            module.train()
        with torch.no_grad():
            mean = _probabilities(model(X), likelihood).clone()  # preallocated buffers
            m2 = torch.zeros_like(mean)
            for t in range(2, n_samples + 1):
                out = _probabilities(model(X), likelihood)
                # Welford: mean_t = mean_{t-1} + (x - mean_{t-1}) / t and
                # M2_t = M2_{t-1} + (x - mean_{t-1}) (x - mean_t); Var = M2_T / T.
                diff = out - mean
                mean.add_(diff / t)
                m2.add_(diff * (out - mean))
    finally:
        # pre-order (parents first), so a parent's recursive train(mode) is overridden by
        # each child's own saved mode afterwards
        for module, mode in previous.items():
            module.train(mode)
    var = m2 / n_samples  # the lecture's 1/T (not 1/(T - 1)) estimator
    if likelihood is Likelihood.GAUSSIAN:
        var = var + 1.0 / tau
    return mean, var


def _probabilities(f: Tensor, likelihood: Likelihood) -> Tensor:
    """The quantity averaged over passes: the mean f, sigmoid(f) or softmax(f)."""
    if likelihood is Likelihood.CATEGORICAL:
        if f.dim() != 2:
            raise ValueError(f"model: categorical outputs must be (N, K); got {tuple(f.shape)}")
        return torch.softmax(f, dim=-1)
    if f.dim() == 2 and f.shape[1] == 1:
        f = f.squeeze(1)
    return torch.sigmoid(f) if likelihood is Likelihood.BERNOULLI else f


def dropout_noise_precision(
    *, length_scale: float, keep_prob: float, n_data: int, weight_decay: float
) -> float:
    """The noise precision tau = keep_prob * l^2 / (2 N lambda) implied by dropout training.

    Gal & Ghahramani (2016, Sec 4 and App. A) match the dropout objective
    (1/N) sum_i (1/2) |y_i - f(x_i)|^2 + lambda sum_l |W_l|^2 with the variational objective
    for a prior N(0, I / l^2) on the weights and a likelihood N(y | f, I / tau); the two agree
    when lambda = keep_prob * l^2 / (2 N tau), i.e. tau = keep_prob * l^2 / (2 N lambda).

    Conventions: ``keep_prob`` is 1 - p for ``nn.Dropout(p)``; l^2 is the prior precision
    (delta of :class:`blrlib.infer.BayesModel`); ``weight_decay`` is lambda of the objective
    above. With ``torch.optim``'s ``weight_decay=wd`` (a penalty wd |W|^2 / 2) on
    ``nn.MSELoss()`` (no 1/2), the objectives agree up to a factor 2 when lambda = wd / 4.

    Args:
        length_scale: l > 0, the prior length-scale.
        keep_prob: the probability of keeping a unit, in (0, 1].
        n_data: N, the number of training examples.
        weight_decay: lambda > 0.

    Returns:
        tau, a float.

    Raises:
        TypeError: non-numeric arguments or a non-integer ``n_data``.
        ValueError: a non-positive ``length_scale``, ``n_data`` or ``weight_decay``, or
            ``keep_prob`` outside (0, 1].
    """
    length_scale = _checks.positive_float(length_scale, "length_scale")
    keep_prob = _checks.positive_float(keep_prob, "keep_prob")
    if keep_prob > 1:
        raise ValueError(f"keep_prob must be in (0, 1]; got {keep_prob!r}")
    n_data = _checks.count(n_data, "n_data")
    weight_decay = _checks.positive_float(weight_decay, "weight_decay")
    return keep_prob * length_scale**2 / (2 * n_data * weight_decay)
