"""blrlib.viz: every public function draws on the non-interactive Agg backend what it says.

Each figure is checked through its artists (lines, collections, titles, slider names), and
where a drawn quantity has an independent reference (a density, an ellipse, a share of draws)
against that reference.
"""

from __future__ import annotations

import math
import warnings

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg", force=True)

import ipywidgets  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import PathCollection, PolyCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy import integrate, special  # noqa: E402
from torch.testing import assert_close  # noqa: E402

from blrlib import blr, families, landscapes, sgd_bayes, viz  # noqa: E402
from blrlib.experiments import sgd  # noqa: E402

F64 = torch.float64


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _widget_names(widget) -> set[str]:
    return {getattr(c, "description", "") for c in widget.children} - {""}


def test_gaussian_pdf_is_the_normal_density():
    grid = torch.linspace(-3.0, 4.0, 50)
    ref = torch.distributions.Normal(0.3, math.sqrt(0.7)).log_prob(grid).exp()
    torch.testing.assert_close(viz.gaussian_pdf(grid, 0.3, 0.7), ref)


def test_plot_gaussian_and_snapshots_draw_one_curve_per_iteration():
    grid = torch.linspace(-3.0, 3.0, 40)
    _, ax = plt.subplots()
    viz.plot_gaussian(ax, grid, 0.5, 2.0, label="q")
    (line,) = ax.get_lines()
    np.testing.assert_allclose(line.get_ydata(), viz.gaussian_pdf(grid, 0.5, 2.0).numpy())
    path = [(0.0, 1.0), (0.5, 0.5), (1.0, 0.25)]
    density = viz.gaussian_pdf(grid, 1.0, 0.25)
    fig = viz.snapshots(path, grid, density, [0, 1, 10], title="t")
    ax = fig.axes[0]
    assert isinstance(fig, Figure) and ax.get_title() == "t"
    assert len(ax.get_lines()) == 3 and any(isinstance(c, PolyCollection) for c in ax.collections)
    # iteration 10 is past the path's end: the last q is drawn
    np.testing.assert_allclose(ax.get_lines()[2].get_ydata(), density.numpy())
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["exact posterior", "q after 0 steps", "q after 1 steps", "q after 10 steps"]


def test_plot_ellipse_lies_on_the_mahalanobis_circle():
    mean, cov = torch.tensor([1.0, -1.0]), torch.tensor([[2.0, 0.6], [0.6, 1.0]])
    _, ax = plt.subplots()
    (line,) = viz.plot_ellipse(ax, mean, cov, radius=2.0)
    pts = torch.tensor(np.stack([line.get_xdata(), line.get_ydata()], -1)) - mean
    dist2 = (pts @ torch.linalg.inv(cov) * pts).sum(-1)
    torch.testing.assert_close(dist2, torch.full_like(dist2, 4.0))


def test_plot_gmm_and_em_figure():
    y = torch.randn(30, 2)
    w, means = torch.tensor([0.4, 0.6]), torch.tensor([[0.0, 0.0], [2.0, 1.0]])
    covs = torch.eye(2).expand(2, 2, 2)
    _, ax = plt.subplots()
    viz.plot_gmm(ax, y, w, means, covs)
    assert len(ax.get_lines()) == 4  # 1- and 2-sigma ellipses of two components
    (points,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert points.get_offsets().shape == (30, 2)
    loglik = [-3.0, -2.5, -2.4]
    fig = viz.em_figure(y, [(w, means, covs)] * 3, loglik, 1)
    left, right = fig.axes
    assert left.get_title() == "after 1 EM steps"
    np.testing.assert_allclose(right.get_lines()[0].get_ydata(), loglik)
    np.testing.assert_allclose(right.collections[0].get_offsets(), [[1, -2.5]])


def test_relaxation_figure_shows_the_share_of_positive_draws():
    lam, taus = 0.5, [0.1, 1.0]
    fig = viz.relaxation_figure(lam, taus, n=4000)
    assert len(fig.axes) == 2
    p = 1 / (1 + math.exp(-2 * lam))  # P(+1) = sigmoid(2 lam) at every temperature
    for ax, tau in zip(fig.axes, taus, strict=True):
        title = ax.get_title()
        assert title.startswith(f"tau = {tau:g}")
        share = float(title.rsplit(":", 1)[1])
        # 4000 draws: standard error 0.007; 0.04 is 5 of them plus the title's rounding
        assert abs(share - p) < 0.04


def test_enumeration_and_binary_curves_figures():
    result = {
        "excess_loss": {"bayesbinn": [0.1, 0.2], "ste": [0.3, 0.0]},
        "marginals": {"exact": [[0.2, 0.9]], "bayesbinn": [[0.25, 0.8]],
                      "mean_field_from_0": [[0.3, 0.85]]},
    }  # fmt: skip
    left, right = viz.enumeration_figure(result).axes
    assert len(left.collections) == 2 and len(right.collections) == 2
    assert len(right.get_lines()) == 1  # the diagonal
    curve = [[1.0, 0.5], [0.5, 0.8]]
    digits = {"curves": [{"ste": curve, "bayesbinn": curve}]}
    temperature = {"temperatures": {"1e-10": [{"curve": curve}], "1": [{"curve": curve}]}}
    left, right = viz.binary_curves_figure(digits, temperature).axes
    assert len(left.get_lines()) == 2 and len(right.get_lines()) == 2
    assert left.get_yscale() == "log"
    np.testing.assert_allclose(left.get_lines()[0].get_ydata(), [1.0, 0.5])


def test_spike_slab_figure_draws_q_and_a_responsibility_in_0_1():
    fig = viz.spike_slab_figure(0.8, 100.0, 1.0)
    q_line, r_line = fig.axes[0].get_lines()
    r = r_line.get_ydata()
    assert ((r >= 0) & (r <= 1)).all() and q_line.get_ydata().max() > 0
    assert fig.axes[0].get_title().startswith("pi1 = 0.80")


def test_plot_trace_draws_a_density_and_a_trace_per_variable():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

        idata = arviz.from_dict(posterior={"x": np.random.default_rng(0).normal(size=(2, 50))})
        axes = viz.plot_trace(idata)
    assert np.asarray(axes).shape == (1, 2)


def test_explorers_have_their_sliders_and_draw():
    calls = []

    def run(rho, n):
        calls.append((rho, n))
        return [(0.0, 1.0)] * (n + 1)

    grid = torch.linspace(-2.0, 2.0, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Agg cannot show a figure
        explorer = viz.blr_explorer(run, grid, viz.gaussian_pdf(grid, 0.0, 1.0))
        explorer.update()
        assert _widget_names(explorer) == {"rho", "iterations"}
        assert calls[-1] == (0.2, 10)  # the sliders' initial values
        y, moments = torch.randn(10, 2), [(torch.ones(1), torch.zeros(1, 2), torch.eye(2)[None])]
        em = viz.em_explorer(y, moments * 3, [-1.0, -0.9, -0.8])
        assert _widget_names(em) == {"iteration"} and em.children[0].max == 2
        assert _widget_names(viz.relaxation_explorer()) == {"lam", "log10_tau"}
        assert _widget_names(viz.spike_slab_explorer()) == {"pi1", "log10_s0", "m"}


# The chapters' explorers (ipywidgets.interactive; building one draws once, no frontend)
# and the static figures of a few settings that the rendered pages show.


@pytest.fixture
def problem():
    return sgd.regression(300, 2, seed=0, device=torch.device("cpu"))


def _wall_run():
    """The BLR on the wall of Fig 1(a), as the BLR chapter runs it."""
    loss, q = landscapes.Wall(), families.Gaussian(1, dtype=F64)
    lam0 = q.natural_from_moments(torch.tensor([-2.0], dtype=F64), torch.tensor([[3.0]], dtype=F64))

    def expected(mu):
        m, cov = q.mean_cov_from_expectation(mu)
        return loss.expected(m, cov[0])

    def run(rho, n_steps):
        path = blr.run(q, lam0, rho=rho, n_steps=n_steps, estimator="exact", expected_loss=expected)
        return [(float(m[0]), float(c[0, 0])) for m, c in map(q.mean_cov, path)]

    grid, density, _ = landscapes.grid_posterior(loss, -4.0, 2.5, n=801)
    return run, grid, density


def test_blr_settings_figure_one_panel_per_rho_two_curves_each():
    run, grid, density = _wall_run()
    fig = viz.blr_settings_figure(run, grid, density, [0.2, 0.5], 20)
    assert [ax.get_title() for ax in fig.axes] == ["rho = 0.2", "rho = 0.5"]
    assert all(len(ax.lines) == 2 for ax in fig.axes)  # q after 19 and after 20 steps
    with pytest.raises(ValueError, match="n_steps"):
        viz.blr_settings_figure(run, grid, density, [0.2], 0)


def test_sharp_flat_figure_best_gaussian_moves_to_the_sharp_well():
    fig = viz.sharp_flat_figure([1.0, 20.0])
    titles = [ax.get_title() for ax in fig.axes]
    # the best Gaussian sits in the flat well (m near 2.4) at scale 1 and in the sharp one
    # (m = -1) at scale 20, as the chapter's grid search and exercise 2 find
    assert "m = 2.4" in titles[0] and "m = -1.00" in titles[1]


def test_sharp_flat_explorer_builds():
    widget = viz.sharp_flat_explorer()
    assert isinstance(widget, ipywidgets.interactive)
    assert [type(c).__name__ for c in widget.children[:-1]] == ["FloatSlider"]


def test_sgd_cloud_figure_full_preconditioner_reaches_the_posterior(problem):
    settings = [(1.0, 10, "none"), (1.0, 10, "full"), (64.0, 10, "none")]
    fig = viz.sgd_cloud_figure(problem.A, problem.C, n_data=300, settings=settings)
    titles = [ax.get_title() for ax in fig.axes]
    kl_none = float(titles[0].split("KL = ")[1])
    kl_full = float(titles[1].split("KL = ")[1])
    # plain SGD's cloud is isotropic, the posterior is not (KL 0.59 here); the full H* matches
    # the posterior up to the O(eps) discretisation; 64 eps* leaves the stable region
    assert kl_none > 0.1 and kl_full < 0.01
    assert "unstable" in titles[2] and len(fig.axes[2].lines) == 1  # the posterior only
    with pytest.raises(ValueError, match="preconditioner"):
        viz.sgd_cloud_figure(problem.A, problem.C, n_data=300, settings=[(1.0, 10, "adam")])


def test_sgd_cloud_figure_kl_matches_the_theory(problem):
    eps = sgd_bayes.optimal_learning_rate(problem.C, batch_size=10, n_data=300)
    cov = sgd_bayes.stationary_covariance(
        problem.A, problem.C, eps=eps, batch_size=10, discrete=True
    )
    zero = torch.zeros(2, dtype=F64)
    kl = float(sgd_bayes.gaussian_kl(zero, cov, zero, problem.posterior))
    fig = viz.sgd_cloud_figure(problem.A, problem.C, n_data=300, settings=[(1.0, 10, "none")])
    assert fig.axes[0].get_title().endswith(f"KL = {kl:.3f}")


def test_sgd_cloud_explorer_builds(problem):
    widget = viz.sgd_cloud_explorer(problem.A, problem.C, n_data=300)
    assert isinstance(widget, ipywidgets.interactive)
    kinds = [type(c).__name__ for c in widget.children[:-1]]
    assert kinds == ["FloatSlider", "IntSlider", "Dropdown"]


def test_precision_memory_figure_noiseless_path_is_the_closed_form():
    # Without noise h_t = (1 - beta)^t h0 + (1 - (1 - beta)^t) hess (Eq 36 unrolled); the
    # drawn path must match it to float64 rounding, for both starts.
    beta, hess, n = 0.05, 0.5, 60
    fig = viz.precision_memory_figure([beta, 0.5], hess=hess, noise=0.0, n_steps=n)
    assert len(fig.axes) == 2 and "beta = 0.05" in fig.axes[0].get_title()
    t = torch.arange(n + 1, dtype=torch.float64)
    for line, h0 in zip(fig.axes[0].lines[0:4:2], (0.1, 1.0), strict=True):
        path = torch.as_tensor(line.get_ydata(), dtype=torch.float64)
        expected = (1 - beta) ** t * h0 + (1 - (1 - beta) ** t) * hess
        torch.testing.assert_close(path, expected, rtol=1e-12, atol=1e-12)


def test_precision_memory_figure_starts_forgotten_with_a_fast_rate():
    # With noise, both starts see the same draws, so their gap is (1 - beta)^t (h0 - h0'):
    # after 800 steps at beta = 10 / 800 it is 0.9 e^-10 < 1e-4 (rounding aside).
    fig = viz.precision_memory_figure([10 / 800], noise=0.3, n_steps=800)
    a, b = (torch.as_tensor(ln.get_ydata()) for ln in fig.axes[0].lines[0:4:2])
    assert abs(float(a[-1] - b[-1])) < 1e-4 and abs(float(a[0] - b[0])) == pytest.approx(0.9)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(betas=[0.0]), "betas"),
        (dict(betas=[0.1], hess=-1.0), "hess"),
        (dict(betas=[0.1], noise=-0.1), "noise"),
        (dict(betas=[0.1], n_steps=0), "n_steps"),
    ],
)
def test_precision_memory_figure_rejects_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        viz.precision_memory_figure(**kwargs)


def test_precision_memory_explorer_builds_without_a_frontend():
    explorer = viz.precision_memory_explorer(n_steps=50)
    assert isinstance(explorer, ipywidgets.interactive)
    names = [w.description for w in explorer.children[:-1]]
    assert names == ["log10_beta", "noise"]


def _expected_curvature(mean: float, sd: float) -> float:
    """E[sigmoid(a) (1 - sigmoid(a))] for a ~ N(mean, sd^2), by scipy's adaptive quadrature."""

    def integrand(t: float) -> float:
        dens = math.exp(-0.5 * ((t - mean) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
        return special.expit(t) * special.expit(-t) * dens

    return integrate.quad(integrand, mean - 12 * sd, mean + 12 * sd, epsabs=1e-13)[0]


def _curvature(line) -> float:
    """The second derivative of a drawn quadratic, from its points (exact up to rounding)."""
    x, y = (torch.as_tensor(v, dtype=torch.float64) for v in line.get_data())
    h = x[1] - x[0]
    return float(((y[2:] - 2 * y[1:-1] + y[:-2]) / h**2).mean())


@pytest.mark.parametrize(("mean", "sd"), [(1.0, 0.1), (1.0, 1.5), (-5.0, 2.0)])
def test_site_figure_draws_the_expected_curvature(mean, sd):
    """The dashed site has curvature 2 beta = -E_q[sigmoid'(a)] (Eq 58 by Price's theorem),
    checked against scipy's quadrature (1e-6: the second difference of the drawn points on
    a grid of step 0.04 loses about 1e-9 to rounding); the dotted Taylor expansion has
    -sigmoid'(mean)."""
    fig = viz.site_figure([(mean, sd)])
    log_factor, site, taylor = fig.axes[0].lines[:3]
    assert_close(_curvature(site), -_expected_curvature(mean, sd), rtol=0, atol=1e-6)
    s_m = special.expit(mean)
    assert_close(_curvature(taylor), -s_m * (1 - s_m), rtol=0, atol=1e-6)
    # the site is shifted to agree with the log factor at the mean (1e-2: grid spacing)
    x, y = site.get_data()
    i = int(abs(torch.as_tensor(x) - mean).argmin())
    assert abs(y[i] - log_factor.get_data()[1][i]) < 1e-2


def test_site_figure_tends_to_taylor_and_flattens_near_the_bend():
    """As sd -> 0 the site is the Taylor expansion (1e-4 at sd 0.01: the expected curvature
    differs by O(sd^2)); at the bend (mean 0) a wide q gives a flatter site, in the tail
    (mean -5) a more curved one, as the chapter says."""
    fig = viz.site_figure([(0.0, 0.01), (0.0, 2.0), (-5.0, 2.0)], label=0)
    narrow, bend, tail = fig.axes
    assert_close(_curvature(narrow.lines[1]), _curvature(narrow.lines[2]), rtol=0, atol=1e-4)
    assert abs(_curvature(bend.lines[1])) < abs(_curvature(bend.lines[2]))
    assert abs(_curvature(tail.lines[1])) > abs(_curvature(tail.lines[2]))


def test_site_figure_rejects_bad_settings():
    with pytest.raises(ValueError, match="sd"):
        viz.site_figure([(0.0, 0.0)])
    with pytest.raises(ValueError, match="label"):
        viz.site_figure([(0.0, 1.0)], label=2)


def test_site_explorer_builds_without_a_frontend():
    """The VI chapter's explorer is an ipywidgets.interactive with its three controls."""
    explorer = viz.site_explorer()
    assert isinstance(explorer, ipywidgets.interactive)
    assert {c.description for c in explorer.children[:-1]} == {"mean", "log10_sd", "label"}
