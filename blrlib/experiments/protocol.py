"""The evaluation protocol of every experiment that compares methods.

    from blrlib.experiments import protocol
    tr, va, te = protocol.split(X, y, test_fraction=0.25, val_fraction=0.2, seed=0)
    best = protocol.tune(lambda hp: val_nll(fit(*tr, **hp), *va), {"lr": [1e-3, 1e-2, 1e-1]})
    stats = protocol.summarise([score(s) for s in protocol.seeds("full", base=0)])

The protocol, in four rules:

1. **A validation split carved from the training data** (:func:`split`,
   :func:`train_val_split`): seeded, and stratified by label for classification, so that
   every class appears in every part.
2. **Equal tuning budgets**: every tuned hyperparameter comes from a grid declared in the
   experiment's code, scored on the validation split (:func:`tune`); methods compared with
   each other get grids of the same size (:func:`tune_all` refuses unequal ones).
3. **The test split is touched once**: the model that scored best on validation is scored
   on test, at the end; nothing is chosen by its test score.
4. **Several seeds** (:func:`seeds`: 1-2 at ci scale, at least 5 at full scale), reported as
   mean and standard deviation (:func:`summarise`); a claim that one method beats another
   is asserted on the mean paired difference over seeds with a margin of its standard
   error (:func:`paired_difference`).

Sizes per scale are declared in one place with :func:`by_scale`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Generic, TypeVar

import torch
from torch import Tensor
from tqdm.auto import tqdm

from blrlib import _checks

__all__ = [
    "Scale",
    "Tuned",
    "by_scale",
    "grid_points",
    "paired_difference",
    "progress",
    "seeds",
    "split",
    "summarise",
    "summarise_runs",
    "train_val_split",
    "tune",
    "tune_all",
]

T = TypeVar("T")
Grid = Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]


class Scale(str, Enum):
    """The three sizes of every experiment, one code path.

    ``ci``: seconds on a CPU, run live in the chapters and by nbval. ``full``: a 2-core CPU,
    at most about 20 minutes per experiment, at least 5 seeds, the largest data that ships
    offline. ``gpu``: larger models and data when a GPU is available.
    """

    CI = "ci"
    FULL = "full"
    GPU = "gpu"


def as_scale(scale: Scale | str) -> Scale:
    """``scale`` as a :class:`Scale`.

    Raises:
        ValueError: ``scale`` is not one of ``"ci"``, ``"full"``, ``"gpu"``.
    """
    try:
        return Scale(scale)
    except ValueError:
        allowed = ", ".join(repr(s.value) for s in Scale)
        raise ValueError(f"scale must be one of {allowed}; got {scale!r}") from None


def by_scale(scale: Scale | str, *, ci: T, full: T, gpu: T | None = None) -> T:
    """The value declared for ``scale``: an experiment's sizes per scale in one place.

    ``gpu`` defaults to ``full``.

    Raises:
        ValueError: unknown ``scale``.
    """
    scale = as_scale(scale)
    if scale is Scale.CI:
        return ci
    if scale is Scale.GPU and gpu is not None:
        return gpu
    return full


def seeds(
    scale: Scale | str,
    *,
    base: int = 0,
    n_seeds: int | None = None,
    ci: int = 1,
    full: int = 5,
    gpu: int | None = None,
) -> list[int]:
    """The seeds ``base, base + 1, ...`` an experiment runs at ``scale``.

    Args:
        scale: ``"ci"``, ``"full"`` or ``"gpu"``.
        base: the first seed.
        n_seeds: overrides the per-scale count when given.
        ci, full, gpu: the count at each scale (``gpu`` defaults to ``full``); full scale
            runs at least 5 seeds.

    Raises:
        ValueError: a count below 1, a ``full`` count below 5, or an unknown ``scale``.
        TypeError: a count that is not an int.
    """
    _checks.count(ci, "ci")
    _checks.count(full, "full", minimum=5)
    if gpu is not None:
        _checks.count(gpu, "gpu", minimum=5)
    n = by_scale(scale, ci=ci, full=full, gpu=gpu)
    if n_seeds is not None:
        n = _checks.count(n_seeds, "n_seeds")
    return [base + i for i in range(n)]


def progress(items: Sequence[T], scale: Scale | str, desc: str) -> Sequence[T] | Any:
    """``items`` with a tqdm progress bar above ci scale (a chapter's ci run prints none)."""
    if as_scale(scale) is Scale.CI:
        return items
    return tqdm(items, desc=desc, leave=False)


# ------------------------------------------------------------------------------ splits


def _is_labels(y: Tensor) -> bool:
    """Class labels: an integer tensor, or a float tensor of 0s and 1s (Bernoulli targets)."""
    if not y.is_floating_point():
        return True
    return bool(((y == 0) | (y == 1)).all())


def _check_fraction(value: float, name: str) -> float:
    value = _checks.positive_float(value, name)
    if value >= 1:
        raise ValueError(f"{name} must lie in (0, 1); got {value!r}")
    return value


def _carve(
    y: Tensor, fraction: float, name: str, gen: torch.Generator, stratify: bool
) -> tuple[Tensor, Tensor]:
    """Indices (kept, carved): ``fraction`` of the rows, per class when ``stratify``."""
    n = len(y)
    groups = [torch.arange(n)]
    if stratify:
        labels = y.reshape(n, -1)[:, 0].cpu()
        groups = [torch.nonzero(labels == c).flatten() for c in labels.unique()]
    kept, carved = [], []
    for group in groups:
        perm = group[torch.randperm(len(group), generator=gen)]
        k = round(fraction * len(group))
        if k == 0 or k == len(group):
            what = "a class" if stratify else "a part"
            raise ValueError(
                f"{name}={fraction} leaves {what} empty ({len(group)} rows, {k} carved); "
                "choose a fraction that keeps every class in every part"
            )
        carved.append(perm[:k])
        kept.append(perm[k:])
    return torch.cat(kept).sort().values, torch.cat(carved).sort().values


def train_val_split(
    X: Tensor,
    y: Tensor,
    *,
    val_fraction: float = 0.2,
    seed: int,
    stratify: bool | None = None,
) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """Carve a validation split from training data: ``((X_train, y_train), (X_val, y_val))``.

    Args:
        X: inputs, shape (N, ...).
        y: targets, shape (N,) or (N, ...).
        val_fraction: the fraction of rows (of each class, when stratified) held out.
        seed: seeds the permutation.
        stratify: split each class separately; by default, when ``y`` holds class labels
            (an integer tensor, or floats that are all 0 or 1).

    Raises:
        ValueError: ``X`` and ``y`` of different lengths, a fraction outside (0, 1), or one
            that leaves a class (or a part) empty.
    """
    val_fraction = _check_fraction(val_fraction, "val_fraction")
    if len(X) != len(y):
        raise ValueError(f"X and y must have the same length; got {len(X)} and {len(y)}")
    stratify = _is_labels(y) if stratify is None else stratify
    gen = torch.Generator().manual_seed(seed)
    train, val = _carve(y, val_fraction, "val_fraction", gen, stratify)
    dev = X.device
    return (X[train.to(dev)], y[train.to(dev)]), (X[val.to(dev)], y[val.to(dev)])


def split(
    X: Tensor,
    y: Tensor,
    *,
    test_fraction: float,
    val_fraction: float = 0.2,
    seed: int,
    stratify: bool | None = None,
) -> tuple[tuple[Tensor, Tensor], ...]:
    """Train, validation and test parts: ``(train, val, test)``, each ``(X, y)``.

    The test part (``test_fraction`` of the rows) is carved first; the validation part is
    ``val_fraction`` of what remains, so it comes from the training data.

    Raises:
        ValueError: as :func:`train_val_split`, naming ``test_fraction`` or ``val_fraction``.
    """
    test_fraction = _check_fraction(test_fraction, "test_fraction")
    if len(X) != len(y):
        raise ValueError(f"X and y must have the same length; got {len(X)} and {len(y)}")
    stratify = _is_labels(y) if stratify is None else stratify
    gen = torch.Generator().manual_seed(seed)
    rest, test = _carve(y, test_fraction, "test_fraction", gen, stratify)
    dev = X.device
    train, val = train_val_split(
        X[rest.to(dev)], y[rest.to(dev)], val_fraction=val_fraction, seed=seed + 1,
        stratify=stratify,
    )  # fmt: skip
    return train, val, (X[test.to(dev)], y[test.to(dev)])


# ------------------------------------------------------------------------------ tuning


def grid_points(grid: Grid) -> list[dict[str, Any]]:
    """The settings of a grid: the Cartesian product of a dict of lists, or a list of dicts.

    Raises:
        ValueError: an empty grid or an axis with no values.
        TypeError: ``grid`` is neither a mapping nor a sequence of mappings.
    """
    if isinstance(grid, Mapping):
        if not grid:
            raise ValueError("grid must name at least one hyperparameter")
        for key, values in grid.items():
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
                raise TypeError(f"grid[{key!r}] must be a list of values; got {values!r}")
            if len(values) == 0:
                raise ValueError(f"grid[{key!r}] is empty")
        keys = list(grid)
        points = [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*grid.values())]
    elif isinstance(grid, Sequence) and all(isinstance(p, Mapping) for p in grid):
        points = [dict(p) for p in grid]
    else:
        raise TypeError(f"grid must be a dict of lists or a list of dicts; got {grid!r}")
    if not points:
        raise ValueError("grid must hold at least one setting")
    return points


@dataclass
class Tuned(Generic[T]):
    """What :func:`tune` chose: the best setting, its validation score and what it returned.

    ``table`` lists every setting tried with its score (lower is better; a non-finite score,
    a diverged run, counts as worst).
    """

    best: dict[str, Any]
    score: float
    payload: T | None
    table: list[tuple[dict[str, Any], float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary (without the payload)."""
        return {
            "best": self.best,
            "score": self.score,
            "grid": [{"setting": s, "score": v} for s, v in self.table],
        }


def tune(objective: Callable[[dict[str, Any]], Any], grid: Grid) -> Tuned[Any]:
    """Try every setting of ``grid`` and keep the one with the lowest validation score.

    Args:
        objective: ``setting -> score`` or ``setting -> (score, payload)``: trains with the
            setting and scores it on the validation split (lower is better, e.g. the
            validation NLL). The payload (a trained model, say) of the best setting is
            kept, so that it can be scored on test without training again.
        grid: a dict of lists (their Cartesian product) or a list of dicts.

    Raises:
        ValueError: every setting gave a non-finite score.
    """
    table: list[tuple[dict[str, Any], float]] = []
    best: tuple[float, dict[str, Any], Any] | None = None
    for setting in grid_points(grid):
        out = objective(dict(setting))
        score, payload = out if isinstance(out, tuple) else (out, None)
        score = float(score)
        table.append((setting, score))
        if math.isfinite(score) and (best is None or score < best[0]):
            best = (score, setting, payload)
    if best is None:
        raise ValueError(f"every setting of the grid gave a non-finite score: {table}")
    return Tuned(best=best[1], score=best[0], payload=best[2], table=table)


def tune_all(
    methods: Mapping[str, tuple[Callable[[dict[str, Any]], Any], Grid]],
) -> dict[str, Tuned[Any]]:
    """:func:`tune` each method on its own grid, after checking the budgets are equal.

    Args:
        methods: ``name -> (objective, grid)``.

    Raises:
        ValueError: the grids do not all have the same number of settings.
    """
    sizes = {name: len(grid_points(grid)) for name, (_, grid) in methods.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"every method must get a grid of the same size; got {sizes}")
    return {name: tune(objective, grid) for name, (objective, grid) in methods.items()}


# ----------------------------------------------------------------------------- summaries


def summarise(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (0 for one value), count and the values themselves.

    Raises:
        ValueError: no values.
    """
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("values must hold at least one number")
    n = len(vals)
    mean = sum(vals) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "sd": sd, "n": n, "values": vals}


def summarise_runs(runs: Sequence[Mapping[str, float]]) -> dict[str, dict[str, Any]]:
    """:func:`summarise` each metric over runs (one dict of metrics per seed).

    Raises:
        ValueError: no runs, or runs that report different metrics.
    """
    if not runs:
        raise ValueError("runs must hold at least one run")
    keys = set(runs[0])
    if any(set(r) != keys for r in runs):
        raise ValueError("every run must report the same metrics")
    return {k: summarise([r[k] for r in runs]) for k in runs[0]}


def paired_difference(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Mean, standard deviation and standard error of ``a - b`` paired by seed.

    A claim "a is lower than b" holds with a margin when ``mean + k * se < 0`` (the chapters
    use k = 2). With one seed the standard error is 0 and the claim rests on that run alone.

    Raises:
        ValueError: ``a`` and ``b`` of different lengths or empty.
    """
    if len(a) != len(b):
        raise ValueError(f"a and b must pair seed by seed; got {len(a)} and {len(b)} values")
    stats = summarise([x - y for x, y in zip(a, b, strict=True)])
    return {"mean": stats["mean"], "sd": stats["sd"], "se": stats["sd"] / math.sqrt(stats["n"]),
            "n": stats["n"]}  # fmt: skip
