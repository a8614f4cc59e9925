"""A headless Chromium driven over its DevTools pipe, standard library only.

For the HTML report's tests and its load-time benchmark: open a page, run
JavaScript in it, take a screenshot. `--remote-debugging-pipe` makes
Chromium read commands from fd 3 and write replies and events to fd 4,
each a JSON message ended by a NUL byte.
"""

from __future__ import annotations

import base64
import fcntl
import functools
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = "chromium not installed: apt-get install chromium"


class BrowserError(RuntimeError):
    """Chromium did not start, answered with an error, or took too long."""


def find() -> str | None:
    """$CHROMIUM, else the first of NAMES on PATH."""
    wanted = os.environ.get("CHROMIUM")
    return shutil.which(wanted) if wanted else next(filter(None, map(shutil.which, NAMES)), None)


def _high(fds: tuple[int, int]) -> tuple[int, int]:
    """A pipe's ends moved to 10 and up, close-on-exec: moving the child's
    ends onto 3 and 4 must not overwrite one of them."""
    moved = tuple(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in fds)
    for fd in fds:
        os.close(fd)
    return moved[0], moved[1]


def _onto_3_and_4(reads: int, writes: int) -> None:
    """In the child, before exec: dup2 leaves the copies inheritable."""
    os.dup2(reads, 3)
    os.dup2(writes, 4)


class Chromium:
    """One headless browser with one tab. A context manager: the browser
    and its profile directory go when it ends."""

    def __init__(
        self, executable: str | None = None, width: int = 1280, height: int = 900, timeout: float = 30.0
    ) -> None:
        found = executable or find()
        if found is None:
            raise BrowserError(INSTALL_HINT)
        self.timeout = timeout
        self.profile = tempfile.TemporaryDirectory(prefix="conformance-chromium-")
        to_browser, self._to_browser = _high(os.pipe())
        self._from_browser, from_browser = _high(os.pipe())
        flags = [
            "--headless=new",
            "--remote-debugging-pipe",
            f"--user-data-dir={self.profile.name}",
            "--no-sandbox",  # root in CI; the page is our own file
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-sync",
            "--hide-scrollbars",
            "--mute-audio",
            "about:blank",
        ]
        self.process = subprocess.Popen(
            [found, *flags],
            preexec_fn=functools.partial(_onto_3_and_4, to_browser, from_browser),
            close_fds=False,  # what else is open is close-on-exec, the pipe's other ends included
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        try:
            target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            self.call("Page.enable", session=True)
            metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
            self.call("Emulation.setDeviceMetricsOverride", metrics, session=True)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self._send({"id": -1, "method": "Browser.close"})
                self.process.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        self.profile.cleanup()

    def _send(self, message: dict[str, Any]) -> None:
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise BrowserError(f"no answer from Chromium within {self.timeout:g} s")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise BrowserError(f"Chromium closed its DevTools pipe (exit status {self.process.poll()})")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        parsed: dict[str, Any] = json.loads(message)
        return parsed

    def call(self, method: str, params: dict[str, Any] | None = None, session: bool = False) -> dict[str, Any]:
        """One DevTools command, to the browser or (session=True) to the tab."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        self._send(message)
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            if "method" in reply:
                self._events.append(reply)

    def wait_event(self, method: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while True:
            for k, event in enumerate(self._events):
                if event["method"] == method:
                    del self._events[k]
                    return event
            reply = self._receive(deadline)
            if "method" in reply:
                self._events.append(reply)

    def open(self, url: str, ready: str = "true") -> float:
        """Load a page and wait until `ready` (a JavaScript expression) holds;
        returns the seconds that took, as seen from here."""
        started = time.monotonic()
        self._events.clear()
        self.call("Page.navigate", {"url": url}, session=True)
        self.wait_event("Page.loadEventFired")
        deadline = started + self.timeout
        while not self.evaluate(ready):
            if time.monotonic() > deadline:
                raise BrowserError(f"{url}: {ready} did not hold within {self.timeout:g} s")
            time.sleep(0.02)
        return time.monotonic() - started

    def evaluate(self, expression: str) -> Any:
        """The expression's value (JSON-able), awaited if it is a promise; a JavaScript exception raises."""
        reply = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=True,
        )
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            raise BrowserError(f"{expression[:80]}: {details.get('exception', {}).get('description') or details}")
        return reply["result"].get("value")

    def screenshot(self, path: Path, full_page: bool = False) -> None:
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": full_page}
        data = self.call("Page.captureScreenshot", params, session=True)["data"]
        path.write_bytes(base64.b64decode(data))
