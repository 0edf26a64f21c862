"""Checks on the book's sources: fast, and nothing is executed.

The table of contents matches the notebooks on disk, notebooks are committed with
their outputs stripped, each starts with the Colab install cell and each asserts
its claim in a hidden cell.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
TOC = ROOT / "_toc.yml"


def _toc_files() -> list[str]:
    """Every `root` and `file` entry of _toc.yml, in order, as written there."""
    toc = yaml.safe_load(TOC.read_text(encoding="utf-8"))
    found: list[str] = [toc["root"]]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "file" in node:
                found.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return found


def _resolve(entry: str) -> list[Path]:
    """The files on disk that a toc entry can mean (.md or .ipynb)."""
    path = ROOT / entry
    if path.suffix in (".md", ".ipynb"):
        return [path] if path.is_file() else []
    return [p for p in (path.with_suffix(".md"), path.with_suffix(".ipynb")) if p.is_file()]


def _book_notebooks() -> list[Path]:
    return sorted(
        p
        for p in BOOK.rglob("*.ipynb")
        if ".ipynb_checkpoints" not in p.parts and "_build" not in p.parts
    )


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _tags(cell: dict) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


NOTEBOOKS = _book_notebooks()
NB_IDS = [str(p.relative_to(ROOT)) for p in NOTEBOOKS]
MARKDOWN = sorted(BOOK.glob("*.md"))


@pytest.mark.parametrize("entry", _toc_files())
def test_toc_entry_exists(entry: str) -> None:
    matches = _resolve(entry)
    assert matches, f"_toc.yml lists {entry!r} but neither {entry}.md nor {entry}.ipynb exists"
    assert len(matches) == 1, f"_toc.yml entry {entry!r} is ambiguous: {matches}"


def test_toc_lists_exactly_the_notebooks_in_book() -> None:
    listed = {m for entry in _toc_files() for m in _resolve(entry) if m.suffix == ".ipynb"}
    on_disk = set(NOTEBOOKS)
    unlisted = sorted(str(p.relative_to(ROOT)) for p in on_disk - listed)
    missing = sorted(str(p.relative_to(ROOT)) for p in listed - on_disk)
    assert not unlisted, f"notebooks in book/ missing from _toc.yml: {unlisted}"
    assert not missing, f"notebooks listed in _toc.yml but not under book/: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NB_IDS)
def test_notebook_outputs_stripped(path: Path) -> None:
    for i, cell in enumerate(_load(path)["cells"]):
        if cell["cell_type"] != "code":
            continue
        assert cell.get("outputs", []) == [], f"code cell {i} has outputs: strip them"
        assert cell.get("execution_count") is None, f"code cell {i} has an execution_count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NB_IDS)
def test_first_code_cell_is_colab_install(path: Path) -> None:
    code = [c for c in _load(path)["cells"] if c["cell_type"] == "code"]
    assert code, "notebook has no code cell"
    first = code[0]
    src = _source(first)
    assert "google.colab" in src, "first code cell must guard the install on google.colab"
    install_lines = [line for line in src.splitlines() if "pip install" in line]
    assert install_lines, "first code cell must pip install blrlib on Colab"
    assert not any("torch" in line for line in install_lines), "never reinstall torch on Colab"
    assert "==" not in src, "no exact pins in the install cell"
    assert "remove-cell" in _tags(first), "the Colab install cell must be tagged remove-cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NB_IDS)
def test_notebook_asserts_its_claim_in_a_hidden_cell(path: Path) -> None:
    hidden_asserts = [
        c
        for c in _load(path)["cells"]
        if c["cell_type"] == "code"
        and {"hide-input", "remove-input"} & set(_tags(c))
        and "assert" in _source(c)
    ]
    assert hidden_asserts, "no code cell tagged hide-input or remove-input contains an assert"


# Words about how the book was made, not about what it derives or measures.
PROCESS_WORDS = re.compile(
    r"\b(issues?|owed|the goal|goals|TODO|FIXME|not yet committed|still to do|"
    r"target we set|we set before)\b",
    flags=re.IGNORECASE,
)


@pytest.mark.parametrize("path", NOTEBOOKS + MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_prose_has_no_process_language(path: Path) -> None:
    cells = (
        [_source(c) for c in _load(path)["cells"] if c["cell_type"] == "markdown"]
        if path.suffix == ".ipynb"
        else [path.read_text(encoding="utf-8")]
    )
    for i, text in enumerate(cells):
        found = PROCESS_WORDS.findall(text)
        assert not found, f"cell {i} speaks of the book's making: {found}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NB_IDS)
def test_code_lines_fit_the_page(path: Path) -> None:
    """The rendered page shows about 85 characters of code; cells keep to 80."""
    for i, cell in enumerate(_load(path)["cells"]):
        if cell["cell_type"] != "code" or "remove-cell" in _tags(cell):
            continue
        long = [line for line in _source(cell).splitlines() if len(line) > 80]
        assert not long, f"code cell {i} has lines over 80 characters: {long}"


def test_references_parse() -> None:
    from pybtex.database import parse_file

    entries = parse_file(BOOK / "references.bib").entries
    assert len(entries) > 10


# Every public module of blrlib (not the experiments) names the chapter section that derives
# it, as a :ref: to a MyST label or a :doc: of a page; render-check (-n -W) fails on a broken
# one only where the docstring is rendered, so all of them are checked here.
PUBLIC_MODULES = sorted(
    p
    for p in (ROOT / "blrlib").rglob("*.py")
    if "experiments" not in p.relative_to(ROOT / "blrlib").parts
    and not (p.name.startswith("_") and p.name != "__init__.py")
)
LABEL = re.compile(r"^\(([\w-]+)\)=\s*$", flags=re.M)
LINK = re.compile(r":(ref|doc):`([^`<>]+)`")


def _labels() -> set[str]:
    found: set[str] = set()
    for path in [*NOTEBOOKS, *MARKDOWN]:
        text = (
            "\n".join(_source(c) for c in _load(path)["cells"] if c["cell_type"] == "markdown")
            if path.suffix == ".ipynb"
            else path.read_text(encoding="utf-8")
        )
        found |= set(LABEL.findall(text))
    return found


@pytest.mark.parametrize("path", PUBLIC_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_docstring_links_its_chapter(path: Path) -> None:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    links = LINK.findall(doc)
    assert links, "the module docstring has no :ref: or :doc: link to the book"
    labels = _labels()
    for role, target in links:
        if role == "ref":
            assert target in labels, f"no ({target})= label in book/"
        else:
            assert target.startswith("/"), f":doc:`{target}` must be absolute (/book/...)"
            assert _resolve(target.lstrip("/")), f":doc:`{target}` names no page"
