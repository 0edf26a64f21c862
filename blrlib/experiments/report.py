"""The results page: every summarised number of every committed record, in one table.

    from blrlib.experiments import report
    rows = report.rows()            # one row per (experiment, quantity) with mean and sd
    print(report.markdown(rows))    # the table of the book's results page
    print(report.headline("sgd_vem"))  # a chapter's full-scale lines for one record

A quantity is any ``{"mean", "sd", "n"}`` summary (what ``protocol.summarise`` returns) inside
a record's result; its name is the path of keys that leads to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from blrlib.experiments._registry import (
    EXPERIMENTS,
    RESULTS_DIR,
    describe,
    is_stale,
    load,
    source_file,
)

__all__ = [
    "CHAPTERS", "ROOT_BOOK", "chapter", "headline", "markdown", "numbers", "rows", "summaries",
]  # fmt: skip

ROOT_BOOK = RESULTS_DIR.parent / "book"

CHAPTERS = {
    "primer": "primer",
    "primer_nets": "primer",
    "minima": "gd_newton_ridge",
    "optimisers": "gd_newton_ridge",
    "sgd": "sgd_bayes",
    "sgd_posterior": "sgd_bayes",
    "sgd_samplers": "sgd_bayes",
    "deep": "optim",
    "deep_toys": "optim",
    "optim_mnist": "optim",
    "dropout": "dropout",
    "dropout_uq": "dropout",
    "binary": "binary",
    "binary_enumeration": "binary",
    "binary_mnist": "binary",
    "conjugate_em": "conjugate_em",
    "vi": "vi",
    "vi_mixture": "vi",
}
"""The chapter (``book/NAME.ipynb``) that shows the experiments of each module."""


def chapter(name: str) -> str:
    """The chapter that shows experiment ``name``.

    Raises:
        ValueError: unknown ``name``, or a module no chapter shows.
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"name must be one of {sorted(EXPERIMENTS)}; got {name!r}")
    module = source_file(name).stem
    if module not in CHAPTERS:
        raise ValueError(f"name: no chapter shows the experiments of module {module!r}")
    return CHAPTERS[module]


def summaries(tree: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, dict[str, Any]]]:
    """Every ``{"mean", "sd", "n"}`` summary in nested dicts, with its key path."""
    return [(path, value) for path, value in numbers(tree, prefix) if isinstance(value, dict)]


def numbers(tree: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """Every summary and every number outside one, with its key path (lists are left out).

    ``seed`` and ``seeds`` entries are not numbers of the result; a summary is one entry.
    """
    if not isinstance(tree, dict):
        return []
    if {"mean", "sd", "n"} <= set(tree):
        return [(" / ".join(prefix), tree)]
    found: list[tuple[str, Any]] = []
    for key, value in tree.items():
        path = (*prefix, str(key))
        if isinstance(value, dict):
            found += numbers(value, path)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if key not in ("seed", "seeds"):
                found.append((" / ".join(path), value))
    return found


def headline(
    name: str, results_dir: Path | str | None = None, *, like: dict[str, Any] | None = None
) -> str:
    """The committed record of ``name`` as text: :func:`describe`'s line, then its numbers.

    Summaries print as mean ± sd (n = the number of seeds, or of whatever they average over),
    other numbers as they are. Without a record, only the line that says how to make one.

    Args:
        name: the experiment.
        results_dir: where the records are (``results/`` by default).
        like: the chapter's ci-scale run; the record must have its keys (:func:`load`).
    """
    lines = [describe(name, results_dir)]
    record = load(name, results_dir, like=like)
    for path, value in [] if record is None else numbers(record["result"]):
        if isinstance(value, dict):
            lines.append(f"  {path}: {value['mean']:.4g} ± {value['sd']:.2g} (n = {value['n']})")
        else:
            lines.append(f"  {path}: {value:.4g}")
    return "\n".join(lines)


def rows(results_dir: Path | str | None = None) -> list[dict[str, Any]]:
    """One row per summarised quantity of every committed record, experiments in name order."""
    out = []
    for name in sorted(EXPERIMENTS):
        record = load(name, results_dir)
        if record is None:
            continue
        m, stale = record["manifest"], is_stale(name, results_dir)
        for quantity, s in summaries(record["result"]):
            out.append({
                "experiment": name, "chapter": chapter(name), "quantity": quantity,
                "mean": s["mean"], "sd": s["sd"], "n": s["n"], "scale": m["scale"],
                "device": m["device"], "wall_time_s": m["wall_time_s"],
                "commit": m["git_commit"][:7], "stale": stale,
            })  # fmt: skip
    return out


def markdown(table: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table, each experiment linked to its chapter's page.

    A record whose experiment's code changed after it was made is marked "(stale)".
    """
    lines = [
        "| experiment | quantity | mean ± sd | seeds | scale | minutes | commit |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table:
        lines.append(
            f"| [{r['experiment']}]({r['chapter']}.html) | {r['quantity']} | "
            f"{r['mean']:.4g} ± {r['sd']:.2g} | {r['n']} | {r['scale']} | "
            f"{r['wall_time_s'] / 60:.1f} | {r['commit']}{' (stale)' if r['stale'] else ''} |"
        )
    return "\n".join(lines)
