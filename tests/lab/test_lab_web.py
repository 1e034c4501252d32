"""The run page in headless Chromium (DevTools protocol): plotly.js from the local route draws
the stored candidates, and a real mouse click on a point fetches and shows that candidate."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from star.db import repo
from tests.factories import ADMIN_TOKEN
from tests.lab.conftest import Lab
from tests.lab.test_lab_runs_api import Seeded, seed_run
from tests.support.wait import wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_page_auth_and_local_plotly(lab: Lab) -> None:
    seeded = seed_run(lab.db, lab.store)
    with lab.client() as anon:
        assert anon.get(f"/runs/{seeded.run_id}").status_code == 401
        assert anon.get(f"/runs/{seeded.run_id}", params={"token": "wrong"}).status_code == 401
        r = anon.get(f"/runs/{seeded.run_id}", params={"token": ADMIN_TOKEN})
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        assert 'src="/static/plotly.min.js"' in r.text and "cdn" not in r.text.lower()
        assert anon.cookies.get("star_token") == ADMIN_TOKEN
        assert anon.get(f"/runs/{seeded.run_id}").status_code == 200  # the cookie alone
        js = anon.get("/static/plotly.min.js")
        assert js.status_code == 200 and len(js.content) > 1_000_000
        assert anon.get("/runs/999", params={"token": ADMIN_TOKEN}).status_code == 404


def test_page_shows_the_study_report_or_says_why_there_is_none(lab: Lab) -> None:
    seeded = seed_run(lab.db, lab.store)
    with lab.db.session_scope() as s:
        manual = repo.create_run(s, name="manual", config={})
    with lab.client() as anon:
        r = anon.get(f"/runs/{seeded.run_id}", params={"token": ADMIN_TOKEN})
        assert 'class="star-report"' in r.text and 'id="provenance"' in r.text
        assert r.text.count(ADMIN_TOKEN) == 1  # the boot data only: never in the report
        r = anon.get(f"/runs/{manual.id}", params={"token": ADMIN_TOKEN})
        assert r.status_code == 200 and "no study report" in r.text
        assert "star search run" in r.text and 'class="star-report"' not in r.text


class Tab:
    """One page target over the DevTools protocol (websockets' sync client)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=20))
            if msg.get("id") == self.next_id:
                assert "error" not in msg, msg
                return msg["result"]

    def eval(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def wait(self, expression: str, ok: Callable[[Any], bool], timeout: float = 20) -> Any:
        """The value of ``expression`` once ``ok`` accepts it (the page's state, polled);
        fails naming the expression, with the page's text."""

        def settled() -> tuple[Any] | None:
            value = self.eval(expression)
            return (value,) if ok(value) else None

        return wait_for(f"the page: {expression}", settled, timeout, interval_s=0.1,
                        on_timeout=lambda: f"page text: {self.eval('document.body.innerText')}")[0]

    def click(self, x: float, y: float) -> None:
        # each dispatchMouseEvent answers once the page has handled the event
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            extra = {} if kind == "mouseMoved" else {"button": "left", "clickCount": 1}
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, **extra)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Tab]:
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: scripts/setup.sh installs it")
    profile = tmp_path / "chromium"
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--remote-debugging-port=0",
         "--window-size=1400,900", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"

        def listening() -> bool:
            assert proc.poll() is None, f"chromium exited with {proc.returncode}"
            return port_file.is_file() and bool(port_file.read_text().strip())

        wait_for("chromium to listen for DevTools", listening, 30)
        port = int(port_file.read_text().split()[0])
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page = next(t for t in targets if t["type"] == "page")
        from websockets.sync.client import connect

        with connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10) as ws:
            yield Tab(ws)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_run_page_plots_and_click_shows_candidate(lab: Lab, browser: Tab) -> None:
    seeded: Seeded = seed_run(lab.db, lab.store)
    browser.call("Page.enable")
    browser.call("Page.navigate", url=f"{lab.url}/runs/{seeded.run_id}?token={ADMIN_TOKEN}")
    # 5 feasible candidates on (params, kv_bytes_per_token): 1 grey + 4 on the frontier
    count = "document.querySelectorAll('#plot .scatterlayer path.point').length"
    browser.wait(count, lambda n: n == 5)
    per_trace = browser.eval("Array.from(document.querySelectorAll('#plot .scatterlayer .trace'))"
                             ".map(t => t.querySelectorAll('path.point').length)")
    assert per_trace == [1, 4]
    assert browser.eval("location.search") == ""  # the token left the address bar
    assert browser.eval("typeof Plotly") == "object"
    assert browser.eval("document.querySelector('#x').value") == "params"
    assert browser.eval("document.querySelector('#y').value") == "kv_bytes_per_token"

    # a real mouse click on the first frontier point -> GET /api/v1/candidates/{id} -> details
    box = browser.eval(
        "(() => { const p = document.querySelectorAll('#plot .scatterlayer .trace')[1]"
        ".querySelector('path.point').getBoundingClientRect();"
        " return [p.x + p.width / 2, p.y + p.height / 2]; })()")
    browser.click(*box)
    shown = browser.wait("document.getElementById('candidate-title')?.dataset.candidate",
                         lambda v: v is not None, timeout=10)
    assert int(shown) in seeded.front
    text = browser.eval("document.getElementById('details').innerText")
    assert "lap" in text and "measurements" in text  # the device that measured it
    # the report's human-readable card of that candidate, never raw JSON
    assert browser.eval("document.querySelector('#details .card')?.dataset.candidate") == shown
    assert "params" in text and "{" not in text

    # choose another objective for y: the front is recomputed over (params, ttft)
    browser.eval("(() => { const s = document.querySelector('#y');"
                 " s.value = 'ttft_ms@128/x86'; s.dispatchEvent(new Event('change')); })()")
    summary = "document.getElementById('summary').textContent"
    assert "1 on the frontier of params M ↓, TTFT ms @128 ↓ (x86)" in browser.wait(
        summary, lambda s: "TTFT" in (s or ""))
