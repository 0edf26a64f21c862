"""Every link of the Table 1 page leads somewhere: the section, the code, the test, the record.

Nothing is executed: the chapter labels are read from the notebooks' markdown, the tests from
their source (ast), and the page is compared with what the registry writes.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
from pathlib import Path

import pytest

from blrlib import experiments, table1

ROOT = Path(__file__).resolve().parents[1]
IDS = [row.name for row in table1.ROWS]


def _chapter_markdown(chapter: str) -> str:
    path = ROOT / "book" / f"{chapter}.ipynb"
    if not path.exists():
        return (ROOT / "book" / f"{chapter}.md").read_text(encoding="utf-8")
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def _import(dotted: str) -> object:
    """The object at a dotted path, as Python resolves ``blrlib.infer.laplace`` (attributes
    first: the package's function shadows its submodule of the same name)."""
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, name in enumerate(parts[1:], start=2):
        if not hasattr(obj, name):
            importlib.import_module(".".join(parts[:i]))
        obj = getattr(obj, name)
    return obj


@pytest.mark.parametrize("row", table1.ROWS, ids=IDS)
def test_section_label_is_in_its_chapter(row: table1.Row) -> None:
    labels = re.findall(r"^\(([\w-]+)\)=\s*$", _chapter_markdown(row.chapter), flags=re.M)
    assert row.section in labels, f"no ({row.section})= label in book/{row.chapter}"


@pytest.mark.parametrize("row", table1.ROWS, ids=IDS)
def test_function_imports_and_is_public(row: table1.Row) -> None:
    obj = _import(row.function)
    assert callable(obj), f"{row.function} is not a function or class"
    parent, name = row.function.rsplit(".", 1)
    assert name in getattr(importlib.import_module(parent), "__all__", ()), (
        f"{name} is not in {parent}.__all__, so the API reference does not document it"
    )


@pytest.mark.parametrize("row", table1.ROWS, ids=IDS)
def test_pinning_test_exists(row: table1.Row) -> None:
    path, _, name = row.test.partition("::")
    function, _, param = name.partition("[")
    source = (ROOT / path).read_text(encoding="utf-8")
    found = [
        n
        for n in ast.walk(ast.parse(source))
        if isinstance(n, ast.FunctionDef) and n.name == function
    ]
    assert found, f"{path} has no test function {function}"
    if param:  # the parameter id is a literal in the test module (a case name or value)
        assert repr(param.rstrip("]")) in source or f'"{param.rstrip("]")}"' in source


@pytest.mark.parametrize("row", [r for r in table1.ROWS if r.experiment], ids=lambda r: r.name)
def test_experiment_is_registered_and_its_metric_exists(row: table1.Row) -> None:
    assert row.experiment in experiments.EXPERIMENTS
    record = experiments.load(row.experiment)
    if record is not None and row.metric is not None:
        assert table1.headline(row)  # raises when the metric is not in the record


def test_rows_are_unique_and_in_known_groups() -> None:
    assert len(set(IDS)) == len(IDS)
    assert {r.group for r in table1.ROWS} == set(table1.GROUPS)
    paper = [r for r in table1.ROWS if r.group != table1.GROUPS[-1]]
    assert len(paper) == 17, "Table 1 of the paper has 17 rows"
    with pytest.raises(ValueError, match="name must be one of"):
        table1.find("Gradient ascent")


def test_page_is_what_the_registry_writes() -> None:
    assert table1.PAGE.read_text(encoding="utf-8") == table1.markdown(), (
        "book/table1.md is stale: run `python -m blrlib.table1`"
    )


def test_headline_without_a_record_is_the_describe_line(tmp_path: Path) -> None:
    row = table1.find("Variational OGN (VOGN)")
    assert table1.headline(row, tmp_path) == experiments.describe(row.experiment, tmp_path)
    assert table1.headline(table1.find("Ridge regression"), tmp_path) == ""
