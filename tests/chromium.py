"""Headless Chromium driven over the DevTools protocol: load a page, collect errors, screenshot.

Why the protocol and not Selenium: the report test must see every console error and uncaught
exception, and Selenium's WebDriver has no standard way to read them from Chromium (its log API
is vendor-specific and drops exceptions); the protocol reports them as events
(``Runtime.exceptionThrown``, ``Runtime.consoleAPICalled``, ``Log.entryAdded``) and needs
nothing but Debian's ``chromium`` and the small ``websocket-client`` package (no chromedriver
whose version must match). Used by the browser tests and by ``bench/report_page.py``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websocket

CHROMIUM_NAMES = ("chromium", "chromium-browser")


class BrowserError(RuntimeError):
    """Chromium is missing, did not start, or a protocol call failed."""


def chromium_path() -> str:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise BrowserError(
        "Chromium is not installed (Debian package 'chromium'; scripts/test installs it)"
    )


@dataclass
class Page:
    """One tab, with the console errors and exceptions it reported so far."""

    ws: websocket.WebSocket
    timeout_s: float
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    _next_id: int = 0

    def call(
        self, method: str, params: dict[str, Any] | None = None, timeout_s: float | None = None
    ) -> dict[str, Any]:
        self._next_id += 1
        call_id = self._next_id
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            message = self._receive(deadline, method)
            if message.get("id") == call_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    def _receive(self, deadline: float, waiting_for: str) -> dict[str, Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrowserError(f"no answer from Chromium for {waiting_for}")
        self.ws.settimeout(remaining)
        try:
            message: dict[str, Any] = json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException:
            raise BrowserError(f"no answer from Chromium for {waiting_for}") from None
        if "method" in message:
            self._note(message)
        return message

    def _note(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        method, params = event["method"], event.get("params", {})
        if method == "Network.requestWillBeSent":
            self.requests.append(params.get("request", {}).get("url", ""))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text")
            self.errors.append(f"uncaught exception: {text}")
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(
                str(a.get("value", a.get("description", ""))) for a in params.get("args", [])
            )
            if params.get("type") in ("error", "assert"):
                self.errors.append(f"console.{params.get('type')}: {text}")
            elif params.get("type") == "warning":
                self.warnings.append(text)
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") == "error":
                self.errors.append(
                    f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip()
                )

    def wait_event(self, method: str, timeout_s: float | None = None) -> dict[str, Any]:
        for event in self.events:
            if event["method"] == method:
                self.events.remove(event)
                return event
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            message = self._receive(deadline, method)
            if message.get("method") == method:
                self.events.remove(message)
                return message

    def evaluate(self, expression: str, timeout_s: float | None = None) -> Any:
        """Evaluate JavaScript (awaiting a promise) and return its JSON value."""
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            timeout_s,
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def navigate(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired")

    def screenshot(self, path: Path, *, full_page: bool = True) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.call("Page.getLayoutMetrics")["cssContentSize"]
            params |= {
                "captureBeyondViewport": True,
                "clip": {
                    "x": 0,
                    "y": 0,
                    "width": size["width"],
                    "height": min(size["height"], 16_000),
                    "scale": 1,
                },
            }
        data = self.call("Page.captureScreenshot", params, timeout_s=120)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


@contextmanager
def chromium(width: int = 1440, height: int = 1000, timeout_s: float = 60.0) -> Iterator[Page]:
    """A fresh headless Chromium with one page, killed on exit (its profile is temporary)."""
    binary = chromium_path()
    profile = Path(tempfile.mkdtemp(prefix="confusion-chromium-"))
    args = [
        binary,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--remote-debugging-port=0",
        "--remote-allow-origins=*",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        "about:blank",
    ]
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "LANG": "C.UTF-8"},
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout_s
        while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
            if proc.poll() is not None:
                stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise BrowserError(f"Chromium exited with {proc.returncode}: {stderr[-2000:]}")
            if time.monotonic() > deadline:
                raise BrowserError("Chromium did not open its DevTools port")
            time.sleep(0.05)
        port = int(port_file.read_text().splitlines()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            targets = json.load(r)
        target = next(t for t in targets if t.get("type") == "page")
        ws = websocket.create_connection(
            target["webSocketDebuggerUrl"], timeout=timeout_s, suppress_origin=True
        )
        page = Page(ws, timeout_s)
        for domain in ("Page", "Runtime", "Log", "Network"):
            page.call(f"{domain}.enable")
        page.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        try:
            yield page
        finally:
            ws.close()
    finally:
        proc.kill()
        proc.wait(timeout=30)
        if proc.stderr:
            proc.stderr.close()
        shutil.rmtree(profile, ignore_errors=True)


# What "a chart rendered" means on the page: vega-embed finished without error and the chart's
# SVG holds visible data marks (Vega gives user marks the class role-mark; axes and legends
# have their own roles), i.e. something was drawn from the data, not only an empty frame.
CHART_CHECK_JS = r"""
window.confusionReport.renderAll().then(function(){
  return Array.from(document.querySelectorAll('.chart')).map(function(el){
    const svg = el.querySelector('svg');
    let drawn = 0;
    if (svg) {
      svg.querySelectorAll('g.role-mark > *').forEach(function(m){
        const style = window.getComputedStyle(m);
        const op = parseFloat(m.getAttribute('opacity') || m.getAttribute('fill-opacity') ||
                              m.getAttribute('stroke-opacity') || style.opacity || '1');
        const box = m.getBBox ? m.getBBox() : {width: 0, height: 0};
        if (op > 0 && (box.width > 0 || box.height > 0)) drawn++;
      });
    }
    const box = el.getBoundingClientRect();
    return {id: el.dataset.chart, state: el.dataset.state || '', drawn: drawn,
            width: Math.round(box.width), height: Math.round(box.height),
            text: el.textContent.slice(0, 200)};
  });
})
"""
