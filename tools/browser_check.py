"""Open every page of the built book in headless Chromium and fail on what a reader would see.

    python tools/browser_check.py _build/render-check/_build/html

The pages are served from 127.0.0.1 and every other host name is unresolvable, so a page that
needs the network (MathJax from a CDN, a web font) fails here as it would offline. On each page,
after MathJax has typeset, the check fails on:

- a MathJax error (``mjx-merror``) or a raw ``\\(`` / ``\\[`` left in the visible text;
- an image that did not load (``naturalWidth`` 0);
- a link to a file of the book that does not exist, or to an anchor the page lacks;
- a JavaScript exception, a console error, a failed resource, or a request to another host;
- a code block wider than its box (horizontal overflow) or, when hidden, one that does not wrap.

Chromium is driven over the Chrome DevTools Protocol with ``websocket-client``.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import websocket

SKIP_DIRS = {"_static", "_sources", "_images", "_downloads"}
PAGE_TIMEOUT_S = 30.0
REDIRECT = re.compile(r'http-equiv="refresh" content="\d+;\s*url=([^"#]+)', re.IGNORECASE)

# Runs in the page once it has loaded: waits for MathJax and the images, then reports.
CHECK_JS = r"""
(async () => {
  const within = (p, ms) => Promise.race([p, new Promise(r => setTimeout(r, ms))]);
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await within(MathJax.startup.promise, 15000);
  }
  const imgs = [...document.images];
  imgs.forEach(i => { i.loading = "eager"; });
  await within(Promise.all(imgs.map(i => i.decode().catch(() => null))), 10000);
  const skip = new Set(["SCRIPT", "STYLE", "PRE", "CODE", "TEXTAREA", "NOSCRIPT",
                        "MJX-CONTAINER", "MJX-ASSISTIVE-MML"]);
  const raw = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    let hidden = false;
    for (let e = n.parentElement; e; e = e.parentElement) {
      if (skip.has(e.tagName)) { hidden = true; break; }
    }
    if (!hidden && /\\[(\[]/.test(n.textContent)) raw.push(n.textContent.trim().slice(0, 80));
  }
  const overflow = [];
  for (const pre of document.querySelectorAll("pre")) {
    const text = pre.textContent.trim().split("\n")[0].slice(0, 60);
    if (pre.clientWidth > 0) {
      if (pre.scrollWidth > pre.clientWidth + 1) {
        overflow.push(`${text} (${pre.scrollWidth} > ${pre.clientWidth} px)`);
      }
    } else if (pre.closest("div.cell_input")) {
      const ws = getComputedStyle(pre).whiteSpace;
      if (!["pre-wrap", "pre-line", "break-spaces", "normal"].includes(ws)) {
        overflow.push(`${text} (hidden, white-space: ${ws})`);
      }
    }
  }
  return JSON.stringify({
    merror: [...document.querySelectorAll("mjx-merror")].map(e => e.textContent.slice(0, 80)),
    mathjax: !!(window.MathJax && MathJax.startup),
    math: document.querySelectorAll("mjx-container").length,
    raw,
    images: imgs.filter(i => i.naturalWidth === 0).map(i => i.getAttribute("src")),
    links: [...document.querySelectorAll("a[href]")].map(a => a.href),
    ids: [...document.querySelectorAll("[id]")].map(e => e.id)
      .concat([...document.querySelectorAll("a[name]")].map(e => e.name)),
    overflow,
  });
})()
"""


class Browser:
    """Headless Chromium with one tab, spoken to over the DevTools Protocol."""

    def __init__(self, binary: str, width: int = 1280, height: int = 900) -> None:
        self.profile = tempfile.mkdtemp(prefix="browser-check-")
        args = [
            binary, "--headless=new", "--disable-gpu", "--no-first-run",
            "--no-default-browser-check", "--disable-extensions", "--mute-audio",
            "--disable-background-networking", "--disable-component-update",
            "--disable-dev-shm-usage", f"--window-size={width},{height}",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--remote-debugging-port=0", f"--user-data-dir={self.profile}", "about:blank",
        ]  # fmt: skip
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run its sandbox as root
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().split()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"chromium did not start ({binary})")
            time.sleep(0.05)
        port, path = port_file.read_text().split()[:2]
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{port}{path}", timeout=PAGE_TIMEOUT_S, suppress_origin=True
        )
        self.next_id, self.events = 0, []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=True)

    def call(self, method: str, *, session: bool = False, **params: object) -> dict:
        """Send one command and return its result, keeping the events that arrive meanwhile."""
        self.next_id += 1
        message: dict = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, event: str, timeout: float = PAGE_TIMEOUT_S) -> None:
        """Read messages until ``event`` arrives."""
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == event for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(event)
            self.events.append(json.loads(self.ws.recv()))

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


def _serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """An HTTP server for ``root`` on a free port of 127.0.0.1, in a daemon thread."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _problems_from_events(events: list[dict], origin: str) -> list[str]:
    """JavaScript exceptions, console errors, failed loads and requests to other hosts."""
    found = []
    for e in events:
        method, p = e.get("method"), e.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            text = d.get("exception", {}).get("description") or d.get("text")
            found.append(f"JavaScript exception: {text}")
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
            found.append(f"console error: {args[:200]}")
        elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
            entry = p["entry"]
            if entry.get("url", "").endswith("/favicon.ico"):
                continue  # the browser asks every site for one; the book has none
            found.append(f"console error: {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            url = p["request"]["url"]
            if not url.startswith((origin, "data:", "blob:", "about:")):
                found.append(f"request to another host: {url}")
    return found


def _target_file(root: Path, path: str) -> Path:
    target = root / unquote(path).lstrip("/")
    return target / "index.html" if path.endswith("/") or target.is_dir() else target


def check(root: Path, binary: str, *, verbose: bool = False) -> tuple[int, list[str]]:
    """Visit every HTML page under ``root``; return the page count and the problems found."""
    pages = sorted(
        p for p in root.rglob("*.html") if not SKIP_DIRS & set(p.relative_to(root).parts)
    )
    if not pages:
        raise SystemExit(f"no HTML pages under {root}: build the book first")
    server, origin = _serve(root)
    browser = Browser(binary)
    problems, ids, anchors = [], {}, []
    try:
        for page in pages:
            rel, start = page.relative_to(root).as_posix(), time.perf_counter()
            redirect = REDIRECT.search(page.read_text(encoding="utf-8", errors="replace"))
            if redirect:  # the root index.html only forwards to the first page
                if not _target_file(page.parent, redirect.group(1)).exists():
                    problems.append(f"{rel}: redirects to a missing page: {redirect.group(1)}")
                continue
            browser.events.clear()
            browser.call("Page.navigate", session=True, url=f"{origin}/{rel}")
            browser.wait_for("Page.loadEventFired")
            reply = browser.call(
                "Runtime.evaluate", session=True, expression=CHECK_JS, awaitPromise=True,
                returnByValue=True, timeout=PAGE_TIMEOUT_S * 1000,
            )  # fmt: skip
            if "exceptionDetails" in reply:
                problems.append(f"{rel}: the check script failed: {reply['exceptionDetails']}")
                continue
            r = json.loads(reply["result"]["value"])
            browser.call("Runtime.evaluate", session=True, expression="0")  # flush events
            found = _problems_from_events(browser.events, origin)
            found += [f"MathJax error: {t}" for t in r["merror"]]
            found += [f"raw TeX delimiter in the text: {t!r}" for t in r["raw"]]
            found += [f"image did not load: {src}" for src in r["images"]]
            found += [f"code block overflows: {t}" for t in r["overflow"]]
            if r["math"] and not r["mathjax"]:
                found.append("math on the page but MathJax did not load")
            ids[rel] = set(r["ids"])
            for href in r["links"]:
                url = urlsplit(href)
                if not href.startswith(origin):
                    continue
                target = _target_file(root, url.path)
                if not target.exists():
                    found.append(f"broken link: {href.removeprefix(origin)}")
                elif url.fragment and target.suffix == ".html":
                    anchors.append((rel, target.relative_to(root).as_posix(), url.fragment))
            problems += [f"{rel}: {f}" for f in found]
            if verbose:
                print(f"{time.perf_counter() - start:5.1f} s  {r['math']:4d} formulas  {rel}")
        for rel, target, fragment in anchors:
            if target in ids and unquote(fragment) not in ids[target]:
                problems.append(f"{rel}: broken anchor: {target}#{fragment}")
    finally:
        browser.close()
        server.shutdown()
    return len(pages), problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", nargs="?", default="_build/render-check/_build/html")
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM", "chromium"))
    parser.add_argument("-v", "--verbose", action="store_true", help="time each page")
    args = parser.parse_args(argv)
    binary = shutil.which(args.chromium)
    if binary is None:
        print(f"{args.chromium} not found: apt-get install chromium", file=sys.stderr)
        return 2
    start = time.perf_counter()
    n_pages, problems = check(Path(args.html).resolve(), binary, verbose=args.verbose)
    seconds = time.perf_counter() - start
    for p in problems:
        print(p)
    print(f"browser check: {n_pages} pages in {seconds:.1f} s, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
