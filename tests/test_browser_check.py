"""The browser check finds each defect it promises to find, on a small site made for it.

Skipped where Chromium is not installed (``make browser-check`` installs it as root); the
MathJax case also needs the local copy that ``make mathjax`` installs.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MATHJAX = ROOT / "_build" / "mathjax" / "node_modules" / "mathjax"

pytest.importorskip("websocket")
CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

GOOD = """<html><body><p id="top">A page with <a href="defects.html">a link</a> and
<a href="good.html#top">an anchor</a>.</p><pre>short code</pre></body></html>"""

DEFECTS = """<html><body>
<p>raw \\( x \\) left by a renderer</p>
<img src="missing.png">
<a href="nowhere.html">a broken link</a> <a href="good.html#nothing">a broken anchor</a>
<div style="width: 200px"><pre style="white-space: pre; overflow-x: auto">{long}</pre></div>
<script>console.error("boom")</script>
<script>undefinedFunction()</script>
<img src="https://cdn.example.org/x.png">
</body></html>""".format(long="x = 1  # " + "a" * 200)

MATH = """<html><head><script>window.MathJax = {tex: {inlineMath: [["\\\\(", "\\\\)"]]}};</script>
<script defer src="mathjax/es5/tex-mml-chtml.js"></script></head>
<body><p>fine \\(x^2\\) and a double exponent \\(x^1^2\\)</p></body></html>"""


def _load_checker():
    spec = importlib.util.spec_from_file_location("browser_check", ROOT / "tools/browser_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_defect_is_reported_and_a_clean_page_passes(tmp_path: Path) -> None:
    (tmp_path / "good.html").write_text(GOOD)
    (tmp_path / "defects.html").write_text(DEFECTS)
    if MATHJAX.exists():
        (tmp_path / "mathjax").symlink_to(MATHJAX, target_is_directory=True)
        (tmp_path / "math.html").write_text(MATH)
    n_pages, problems = _load_checker().check(tmp_path, CHROMIUM)
    assert n_pages == 3 if MATHJAX.exists() else 2
    assert not [p for p in problems if p.startswith("good.html")], problems
    expected = [
        "raw TeX delimiter",
        "image did not load: missing.png",
        "broken link: /nowhere.html",
        "broken anchor: good.html#nothing",
        "code block overflows",
        "console error: boom",
        "JavaScript exception: ReferenceError",
        "request to another host: https://cdn.example.org/x.png",
    ]
    for text in expected:
        assert any(p.startswith("defects.html") and text in p for p in problems), (text, problems)
    if MATHJAX.exists():
        merrors = [p for p in problems if p.startswith("math.html")]
        assert len(merrors) == 1 and "MathJax error" in merrors[0], problems
