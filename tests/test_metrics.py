"""metrics: each score against a hand computation or a reference distribution."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from blrlib import metrics


def test_binary_and_multiclass_layouts_agree():
    p = torch.tensor([0.9, 0.2, 0.6, 0.5])
    y = torch.tensor([1.0, 0.0, 0.0, 1.0])
    two = torch.stack([1 - p, p], -1)
    for score in (metrics.accuracy, metrics.nll, metrics.brier, metrics.ece):
        assert score(p, y) == score(two, y)


def test_values_by_hand():
    p = torch.tensor([0.9, 0.2, 0.6, 0.5])
    y = torch.tensor([1.0, 0.0, 0.0, 1.0])
    # argmax of [0.5, 0.5] is class 0, so the last example counts as wrong
    assert metrics.accuracy(p, y) == 0.5
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.4) + math.log(0.5)) / 4
    assert_close(torch.tensor(metrics.nll(p, y)), torch.tensor(expected))
    # confidences 0.9, 0.8, 0.6, 0.5 fall in bins 9, 8, 6, 5; correct: 1, 1, 0, 0
    assert_close(torch.tensor(metrics.ece(p, y)), torch.tensor((0.1 + 0.2 + 0.6 + 0.5) / 4))


def test_perfectly_calibrated_predictions_have_small_ece():
    """Labels drawn from the predicted probabilities: ECE shrinks like 1/sqrt(N per bin)."""
    p = torch.rand(200_000)
    y = torch.bernoulli(p)
    assert metrics.ece(p, y) < 0.01


def test_gaussian_nll_matches_torch():
    mean, var, y = torch.randn(5), torch.rand(5) + 0.1, torch.randn(5)
    expected = -torch.distributions.Normal(mean, var.sqrt()).log_prob(y).mean()
    assert_close(torch.tensor(metrics.gaussian_nll(mean, var, y)), expected)


def test_bad_input():
    y = torch.tensor([1.0, 0.0])
    with pytest.raises(ValueError, match="probs"):
        metrics.nll(torch.tensor([0.5, 1.5]), y)
    with pytest.raises(ValueError, match="probs"):
        metrics.nll(torch.tensor([0.5, 0.5, 0.5]), y)
    with pytest.raises(ValueError, match="n_bins"):
        metrics.ece(torch.tensor([0.5, 0.5]), y, n_bins=0)
    with pytest.raises(ValueError, match="var"):
        metrics.gaussian_nll(torch.zeros(2), torch.zeros(2), y)


def test_labels_of_shape_n_by_one_give_the_same_scores():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])
    y = torch.tensor([0, 2, 0, 1])
    for score in (metrics.accuracy, metrics.nll, metrics.brier, metrics.ece):
        assert score(probs, y[:, None]) == score(probs, y), score.__name__
        assert score(probs, y.double()) == score(probs, y), score.__name__


@pytest.mark.parametrize(
    ("probs", "y"),
    [
        (torch.tensor([0.9, 0.2]), torch.tensor([0.0, 2.0])),  # label 2 of a binary problem
        (torch.full((2, 3), 1 / 3), torch.tensor([0, 5])),  # class 5 of 3
        (torch.full((2, 3), 1 / 3), torch.tensor([0.5, 1.0])),  # not an index
        (torch.full((2, 3), 1 / 3), torch.zeros(2, 2)),  # not (N,) or (N, 1)
    ],
)
def test_labels_that_are_not_class_indices_are_refused(probs, y):
    for score in (metrics.accuracy, metrics.nll, metrics.brier, metrics.ece):
        with pytest.raises(ValueError, match="y"):
            score(probs, y)
