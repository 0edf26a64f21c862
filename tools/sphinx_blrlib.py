"""A Sphinx extension for blrlib's API reference (book/api/), loaded by _config.yml.

Repairs that keep the docstrings plain text for ``help()`` and still render with ``-n -W``:

- An indented block outside a Google-style section (the 5-line example under a module's
  summary, a formula on its own lines) becomes a literal block, as it reads in the source;
  reStructuredText would otherwise take it for a block quote or a definition list.
- A type hint names the module that defines an object (``blrlib.families.gaussian.Gaussian``)
  while the reference documents each package through its ``__all__``
  (``blrlib.families.Gaussian``); a missing ``blrlib.`` reference is tried in each enclosing
  package, and a short name (``:func:`mc```) against the documented objects that end with it.

And two for the pages themselves: sphinx-thebe's settings script appears once, not twice (a
repeated ``const`` is a JavaScript error), and the theme's default colour mode is written out.
"""

from __future__ import annotations

import re
from typing import Any

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util.nodes import make_refnode

SECTION = re.compile(
    r"^(Args|Arguments|Attributes|Example|Examples|Keyword Args|Methods|Note|Notes|"
    r"Other Parameters|Parameters|Raises|References|Return|Returns|See Also|Warning|"
    r"Warnings|Warns|Yield|Yields):\s*$"
)
LIST_ITEM = re.compile(r"^(\d+\.|[-*+])\s")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def literal_blocks(lines: list[str], *, first_language: str = "text") -> list[str]:
    """Wrap each indented run outside a Google section in a ``code-block`` directive."""
    out: list[str] = []
    in_section, language = False, first_language
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip() and _indent(line) == 0:
            in_section = bool(SECTION.match(line))
        before = out[-1] if out else ""
        starts_run = (
            not in_section
            and line.strip()
            and _indent(line) >= 4
            and (not before.strip() or (_indent(before) == 0 and not LIST_ITEM.match(before)))
        )
        previous = next((x for x in reversed(out) if x.strip()), "")
        if starts_run and not previous.rstrip().endswith("::") and not previous.startswith(".."):
            run = []
            while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) >= 4):
                run.append(lines[i])
                i += 1
            while run and not run[-1].strip():
                run.pop()
                i -= 1
            if before.strip():
                out.append("")
            out += [f".. code-block:: {language}", "", *run, ""]
            language = "text"
            continue
        out.append(line)
        i += 1
    return out


LITERAL = re.compile(r"(``.+?``)")


def escape_bars(lines: list[str]) -> list[str]:
    """``|x|`` is an absolute value, not a substitution: escape bars outside literals."""
    out, in_code = [], False
    for line in lines:
        if line.startswith(".. code-block::"):
            in_code = True
        elif line.strip() and _indent(line) == 0:
            in_code = False
        if not in_code and "|" in line:
            parts = LITERAL.split(line)
            line = "".join(p if i % 2 else p.replace("|", "\\|") for i, p in enumerate(parts))
        out.append(line)
    return out


def _process_docstring(
    app: Sphinx, what: str, name: str, obj: object, options: Any, lines: list[str]
) -> None:
    lines[:] = escape_bars(
        literal_blocks(lines, first_language="python" if what == "module" else "text")
    )


def _public_name(
    app: Sphinx, env: BuildEnvironment, node: pending_xref, contnode: nodes.TextElement
) -> nodes.reference | None:
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py":
        return None
    domain = env.get_domain("py")
    candidates = []
    if target.startswith("blrlib."):
        parts = target.split(".")
        candidates = [".".join([*parts[:k], parts[-1]]) for k in range(len(parts) - 2, 0, -1)]
    module = node.get("py:module") or ""
    if "." not in target and module.startswith("blrlib."):
        parts = module.split(".")  # the enclosing packages of the docstring's module
        candidates = [".".join([*parts[:k], target]) for k in range(len(parts), 0, -1)]
    for candidate in candidates:
        found = domain.resolve_xref(
            env, node.get("refdoc", ""), app.builder, node["reftype"], candidate, node, contnode
        )
        if found is not None:
            return found
    if "." not in target:  # a short name: the one documented object of any type ending in it
        matches = domain.find_obj(env, "", "", target, None, 1)
        if len(matches) == 1:
            name, obj = matches[0]
            return make_refnode(
                app.builder, node.get("refdoc", ""), obj.docname, obj.node_id, contnode, name
            )
    return None


def _page_context(
    app: Sphinx, pagename: str, templatename: str, context: dict, doctree: object
) -> None:
    """Keep one of each script, and write out the theme's default colour mode.

    Sphinx adds a script registered with ``filename=None`` again as ``""`` before writing, so
    sphinx-thebe's and sphinx-togglebutton's inline settings appear twice, and a repeated
    ``const`` is a JavaScript error. An empty colour mode makes the theme log an error.
    """
    scripts = context.get("script_files")
    if isinstance(scripts, list):
        seen, unique = set(), []
        for js in scripts:
            attributes = getattr(js, "attributes", {})
            key = (getattr(js, "filename", js) or "", tuple(sorted(attributes.items())))
            if key not in seen:
                seen.add(key)
                unique.append(js)
        scripts[:] = unique  # in place: the builder's list, which others may still extend
    if not context.get("default_mode"):
        context["default_mode"] = "auto"


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("html-page-context", _page_context)
    # before napoleon (priority 500), which turns the Google sections into fields
    app.connect("autodoc-process-docstring", _process_docstring, priority=400)
    app.connect("missing-reference", _public_name)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
