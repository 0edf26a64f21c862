"""BayesBiNN and STE: each is one engine step (SignBernoulli + its estimator), the recursion the
paper states (Eq 48, 52, 53), and the optimizer contract. Float64: agreement is to rounding."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.testing import assert_close

from blrlib import blr, enumeration, estimators, families, optim
from blrlib.optim.bayesbinn import undecided_fraction

N = 24


def _problem(seed: int = 0):
    """A binary MLP 3-4-3 (no biases, 24 weights) on random data, and its loss as a function of
    one flat vector: mean_loss(theta) is the batch mean a training loop differentiates."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(N, 3, generator=g), torch.randint(0, 3, (N,), generator=g)
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Tanh(), nn.Linear(4, 3, bias=False))
    names, shapes = [k for k, _ in net.named_parameters()], [p.shape for p in net.parameters()]
    sizes = [s.numel() for s in shapes]

    def mean_loss(theta):
        parts = [t.view(s) for t, s in zip(theta.split(sizes), shapes, strict=True)]
        return F.cross_entropy(functional_call(net, dict(zip(names, parts, strict=True)), (x,)), y)

    return net, x, y, mean_loss


def _flat(net):
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()])


def test_bayesbinn_step_is_blr_step():
    """Eq 52 = blr.step(SignBernoulli(tau), estimator="mc", prior=lam_0) with rho = lr, the loss
    N * batch mean and the same draws of u (three steps, a non-zero prior); eps = 0 is Eq 51's
    s exactly, which the engine's autograd computes."""
    net, x, y, mean_loss = _problem()
    lr, tau = 0.05, 0.4
    lam0 = 0.3 * torch.randn(_flat(net).numel())
    prior = list(lam0.split([p.numel() for p in net.parameters()]))
    prior = [t.view_as(p) for t, p in zip(prior, net.parameters(), strict=True)]
    opt = optim.BayesBiNN(net.parameters(), n_data=N, lr=lr, tau=tau, prior=prior, eps=0.0,
                          generator=torch.Generator().manual_seed(1))  # fmt: skip
    q = families.SignBernoulli(lam0.numel(), tau=tau)
    lam, gen = (_flat(net),), torch.Generator().manual_seed(1)
    for _ in range(3):
        opt.zero_grad()
        with opt.sampled_params(train=True):
            F.cross_entropy(net(x), y).backward()
        opt.step()
        lam = blr.step(q, lam, lambda th: N * mean_loss(th), rho=lr, estimator="mc",
                       n_samples=1, prior=(lam0,), generator=gen)  # fmt: skip
        assert_close(_flat(net), lam[0], rtol=0, atol=1e-10)


def test_ste_is_the_plain_latent_weight_loop():
    """Eq 48 with clipping: w = sign(lam) forward, g = grad at w, lam <- clip(lam - a g, -1, 1);
    and the same step is the engine's delta estimator (natural_gradient, no entropy)."""
    net, x, y, mean_loss = _problem(1)
    alpha = 3.0
    opt = optim.STE(net.parameters(), lr=alpha)
    latent = _flat(net)
    q = families.SignBernoulli(latent.numel())
    engine = latent.clone()
    for _ in range(8):
        opt.zero_grad()
        with opt.sampled_params(train=True):
            assert all(torch.equal(p.abs(), torch.ones_like(p)) for p in net.parameters())
            F.cross_entropy(net(x), y).backward()
        opt.step()
        binary = torch.where(latent >= 0, 1.0, -1.0)
        latent = (latent - alpha * torch.func.grad(mean_loss)(binary)).clamp(-1.0, 1.0)
        g = estimators.natural_gradient(q, (engine,), mean_loss, estimator="delta")[0]
        engine = (engine - alpha * g).clamp(-1.0, 1.0)
        assert_close(_flat(net), latent, rtol=0, atol=1e-12)
        assert_close(engine, latent, rtol=0, atol=1e-12)
    assert (latent.abs() == 1).any()  # the clipping was exercised


def _linear_problem(p=4, n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, p, generator=g)
    y = torch.bernoulli(torch.sigmoid(X @ torch.ones(p)), generator=g)

    def mean_loss(theta):
        return F.binary_cross_entropy_with_logits(X @ theta, y)

    return X, y, mean_loss


def _fit(X, y, *, steps, lr, tau, gen, decay=True):
    w = nn.Parameter(torch.zeros(X.shape[1]))
    opt = optim.BayesBiNN([w], n_data=len(X), lr=lr, tau=tau, generator=gen)
    objective = []
    for t in range(steps):
        if decay:
            opt.param_groups[0]["lr"] = lr / (1 + t / 50)  # Robbins-Monro
        opt.zero_grad()
        with opt.sampled_params(train=True):
            F.binary_cross_entropy_with_logits(X @ w, y).backward()
        opt.step()
        objective.append(w.detach().clone())
    return w.detach(), objective


def test_eq53_optimality_at_convergence():
    """At the fixed point of Eq 52, lam* = -N E_delta[s * grad(theta_hat)] (Eq 53 with the sign
    the update implies). The engine (which the optimizer equals, above) runs with 128 draws per
    step so that the iterates settle (rho = 0.05, 400 steps, lam* = the mean of the last 250);
    the right side uses 200k fresh draws at lam*. They agree within 5 standard errors of that
    estimate plus 0.05, the spread left in the averaged iterates (Jensen's gap)."""
    X, y, mean_loss = _linear_problem()
    tau, n = 0.5, len(X)
    q = families.SignBernoulli(4, tau=tau)
    path = blr.run(q, (torch.zeros(4),), lambda th: n * mean_loss(th), rho=0.05, n_steps=400,
                   estimator="mc", n_samples=128, prior=(torch.zeros(4),),
                   generator=torch.Generator().manual_seed(0))  # fmt: skip
    lam = torch.stack([p[0] for p in path[150:]]).mean(0)
    delta = q.noise(200_000, generator=torch.Generator().manual_seed(5))
    theta = torch.tanh((lam + delta) / tau)
    per_draw = families.sign_bernoulli.relaxed_scale(lam, delta, tau) * torch.vmap(
        torch.func.grad(mean_loss)
    )(theta)
    rhs = -n * per_draw.mean(0)
    se = n * per_draw.std(0) / per_draw.shape[0] ** 0.5
    assert ((lam - rhs).abs() <= 5 * se + 0.05).all(), (lam, rhs, se)
    assert lam.abs().min() > 0.2  # a non-trivial fixed point


def test_bayes_objective_decreases_on_average():
    """E_q[bar-ell] - H(q), computed exactly by enumeration over {-1, +1}^4, falls over a run:
    the mean over the last 100 iterates is below the mean over the first 100 and near the best
    mean-field value reached by the exact BLR (within 0.1 nats)."""
    X, y, mean_loss = _linear_problem()
    thetas = enumeration.sign_vectors(4)
    losses = enumeration.loss_table(lambda th: len(X) * mean_loss(th), thetas)
    _, path = _fit(X, y, steps=1000, lr=0.05, tau=0.5, gen=torch.Generator().manual_seed(0))
    obj = torch.stack([enumeration.bayes_objective(lam, thetas, losses) for lam in path])
    assert obj[-100:].mean() < obj[:100].mean() - 0.1
    q = families.SignBernoulli(4)
    lam = (torch.zeros(4),)
    for _ in range(300):
        lam = blr.step(
            q,
            lam,
            rho=0.3,
            estimator="exact",
            expected_loss=lambda mu: enumeration.expected_loss(mu[0], thetas, losses),
        )
    best = enumeration.bayes_objective(lam[0], thetas, losses)
    assert obj[-100:].mean() < best + 0.1
    assert best >= -torch.logsumexp(-losses, 0) - 1e-9  # no q beats the exact posterior


# --------------------------------------------------------------------- the contract
@pytest.mark.parametrize(
    ("kw", "error", "name"),
    [
        (dict(tau=0.0), ValueError, "tau"),
        (dict(tau=-1.0), ValueError, "tau"),
        (dict(n_data=0), ValueError, "n_data"),
        (dict(lr=0.0), ValueError, "lr"),
        (dict(beta=1.0), ValueError, "beta"),
        (dict(prior=math.inf), ValueError, "prior"),
        (dict(prior=[torch.full((2, 3), math.nan), torch.zeros(2)]), ValueError, "prior"),
        (dict(prior="uniform"), TypeError, "prior"),
    ],
)
def test_bad_settings_name_the_argument(kw, error, name):
    args = {"n_data": 10, **kw}
    with pytest.raises(error, match=name):
        optim.BayesBiNN(nn.Linear(3, 2).parameters(), **args)


def test_weights_must_be_floating_point():
    with pytest.raises(TypeError, match="params"):
        optim.BayesBiNN([torch.zeros(3, dtype=torch.long)], n_data=10)


def test_contexts_restore_and_give_binary_weights():
    net, x, y, _ = _problem()
    lam = _flat(net)
    opt = optim.BayesBiNN(net.parameters(), n_data=N, tau=0.1)
    with pytest.raises(RuntimeError, match="boom"), opt.sampled_params(train=True):
        assert (_flat(net).abs() < 1).all()  # relaxed weights in (-1, 1)
        raise RuntimeError("boom")
    assert torch.equal(_flat(net), lam)
    with opt.sampled_params(train=False):
        assert torch.equal(_flat(net).abs(), torch.ones_like(lam))
    with opt.mode_params():
        assert torch.equal(_flat(net), torch.where(lam >= 0, 1.0, -1.0))
    assert torch.equal(_flat(net), lam)
    with pytest.raises(TypeError, match="probs"):
        opt.precision(net[0].weight)


def test_predict_one_draw_is_a_forward_pass_at_a_bernoulli_draw():
    """n_samples=1 is softmax(f(x; theta)) with theta_j = +1 when u_j < sigmoid(2 lam_j), else
    -1, u the generator's next uniform draw over all weights: written here without
    sampled_params. n_samples=0 is the mode sign(lam)."""
    net, x, _, _ = _problem()
    opt = optim.BayesBiNN(net.parameters(), n_data=N, generator=torch.Generator().manual_seed(3))
    lam = _flat(net)
    state = opt.generator.get_state()
    u = torch.rand(lam.numel(), generator=opt.generator)
    opt.generator.set_state(state)
    theta = torch.where(u < torch.sigmoid(2 * lam), 1.0, -1.0)

    def forward(flat):
        parts = flat.split([p.numel() for p in net.parameters()])
        weights = {k: t.view_as(p) for (k, p), t in zip(net.named_parameters(), parts, strict=True)}
        return torch.softmax(functional_call(net, weights, (x,)), -1)

    assert_close(optim.predict(net, opt, x, n_samples=1), forward(theta), rtol=0, atol=1e-12)
    mode = torch.where(lam >= 0, 1.0, -1.0)
    assert_close(optim.predict(net, opt, x, n_samples=0), forward(mode), rtol=0, atol=0)
    assert torch.equal(_flat(net), lam)  # lam restored


def test_draws_have_the_bernoulli_frequencies():
    """q(theta = +1) = sigmoid(2 lam): 4000 draws within 5 standard errors."""
    w = nn.Parameter(torch.tensor([-1.0, -0.2, 0.0, 0.7]))
    opt = optim.BayesBiNN([w], n_data=1, generator=torch.Generator().manual_seed(0))
    draws = []
    for _ in range(4000):
        with opt.sampled_params(train=False):
            draws.append(w.detach().clone())
    freq = (torch.stack(draws) > 0).double().mean(0)
    p = opt.probs(w)
    z = (freq - p) / (p * (1 - p) / 4000).sqrt()
    assert_close(z, torch.zeros(4), rtol=0, atol=5.0)


def test_state_dict_round_trip_with_momentum_and_prior():
    net, x, y, _ = _problem()

    def train(opt, model, n):
        for _ in range(n):
            opt.zero_grad()
            with opt.sampled_params(train=True):
                F.cross_entropy(model(x), y).backward()
            opt.step()

    opt = optim.BayesBiNN(net.parameters(), n_data=N, lr=0.01, beta=0.9, prior=0.2,
                          generator=torch.Generator().manual_seed(0))  # fmt: skip
    train(opt, net, 3)
    opt.posterior_as_prior()
    twin, saved = copy.deepcopy(net), copy.deepcopy(opt.state_dict())
    gen_state = opt.generator.get_state()
    train(opt, net, 3)
    opt2 = optim.BayesBiNN(twin.parameters(), n_data=N, lr=0.01, beta=0.9,
                           generator=torch.Generator())  # fmt: skip
    opt2.load_state_dict(saved)
    opt2.generator.set_state(gen_state)
    train(opt2, twin, 3)
    for p, q in zip(net.parameters(), twin.parameters(), strict=True):
        assert_close(p, q, rtol=0, atol=0)


def test_param_groups_use_their_own_settings():
    """A group with lr = 0 is refused; a group with its own tau gives its own relaxed draw."""
    net = nn.Sequential(nn.Linear(2, 3, bias=False), nn.Linear(3, 1, bias=False))
    with pytest.raises(ValueError, match="lr"):
        optim.BayesBiNN([{"params": net[0].parameters(), "lr": 0.0}], n_data=10)
    gen = torch.Generator().manual_seed(0)
    opt = optim.BayesBiNN([{"params": net[0].parameters()},
                           {"params": net[1].parameters(), "tau": 1e-3}], n_data=10, tau=1.0,
                          generator=gen)  # fmt: skip
    lam = [p.detach().clone() for p in net.parameters()]
    with opt.sampled_params(train=True):
        second = net[1].weight.detach().clone()
    gen.manual_seed(0)
    u = torch.rand(6 + 3, generator=gen)
    delta = families.sign_bernoulli.logistic_noise(u[6:]).view(1, 3)
    assert_close(second, torch.tanh((lam[1] + delta) / 1e-3))


# ------------------------------------------------------------ the reference temperature
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reference_temperature_keeps_the_data_term(dtype):
    """tau = 1e-10 (Meng et al.'s MNIST setting) with the default eps = 1e-10: every draw is
    binary and s = 1 / (sech^2(lam) + 1e-10), so the data term drives lam. On a separable
    problem with a binary teacher, 60 steps from lam = 0 recover the teacher's signs, in
    float32 as in float64, and every lam is finite."""
    g = torch.Generator().manual_seed(0)
    teacher = torch.tensor([1.0, -1.0, -1.0, 1.0, 1.0, -1.0])
    X = torch.randn(200, 6, generator=g)
    y = (X @ teacher > 0).to(dtype)
    X = X.to(dtype)
    w = nn.Parameter(torch.zeros(6, dtype=dtype))
    opt = optim.BayesBiNN([w], n_data=200, lr=1e-2, tau=1e-10,
                          generator=torch.Generator().manual_seed(1))  # fmt: skip
    for _ in range(60):
        opt.zero_grad()
        with opt.sampled_params(train=True):
            assert torch.equal(w.detach().abs(), torch.ones_like(w))  # binary draws
            F.binary_cross_entropy_with_logits(X @ w, y).backward()
        opt.step()
    assert torch.isfinite(w).all()
    assert torch.equal(torch.sign(w.detach()), teacher.to(dtype))


def test_exact_scale_at_tiny_tau_warns_and_loses_the_data():
    """eps = 0 asks for Eq 51's s, which at tau = 1e-10 is 0 for every draw in practice: the
    optimizer warns, and lam decays from 2 towards the uniform prior as (1 - lr)^t."""
    w = nn.Parameter(torch.full((4,), 2.0))
    with pytest.warns(UserWarning, match="eps"):
        opt = optim.BayesBiNN([w], n_data=100, lr=0.1, tau=1e-10, eps=0.0)
    x = torch.randn(16, 4)
    for _ in range(10):
        opt.zero_grad()
        with opt.sampled_params(train=True):
            F.binary_cross_entropy_with_logits(x @ w, torch.ones(16)).backward()
        opt.step()
    assert_close(w.detach(), torch.full((4,), 2.0 * 0.9**10))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default eps and a moderate exact tau are quiet
        optim.BayesBiNN([w], n_data=100, tau=1e-10)
        optim.BayesBiNN([w], n_data=100, tau=1e-2, eps=0.0)


def test_sign_of_zero_is_plus_one_and_undecided_weights_are_counted():
    """sign(0) = sign(-0.0) = +1 (the reference code's convention) in STE's forward and in
    both optimizers' mode; a latent weight at +-1e-9 keeps its sign; undecided_fraction
    counts |lam| below the threshold."""
    lam = torch.tensor([0.0, -0.0, 1e-9, -1e-9, 0.5, -2.0])
    expected = torch.tensor([1.0, 1.0, 1.0, -1.0, 1.0, -1.0])
    for make in (lambda p: optim.STE([p]), lambda p: optim.BayesBiNN([p], n_data=1)):
        w = nn.Parameter(lam.clone())
        opt = make(w)
        with opt.mode_params():
            assert torch.equal(w.detach(), expected)
        if isinstance(opt, optim.STE):
            with opt.sampled_params(train=True):
                assert torch.equal(w.detach(), expected)
    assert undecided_fraction([lam], threshold=1e-6) == 4 / 6
    assert undecided_fraction([lam], threshold=1.1) == 5 / 6
    with pytest.raises(ValueError, match="threshold"):
        undecided_fraction([lam], threshold=0.0)


def test_ste_with_adam_moments_is_torch_adam_then_clip():
    """STE(beta=0.9, beta2=0.999) = torch.optim.Adam on the gradient at sign(lam), followed
    by the clip to [-1, 1] (the STE baseline of Meng et al. 2020), step for step."""
    net, x, y, mean_loss = _problem(2)
    opt = optim.STE(net.parameters(), lr=0.05, beta=0.9, beta2=0.999)
    latent = nn.Parameter(_flat(net))
    adam = torch.optim.Adam([latent], lr=0.05, betas=(0.9, 0.999), eps=1e-8)
    for _ in range(12):
        opt.zero_grad()
        with opt.sampled_params(train=True):
            F.cross_entropy(net(x), y).backward()
        opt.step()
        adam.zero_grad()
        latent.grad = torch.func.grad(mean_loss)(torch.where(latent >= 0, 1.0, -1.0).detach())
        adam.step()
        with torch.no_grad():
            latent.clamp_(-1.0, 1.0)
        assert_close(_flat(net), latent.detach(), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="beta2"):
        optim.STE(net.parameters(), beta2=1.0)
