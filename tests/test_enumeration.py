"""blrlib.enumeration: the table of all sign vectors, the exact posterior and Bayes objective."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from blrlib import enumeration
from blrlib.families import SignBernoulli


def test_sign_vectors_are_all_distinct_and_binary():
    thetas = enumeration.sign_vectors(5)
    assert thetas.shape == (32, 5)
    assert torch.unique(thetas, dim=0).shape[0] == 32
    assert_close(thetas.abs(), torch.ones_like(thetas))
    with pytest.raises(ValueError, match="dim"):
        enumeration.sign_vectors(21)


def test_expected_loss_and_objective_are_exact():
    """E_q[loss] against a weighted sum with SignBernoulli.log_prob; at the exact posterior the
    Bayes objective's lower bound -log Z is met only by the posterior, and a product q is above."""
    thetas = enumeration.sign_vectors(4)
    losses = torch.randn(16).exp()
    lam = torch.randn(4)
    q = SignBernoulli(4)
    weights = q.log_prob((lam,), thetas).exp()
    assert_close(enumeration.expected_loss(torch.tanh(lam), thetas, losses), weights @ losses)
    objective = enumeration.bayes_objective(lam, thetas, losses)
    assert_close(objective, weights @ losses - q.entropy((lam,)))
    assert objective > -torch.logsumexp(-losses, 0)
    post = enumeration.posterior(losses)
    assert_close(post.sum(), torch.tensor(1.0))
    assert_close(enumeration.marginals(thetas, weights), q.probs((lam,)))


def test_batched_objective_is_the_rowwise_one():
    """(S, P) lam with (S, K) losses: each row's E_q[loss], H(q) and Bayes objective equal the
    single-problem values (and H equals SignBernoulli.entropy)."""
    thetas = enumeration.sign_vectors(3, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    lam = torch.randn(4, 3, generator=g, dtype=torch.float64)
    losses = torch.randn(4, 8, generator=g, dtype=torch.float64).exp()
    q = SignBernoulli(3, dtype=torch.float64)
    batched = enumeration.bayes_objective(lam, thetas, losses)
    assert batched.shape == (4,)
    for i in range(4):
        assert_close(enumeration.entropy(lam)[i], q.entropy((lam[i],)))
        assert_close(batched[i], enumeration.bayes_objective(lam[i], thetas, losses[i]))
        weights = q.log_prob((lam[i],), thetas).exp()
        assert_close(enumeration.expected_loss(torch.tanh(lam), thetas, losses)[i],
                     weights @ losses[i])  # fmt: skip
