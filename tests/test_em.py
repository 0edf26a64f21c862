"""EM as coordinate-wise BLR steps (Sec 5.2, Eq 55-56), against scikit-learn step for step.

From the same initialisation, 20 iterations of ``sklearn.mixture.GaussianMixture`` (driven one
iteration per ``fit`` with ``warm_start=True, max_iter=1``) and of ``blrlib.em.run`` agree to
1e-8: both run the same float64 algorithm, and on these well-separated clusters EM contracts,
so rounding differences (~1e-14) do not grow. ``reg_covar`` is added to the diagonal of each
covariance by both (blrlib adds reg_covar pi_k I to the second-moment statistic).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGMM
from torch.testing import assert_close

from blrlib import em

F64 = torch.float64


def _blobs(n: int = 300) -> torch.Tensor:
    centres = torch.tensor([[0.0, 0.0], [3.0, 3.0], [-3.0, 2.5]])
    shapes = torch.tensor(
        [[[1.0, 0.6], [0.0, 0.5]], [[0.7, 0.0], [0.3, 0.9]], [[0.5, 0], [0, 1.2]]]
    )
    z = torch.arange(n) % 3
    return centres[z] + torch.einsum("npq,nq->np", shapes[z], torch.randn(n, 2))


@pytest.mark.parametrize("reg_covar", [0.0, 1e-6, 0.1])
def test_em_equals_sklearn_step_for_step(reg_covar: float) -> None:
    y = _blobs()
    w0 = torch.tensor([0.2, 0.3, 0.5])
    m0 = torch.tensor([[1.0, 0.0], [2.0, 2.0], [-1.0, 1.0]])
    c0 = torch.eye(2).repeat(3, 1, 1) * torch.tensor([1.0, 2.0, 0.5])[:, None, None]
    model = em.GaussianMixtureEM(reg_covar=reg_covar)
    path = em.run(model, y, model.from_moments(w0, m0, c0), n_iter=20)
    sk = SkGMM(
        3,
        covariance_type="full",
        weights_init=w0.numpy(),
        means_init=m0.numpy(),
        precisions_init=torch.linalg.inv(c0).numpy(),
        reg_covar=reg_covar,
        max_iter=1,
        warm_start=True,
        tol=0.0,
    )
    for t in range(1, 21):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            sk.fit(y.numpy())
        weights, means, covs = model.moments(path["theta"][t])
        assert_close(weights, torch.from_numpy(sk.weights_), rtol=1e-8, atol=1e-8)
        assert_close(means, torch.from_numpy(sk.means_), rtol=1e-8, atol=1e-8)
        assert_close(covs, torch.from_numpy(sk.covariances_), rtol=1e-8, atol=1e-8)
        # sklearn's lower_bound_ is the mean log-likelihood at the parameters it started from
        lower = torch.tensor(sk.lower_bound_, dtype=F64)
        assert_close(torch.tensor(path["loglik"][t - 1]), lower, rtol=1e-8, atol=1e-8)


def test_loglik_never_decreases_and_e_step_is_bayes_rule() -> None:
    y = _blobs()
    model = em.GaussianMixtureEM()
    path = em.run(model, y, model.init(y, 3, generator=torch.Generator().manual_seed(1)), n_iter=30)
    diffs = torch.diff(torch.tensor(path["loglik"]))
    assert_close(diffs.clamp(max=0.0), torch.zeros_like(diffs), rtol=0.0, atol=1e-12)
    log_joint = model.log_joint(path["theta"][5], y)
    assert_close(em.e_step(log_joint), torch.softmax(log_joint, -1))  # p(z | y, theta)


def test_m_step_is_the_delta_method_stationary_point() -> None:
    """grad_theta E_q(z)[log p(y, z | theta)] = 0 at the M-step (Eq 5 with the delta method),
    checked by autograd in the (weights-logit, mean, Cholesky-of-precision) coordinates."""
    y = _blobs(120)
    model = em.GaussianMixtureEM()
    theta = model.init(y, 3, generator=torch.Generator().manual_seed(2))
    resp = em.e_step(model.log_joint(theta, y))
    w, m, c = model.moments(model.from_stats(model.stats(y, resp)))
    logits = w.log().requires_grad_(True)
    mean = m.clone().requires_grad_(True)
    chol = torch.linalg.cholesky(torch.linalg.inv(c)).requires_grad_(True)

    def objective() -> torch.Tensor:
        low = torch.tril(chol)  # only the lower triangle is a coordinate
        prec = low @ low.mT
        diff = y[:, None, :] - mean
        quad = torch.einsum("nkp,kpq,nkq->nk", diff, prec, diff)
        logdet = 2 * torch.diagonal(low, dim1=-2, dim2=-1).log().sum(-1)
        log_joint = torch.log_softmax(logits, 0) + 0.5 * (logdet - quad)
        return (resp * log_joint).sum()

    grads = torch.autograd.grad(objective(), (logits, mean, chol))
    for g in grads:
        assert_close(g, torch.zeros_like(g), rtol=0.0, atol=1e-9)


def test_parallel_variant_is_em_at_half_speed() -> None:
    """Jacobi-style parallel BLR steps with rho = 1: iterate 2t equals EM's iterate t."""
    y = _blobs(150)
    model = em.GaussianMixtureEM()
    theta0 = model.init(y, 3, generator=torch.Generator().manual_seed(3))
    batch = em.run(model, y, theta0, n_iter=5)
    par = em.run(model, y, theta0, n_iter=10, parallel=True)
    for t in range(6):
        par_t, batch_t = model.moments(par["theta"][2 * t]), model.moments(batch["theta"][t])
        for a, b in zip(par_t, batch_t, strict=True):
            assert_close(a, b)


def test_online_em_reaches_the_batch_fixed_point() -> None:
    """rho_t = (t + 1)^-0.6 over 30 passes of 12 minibatches: the statistics still carry noise
    of order rho_T std(y) / sqrt(batch) ~ 1e-2, so the means agree to 2e-2 and the mean
    log-likelihood (flat at the optimum: second order in the error) to 1e-3."""
    y = _blobs(600)
    model = em.GaussianMixtureEM()
    m0 = torch.tensor([[1.0, 1.0], [2.0, 2.0], [-2.0, 1.0]])
    theta0 = model.from_moments(torch.full((3,), 1 / 3), m0, torch.eye(2).repeat(3, 1, 1))
    batch = em.run(model, y, theta0, n_iter=60)
    online = em.run_online(
        model, y, theta0, n_passes=30, batch_size=50, generator=torch.Generator().manual_seed(5)
    )
    _, mb, _ = model.moments(batch["theta"][-1])
    _, mo, _ = model.moments(online["theta"][-1])
    assert_close(mo, mb, rtol=0.0, atol=2e-2)
    assert_close(online["loglik"][-1], batch["loglik"][-1], rtol=0.0, atol=1e-3)


def test_bernoulli_mixture_loglik_increases_and_smoothing() -> None:
    """Without smoothing, EM's log-likelihood never decreases (with it, the log posterior
    is what increases); a pixel that is always 0 then gives an infinite logit, a clear error."""
    probs = torch.tensor([[0.9, 0.9, 0.1, 0.1, 0.3], [0.1, 0.2, 0.9, 0.8, 0.4]])
    y = torch.bernoulli(probs[torch.arange(200) % 2])
    w0 = torch.tensor([0.5, 0.5])
    theta0 = em.BernoulliMixtureEM.from_moments(w0, torch.sigmoid(torch.randn(2, 5) * 0.1))
    path = em.run(em.BernoulliMixtureEM(smoothing=0.0), y, theta0, n_iter=15)
    diffs = torch.diff(torch.tensor(path["loglik"]))
    assert_close(diffs.clamp(max=0.0), torch.zeros_like(diffs), rtol=0.0, atol=1e-12)
    y[:, -1] = 0.0
    with pytest.raises(ValueError, match="smoothing"):
        em.run(em.BernoulliMixtureEM(smoothing=0.0), y, theta0, n_iter=1)
    em.run(em.BernoulliMixtureEM(), y, theta0, n_iter=1)  # the default smoothing copes


def test_bad_input_and_collapse_raise() -> None:
    y = _blobs(30)
    model = em.GaussianMixtureEM()
    theta0 = model.init(y, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="non-finite"):
        em.run(model, y.clone().fill_(float("nan")), theta0, n_iter=1)
    with pytest.raises(ValueError, match="shape"):
        em.run(model, y[:, 0], theta0, n_iter=1)
    with pytest.raises(ValueError, match="reg_covar"):
        em.run(em.GaussianMixtureEM(reg_covar=-1.0), y, theta0, n_iter=1)
    # a component sitting on a single data point far from the rest collapses onto it
    y2 = torch.cat((torch.randn(20, 2), torch.tensor([[50.0, 50.0]])))
    theta = model.from_moments(
        torch.tensor([0.5, 0.5]),
        torch.tensor([[0.0, 0.0], [50.0, 50.0]]),
        torch.eye(2).repeat(2, 1, 1),
    )
    with pytest.raises(ValueError, match="collapsed"):
        em.run(model, y2, theta, n_iter=3)
    safe = em.run(em.GaussianMixtureEM(reg_covar=1e-3), y2, theta, n_iter=3)
    covs = em.GaussianMixtureEM.moments(safe["theta"][-1])[2]
    assert_close(covs[1], 1e-3 * torch.eye(2), rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="kappa"):
        em.run_online(model, y, theta0, n_passes=1, batch_size=5, kappa=0.4)


def test_eq56_three_forms_agree_with_torch_distributions() -> None:
    """log p(y, z = k | theta) three ways: lam~_1 + lam_0 (``log_joint``), the natural form
    <T_yz, theta> - A_yz(theta) + log h (``log_joint_natural``), and torch.distributions.
    Float64 rounding of a few terms: 1e-10."""
    y = _blobs(50)
    model = em.GaussianMixtureEM()
    theta = model.init(y, 3, generator=torch.Generator().manual_seed(4))
    w, m, c = model.moments(theta)
    ref = w.log() + torch.distributions.MultivariateNormal(m, c).log_prob(y[:, None, :])
    assert_close(model.log_joint(theta, y), ref, rtol=1e-10, atol=1e-10)
    assert_close(model.log_joint_natural(theta, y), ref, rtol=1e-10, atol=1e-10)
    bern = em.BernoulliMixtureEM()
    probs = torch.tensor([[0.9, 0.2, 0.5], [0.1, 0.7, 0.3]])
    theta_b = bern.from_moments(torch.tensor([0.3, 0.7]), probs)
    yb = torch.bernoulli(torch.full((20, 3), 0.5))
    ref_b = torch.tensor([0.3, 0.7]).log() + torch.distributions.Bernoulli(probs).log_prob(
        yb[:, None, :]
    ).sum(-1)
    assert_close(bern.log_joint(theta_b, yb), ref_b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["gaussian", "bernoulli"])
def test_m_step_inverts_the_gradient_of_the_log_partition(name: str) -> None:
    """theta = grad A*(s) means grad A(theta) = s: autograd of A_yz at the M-step's output
    gives back the averaged statistics (1e-10; the closed-form inverse is exact)."""
    if name == "gaussian":
        y, model = _blobs(90), em.GaussianMixtureEM()
        theta = model.init(y, 3, generator=torch.Generator().manual_seed(2))
    else:
        y = torch.bernoulli(torch.full((60, 4), 0.4))
        model = em.BernoulliMixtureEM(smoothing=0.0)
        theta = model.from_moments(torch.tensor([0.5, 0.5]), torch.rand(2, 4) * 0.6 + 0.2)
    resp = em.e_step(model.log_joint(theta, y))
    s = model.stats(y, resp)
    new = tuple(p.detach().requires_grad_(True) for p in model.from_stats(s))
    grads = torch.autograd.grad(model.log_partition(new), new)
    for g, stat in zip(grads, s, strict=True):
        assert_close(g, stat, rtol=1e-10, atol=1e-10)
    # the E-step's natural parameters are lam~_1 + lam_0: log r_ik - log r_iK
    log_joint = model.log_joint(theta, y)
    assert_close(
        (resp[:, :-1] / resp[:, -1:]).log(), log_joint[:, :-1] - log_joint[:, -1:], rtol=1e-10,
        atol=1e-10,
    )  # fmt: skip


def test_tol_stops_and_reports_convergence() -> None:
    y = _blobs(150)
    model = em.GaussianMixtureEM()
    theta0 = model.init(y, 3, generator=torch.Generator().manual_seed(3))
    out = em.run(model, y, theta0, n_iter=500, tol=1e-9)
    assert out["converged"] and out["n_iter"] < 500 and len(out["theta"]) == out["n_iter"] + 1
    assert out["loglik"][-1] - out["loglik"][-2] < 1e-9
    short = em.run(model, y, theta0, n_iter=2, tol=1e-9)
    assert not short["converged"] and short["n_iter"] == 2
    assert not em.run(model, y, theta0, n_iter=3)["converged"]  # no tol: never claimed
    # parallel iterates repeat pairwise; convergence compares two iterations back
    par = em.run(model, y, theta0, n_iter=1000, parallel=True, tol=1e-9)
    assert par["converged"] and par["n_iter"] >= 2 * out["n_iter"] - 2
    with pytest.raises(ValueError, match="tol"):
        em.run(model, y, theta0, n_iter=3, tol=-1.0)


def test_online_averaging_of_theta_is_biased_and_of_statistics_is_not() -> None:
    """Averaging minibatch M-steps (theta, Eq 55's rho < 1 step) keeps the bias of inverting a
    minibatch covariance (~ B_k / (B_k - D - 2) in the precision, 1.3 at B_k ~ 17); averaging
    the statistics does not. After 20 passes: gap to batch EM's optimum > 1e-2 vs < 1e-3."""
    y = _blobs(600)
    model = em.GaussianMixtureEM()
    m0 = torch.tensor([[1.0, 1.0], [2.0, 2.0], [-2.0, 1.0]])
    theta0 = model.from_moments(torch.full((3,), 1 / 3), m0, torch.eye(2).repeat(3, 1, 1))
    best = em.run(model, y, theta0, n_iter=200, tol=1e-13)["loglik"][-1]
    gaps = {}
    for average in ("statistics", "natural"):
        out = em.run_online(
            model, y, theta0, n_passes=20, batch_size=50, average=average,
            generator=torch.Generator().manual_seed(5),
        )  # fmt: skip
        gaps[average] = best - out["loglik"][-1]
    assert gaps["statistics"] < 1e-3 < 1e-2 < gaps["natural"]
    with pytest.raises(ValueError, match="average"):
        em.run_online(model, y, theta0, n_passes=1, batch_size=50, average="theta")


def test_clear_messages_for_empty_data_and_too_many_components() -> None:
    model = em.GaussianMixtureEM()
    y = _blobs(5)
    theta0 = model.init(y, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="at least one data point"):
        em.run(model, y[:0], theta0, n_iter=2)
    with pytest.raises(ValueError, match="n_components=7 exceeds the number of data points 5"):
        model.init(y, 7)


def test_bernoulli_mixture_keeps_a_component_no_image_reaches() -> None:
    """Smoothing is a Dirichlet(1 + eps N) prior on the weights too: a component with zero
    responsibility keeps weight eps / (1 + K eps) and the prior's pixel probabilities 1/2;
    without smoothing it is a clear error."""
    first = torch.tensor([[0.3, 0.1], [0.2, 0.5], [0.0, 0.0]])  # s_kd, component 3 unused
    r_head = torch.tensor([0.4, 0.6])  # r_3 = 0
    model = em.BernoulliMixtureEM(smoothing=1e-3)
    weights, probs = model.moments(model.from_stats((first, r_head)))
    eps, k = 1e-3, 3
    assert_close(weights, (torch.tensor([0.4, 0.6, 0.0]) + eps) / (1 + k * eps))
    assert_close(probs[2], torch.full((2,), 0.5))
    assert_close(probs[0], (first[0] + eps) / (0.4 + 2 * eps))
    with pytest.raises(ValueError, match="collapsed"):
        em.BernoulliMixtureEM(smoothing=0.0).from_stats((first, r_head))
