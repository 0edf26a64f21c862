"""The conjugate_em chapter's experiments at ci scale (Sec 5.1-5.2)."""

from __future__ import annotations

import math

from blrlib import experiments


def test_ssm_counts_are_cubic_and_linear_and_the_marginals_agree() -> None:
    out = experiments.run("ssm_timing", scale="ci", device="cpu")["result"]
    (t0, t1), (d0, d1), (k0, k1) = out["flops_T"], out["dense_flops"], out["kalman_flops"]
    assert 2.9 < math.log(d1 / d0) / math.log(t1 / t0) < 3.1
    assert 0.95 < math.log(k1 / k0) / math.log(t1 / t0) < 1.05
    assert max(out["max_abs_diff"]) < 1e-10


def test_em_variants_online_statistics_vs_theta_over_two_seeds() -> None:
    out = experiments.run("em_variants", scale="ci", device="cpu", n_seeds=2)["result"]
    assert out["seeds"] == [0, 1]
    summary = out["summary"]
    assert summary["online_gap_last"]["n"] == 2
    # averaging the statistics keeps improving; averaging theta stalls
    assert max(summary["online_gap_last"]["values"]) < 1e-4
    assert min(summary["online_theta_gap_last"]["values"]) > 1e-2
    for ratio, predicted in zip(
        out["precision_ratio"], out["predicted_ratio"], strict=True
    ):  # the excess precision of averaged minibatch M-steps, within a factor 2 of theory
        assert 0.5 < (ratio - 1) / (predicted - 1) < 2
    # parallel EM repeats each EM iterate
    for b, p in zip(out["loglik"]["batch"], out["loglik"]["parallel"], strict=True):
        assert all(abs(p[2 * t] - b[t]) < 1e-12 for t in range(len(b) // 2))


def test_em_digits_improves_and_clusters() -> None:
    out = experiments.run("em_digits", scale="ci", device="cpu")["result"]
    assert out["loglik"][-1] > out["loglik"][0] + 10
    assert out["purity"] > 0.6
