"""Table 1 of Khan & Rue (2023), row by row, with where the book derives, implements and tests it.

    from blrlib import table1
    row = table1.find("Variational OGN (VOGN)")
    row.function, row.section, row.test          # the code, the derivation, the test
    print(table1.markdown())                     # the book's Table 1 page (book/table1.md)

Each :class:`Row` names the rule's three choices (the candidate family, the estimator of the
natural gradient and the further approximation), the MyST label of the chapter section that
derives it, the dotted path of the blrlib object that implements it, the pytest node id that
pins it, and the full-scale experiment (and the summarised quantity in its record) whose
number the page shows. ``tests/test_table1.py`` checks that every one of these targets exists,
and that ``book/table1.md`` is what :func:`markdown` writes; ``python -m blrlib.table1``
rewrites the page after new records land in ``results/``.

Writes :doc:`/book/table1`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

__all__ = ["GROUPS", "PAGE", "ROWS", "Row", "find", "headline", "main", "markdown"]

PAGE = Path(__file__).resolve().parents[1] / "book" / "table1.md"
"""The generated page; ``tests/test_table1.py`` checks it equals :func:`markdown`."""

GROUPS = (
    "Optimization algorithms",
    "Deep-learning algorithms",
    "Approximate Bayesian inference algorithms",
    "The book's additions",
)
"""The paper's three groups of Table 1, and a fourth for the rules the book adds."""


@dataclass(frozen=True)
class Row:
    """One learning algorithm: its choices in the rule and its links into the book.

    Attributes:
        name: the algorithm, as Table 1 names it.
        group: one of :data:`GROUPS`.
        family: the candidate family Q (Table 1's "posterior approximation").
        estimator: how the natural gradient is estimated.
        approximation: what else is approximated or fixed (learning rate, Hessian, ...).
        paper: where the paper derives it (section or equation numbers).
        section: the MyST label of the book section that derives it.
        chapter: the chapter (``book/CHAPTER``) holding ``section``.
        function: the dotted path of the blrlib object that implements it.
        test: the pytest node id of the test that pins it.
        experiment: the registered full-scale experiment that reports on it, if any.
        metric: the key path (``a / b``) of the summarised quantity of ``experiment`` to show.
        new: marked "(New)" in the paper's Table 1.
    """

    name: str
    group: str
    family: str
    estimator: str
    approximation: str
    paper: str
    section: str
    chapter: str
    function: str
    test: str
    experiment: str | None = None
    metric: str | None = None
    new: bool = False


_OPT, _DEEP, _INF, _BOOK = GROUPS

ROWS: tuple[Row, ...] = (
    # Optimization algorithms
    Row("Gradient descent", _OPT, "Gaussian, fixed covariance", "delta method",
        "none", "Sec 1.3.1", "gnr-gd", "gd_newton_ridge", "blrlib.blr.step",
        "tests/test_blr.py::test_gd_is_torch_sgd"),
    Row("Newton's method", _OPT, "Gaussian", "delta method", r"$\rho = 1$",
        "Sec 1.3.2, App D", "gnr-newton", "gd_newton_ridge", "blrlib.blr.step",
        "tests/test_blr.py::test_newton_is_blr_with_rho_one", "newton_logreg"),
    Row("Multimodal optimization", _OPT, "mixture of Gaussians", "delta method",
        "none", "Sec 3.2", "gnr-mixture", "gd_newton_ridge", "blrlib.families.GaussianMixture",
        "tests/test_blr.py::test_mixture_rule_finds_the_modes", "mixture_modes",
        "summary / all_four", new=True),
    # Deep-learning algorithms
    Row("Stochastic gradient descent", _DEEP, "Gaussian, fixed covariance", "delta method",
        "stochastic gradients", "Sec 4.1", "sgd-bridge", "sgd_bayes",
        "blrlib.sgd_bayes.run_chains",
        "tests/sgd_bayes/test_samplers.py::test_constant_sgd_is_torch_sgd", "sgd_bridge"),
    Row("RMSprop/Adam", _DEEP, "diagonal Gaussian", "delta method",
        "stochastic, Hessian from squared gradients, square root, slow scale vectors",
        "Sec 4.2, Eq 38, App F", "optim-adam", "optim", "blrlib.optim.AdamLike",
        "tests/optim/test_reductions.py::test_eq38_is_torch_adam_and_rmsprop", "optim_digits",
        "summary / adam / accuracy"),
    Row("Dropout", _DEEP, "mixture of Gaussians (spike and slab)", "delta method",
        "stochastic, responsibilities", "Sec 4.3, App G", "dropout-derivation", "dropout",
        "blrlib.optim.Newton",
        "tests/optim/test_dropout.py::test_newton_with_dropout_is_eq42_eq43",
        "dropout_approximations"),
    Row("STE", _DEEP, "Bernoulli", "delta method", "stochastic", "Sec 4.5, Eq 47-48",
        "binary-ste", "binary", "blrlib.optim.STE",
        "tests/optim/test_bayesbinn.py::test_ste_is_the_plain_latent_weight_loop",
        "binary_digits", "metrics / ste / accuracy"),
    Row("Online Gauss-Newton (OGN)", _DEEP, "diagonal Gaussian", "delta method",
        "Gauss-Newton Hessian in Adam, no square root", "Sec 4.4, Eq 44-45", "optim-ogn",
        "optim", "blrlib.optim.OGN", "tests/optim/test_reductions.py::test_step_is_blr_step[ogn]",
        new=True),
    Row("Variational OGN (VOGN)", _DEEP, "diagonal Gaussian", "Monte Carlo",
        "Gauss-Newton Hessian, OGN without the delta method", "Sec 4.4, Eq 46", "optim-von",
        "optim", "blrlib.optim.VOGN",
        "tests/optim/test_reductions.py::test_step_is_blr_step[vogn]", "optim_digits",
        "summary / vogn / accuracy", new=True),
    Row("BayesBiNN", _DEEP, "Bernoulli", "Concrete relaxation",
        "STE without the delta method", "Sec 4.5, Eq 49-52", "binary-bayesbinn", "binary",
        "blrlib.optim.BayesBiNN",
        "tests/optim/test_bayesbinn.py::test_bayesbinn_step_is_blr_step", "binary_digits",
        "metrics / bayesbinn_predictive / accuracy", new=True),
    # Approximate Bayesian inference algorithms
    Row("Conjugate Bayes", _INF, "exponential family", "exact", r"$\rho = 1$", "Sec 5.1",
        "conj-bayes", "conjugate_em", "blrlib.conjugate.posterior",
        "tests/test_conjugate.py::test_rho_one_from_any_start_and_geometric_rate_below_one"),
    Row("Laplace's method", _INF, "Gaussian", "delta method", "Newton's fixed point",
        "Sec 4.4, Eq 44", "optim-ogn", "optim", "blrlib.infer.laplace",
        "tests/infer/test_laplace.py::test_laplace_is_fixed_point_of_blr_newton_step"),
    Row("Expectation maximisation", _INF, "exponential family + Gaussian",
        "delta method for the parameters", r"$\rho = 1$", "Sec 5.2, Eq 53-56", "conj-em",
        "conjugate_em", "blrlib.em.run",
        "tests/test_em.py::test_m_step_is_the_delta_method_stationary_point", "em_digits"),
    Row("Stochastic VI (SVI)", _INF, "exponential family, mean field", "exact",
        r"local $\rho = 1$, global $\rho_t < 1$ on minibatches", "Sec 5.3", "vi-svi", "vi",
        "blrlib.vmp.run_svi", "tests/test_vmp.py::test_svi_full_batch_at_rho_one_is_vmp",
        "vi_svi", "summary / svi_large_minus_vmp_last_pass"),
    Row("VMP", _INF, "exponential family, mean field", "exact", r"$\rho = 1$ on every node",
        "Sec 5.3", "vi-vmp", "vi", "blrlib.vmp.run_vmp",
        "tests/test_vmp.py::test_vmp_matches_sklearn_round_by_round"),
    Row("Non-conjugate VMP", _INF, "exponential family, mean field", "exact per node",
        r"$\rho = 1$ on every node, non-conjugate factors", "Sec 5.3", "vi-ncvmp", "vi",
        "blrlib.ncvmp.run",
        "tests/test_ncvmp.py::test_fixed_point_is_the_mean_field_optimum_and_the_elbo_rises",
        "vi_mean_field"),
    Row("Non-conjugate VI", _INF, "mixture of exponential families", "Monte Carlo", "none",
        "Sec 5.4", "vi-mixture", "vi", "blrlib.families.LearnedGaussianMixture",
        "tests/families/test_family_mixture_weights.py"
        "::test_blr_learns_the_weights_of_a_mixture_target",
        "vi_mixture", "summary / mixture_kl", new=True),
    # The book's additions
    Row("Ridge regression", _BOOK, "Gaussian", "exact (quadratic loss)", r"$\rho = 1$",
        "Sec 1.3.3", "gnr-ridge", "gd_newton_ridge", "blrlib.blr.step",
        "tests/test_blr.py::test_ridge_in_one_step"),
    Row("Non-conjugate VI, Gaussian sites", _BOOK, "Gaussian", "exact (quadrature)",
        "global or site form", "Sec 5.4, Eq 58-60", "vi-ncvi", "vi", "blrlib.ncvi.run",
        "tests/test_ncvi.py::test_global_and_site_forms_give_the_same_iterates", "vi_logistic",
        "summary / blr / test_nll"),
    Row("Variational online Newton (VON)", _BOOK, "diagonal Gaussian", "Monte Carlo",
        "reparameterisation Hessian from one backward pass", "Sec 4.4, Eq 46", "optim-von",
        "optim", "blrlib.optim.VON",
        "tests/optim/test_reductions.py::test_step_is_blr_step[von]", "optim_digits",
        "summary / von / accuracy"),
    Row("Concrete dropout (learned rate)", _BOOK, "mixture of Gaussians (spike and slab)",
        "delta method", "Concrete relaxation of the masks", "end of Sec 4.3",
        "dropout-learn-rate", "dropout", "blrlib.optim.ConcreteDropout",
        "tests/optim/test_concrete_dropout.py::test_probe_gradient_is_unbiased",
        "dropout_learn_rate", "summary / largest / learned_nll"),
    Row("Constant SGD as a sampler", _BOOK, "Gaussian (stationary distribution)",
        "stochastic gradients", "Ornstein-Uhlenbeck limit", "Mandt et al. (2017)", "sgd-ou",
        "sgd_bayes", "blrlib.sgd_bayes.stationary_covariance",
        "tests/sgd_bayes/test_stationary.py::test_discrete_covariance_matches_simulation",
        "sgd_stationary"),
    Row("KL-optimal constant learning rate", _BOOK, "Gaussian (stationary distribution)",
        "stochastic gradients", "Ornstein-Uhlenbeck limit", "Mandt et al. (2017)",
        "sgd-optimal-lr", "sgd_bayes", "blrlib.sgd_bayes.optimal_learning_rate",
        "tests/sgd_bayes/test_optimal.py::test_optimal_learning_rate_minimises_continuous_kl",
        "sgd_stationary"),
    Row("SGLD, SGFS and momentum at a finite step", _BOOK, "Gaussian (stationary)",
        "stochastic gradients plus injected noise", "finite learning rate",
        "Mandt et al. (2017)", "sgd-samplers", "sgd_bayes", "blrlib.sgd_bayes.run_chains",
        "tests/sgd_bayes/test_samplers.py::test_stationary_covariance_of_each_sampler",
        "sgd_samplers"),
    Row("Variational EM with constant SGD", _BOOK, "Gaussian (stationary)",
        "stochastic gradients", "prior precision by evidence", "Mandt et al. (2017)",
        "sgd-vem", "sgd_bayes", "blrlib.sgd_bayes.vem_prior_precision",
        "tests/sgd_bayes/test_vem.py::test_variational_em_finds_the_evidence_maximiser",
        "sgd_vem"),
    Row("MAP with weight decay", _BOOK, "point mass", "gradient", "Gaussian prior",
        "lecture", "primer-map", "primer", "blrlib.infer.fit_map",
        "tests/infer/test_map.py::test_weight_decay_is_gaussian_prior"),
    Row("Laplace after training", _BOOK, "Gaussian", "Hessian or GGN at the MAP",
        "full, diagonal or last layer", "lecture", "primer-laplace", "primer",
        "blrlib.infer.laplace", "tests/infer/test_laplace.py::test_cov_is_inverse_hessian",
        "primer_logreg2d"),
    Row("Hamiltonian Monte Carlo", _BOOK, "none (samples)", "exact gradients",
        "finite chains", "lecture", "primer-hmc", "primer", "blrlib.infer.hmc",
        "tests/infer/test_mcmc.py::test_hmc_matches_quadrature_on_logistic_regression",
        "primer_logreg2d"),
    Row("Reparameterised VI", _BOOK, "Gaussian (full or diagonal)",
        "reparameterisation gradient", "Monte Carlo ELBO", "lecture", "primer-vi", "primer",
        "blrlib.infer.fit_vi", "tests/infer/test_vi.py::test_full_vi_recovers_exact_posterior",
        "primer_logreg2d"),
    Row("Probit predictive", _BOOK, "Gaussian", "closed form",
        r"$\sigma(m / \sqrt{1 + \pi s^2 / 8})$", "lecture", "primer-probit", "primer",
        "blrlib.infer.probit", "tests/infer/test_predictive.py::test_probit_vs_monte_carlo"),
    Row("MC dropout", _BOOK, "mixture of Gaussians (spike and slab)", "Monte Carlo",
        "predictive from dropout masks", "lecture, Sec 4.3", "dropout-uq", "dropout",
        "blrlib.infer.mc_dropout_predict",
        "tests/infer/test_dropout.py::test_mc_moments_converge_to_the_average_over_masks",
        "dropout_regression", "summary / mc_dropout / nll"),
)  # fmt: skip
"""Every row of Table 1 of Khan & Rue (2023), in its order, then the book's additions."""


def find(name: str) -> Row:
    """The row called ``name``.

    Raises:
        ValueError: no row has that name.
    """
    for row in ROWS:
        if row.name == name:
            return row
    raise ValueError(f"name must be one of {[r.name for r in ROWS]}; got {name!r}")


def headline(row: Row, results_dir: Path | str | None = None) -> str:
    """The full-scale number of ``row``, or the line saying how to compute it.

    With a committed record, the ``metric`` summary of ``row.experiment`` as mean ± sd with
    its seeds and scale; without one, :func:`blrlib.experiments.describe`'s line; an empty
    string when the row has no experiment.
    """
    from blrlib import experiments
    from blrlib.experiments.report import summaries

    if row.experiment is None:
        return ""
    record = experiments.load(row.experiment, results_dir)
    if record is None or row.metric is None:
        return experiments.describe(row.experiment, results_dir)
    found = dict(summaries(record["result"]))
    if row.metric not in found:
        raise ValueError(f"metric: {row.metric!r} is not in results/{row.experiment}.json")
    s, scale = found[row.metric], record["manifest"]["scale"]
    return (
        f"{row.experiment}: {row.metric} = {s['mean']:.4g} ± {s['sd']:.2g} "
        f"({s['n']} seeds, {scale} scale)"
    )


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|")


def _api(path: str) -> str:
    """A link to the API reference that shows the object's own name (the column is narrow)."""
    return f"{{py:obj}}`~{path}`"


_HEADER = """\
# Table 1: every rule, where it is derived, implemented and tested

Table 1 of {cite}`khan2023blr` lists the learning algorithms that the Bayesian learning rule \
gives for a choice of candidate family, of natural-gradient estimator and of further \
approximations.
Each row below names where the paper derives it, links there to the section of this book \
that derives it, and to the blrlib object that implements it, documented in the \
{doc}`API reference <api/index>`.
The last table names the test that pins each derivation and the full-scale number of the \
experiment that measures it.
Rows the paper marks as new say (New); the last group holds the rules the book adds.
This page is generated from `blrlib.table1.ROWS` by `python -m blrlib.table1`, and \
`tests/test_table1.py` checks that every link target exists.
"""


def markdown(results_dir: Path | str | None = None) -> str:
    """The book's Table 1 page, as MyST Markdown: one table of choices per group, then tests."""
    out = [_HEADER]
    for group in GROUPS:
        out += [
            f"## {group}",
            "",
            "| Algorithm | Candidate $q$ | Natural gradient; approximations | Derived in "
            "| blrlib |",
            "|---|---|---|---|---|",
        ]
        for r in (r for r in ROWS if r.group == group):
            name = r.name + (" (New)" if r.new else "")
            choices = r.estimator + ("" if r.approximation == "none" else f"; {r.approximation}")
            out.append(
                f"| {_cell(name)} | {_cell(r.family)} | {_cell(choices)} | "
                f"{{ref}}`{r.paper} <{r.section}>` | {_api(r.function)} |"
            )
        out.append("")
    out += ["## Tests and full-scale numbers", "",
            "| Algorithm | Test | Full scale |", "|---|---|---|"]  # fmt: skip
    for r in ROWS:
        out.append(f"| {_cell(r.name)} | `{r.test}` | {_cell(headline(r, results_dir))} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Write (or with ``--check``, compare) ``book/table1.md``."""
    parser = argparse.ArgumentParser(prog="python -m blrlib.table1", description=main.__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the page is stale")
    args = parser.parse_args(argv)
    text = markdown()
    if args.check:
        if PAGE.read_text() != text:
            raise SystemExit(f"{PAGE} is stale; run `python -m blrlib.table1`")
        return
    PAGE.write_text(text)


if __name__ == "__main__":
    main()
