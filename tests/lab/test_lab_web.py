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


def sign_in(client: httpx.Client, run_id: int, token: str = ADMIN_TOKEN) -> httpx.Response:
    """What the login form does: POST the token (never in a URL), follow the 303."""
    return client.post("/login", data={"token": token, "next": f"/runs/{run_id}"},
                       follow_redirects=True)


def test_page_signs_in_by_form_and_serves_plotly_locally(lab: Lab) -> None:
    seeded = seed_run(lab.db, lab.store)
    with lab.client() as anon:
        r = anon.get(f"/runs/{seeded.run_id}")
        assert r.status_code == 401 and 'action="/login"' in r.text  # the login form
        r = anon.get(f"/runs/{seeded.run_id}", params={"token": ADMIN_TOKEN})
        assert r.status_code == 400 and ADMIN_TOKEN not in r.text  # a token in a URL: refused
        assert "star_token" not in anon.cookies
        assert sign_in(anon, seeded.run_id, "wrong").status_code == 401
        r = sign_in(anon, seeded.run_id)
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        assert str(r.url).endswith(f"/runs/{seeded.run_id}")
        assert 'src="/static/plotly.min.js"' in r.text and "cdn" not in r.text.lower()
        assert ADMIN_TOKEN not in r.text  # never in the page
        assert anon.get(f"/runs/{seeded.run_id}").status_code == 200  # the cookie alone
        js = anon.get("/static/plotly.min.js")
        assert js.status_code == 200 and len(js.content) > 1_000_000
        assert anon.get("/runs/999").status_code == 404
        assert anon.get(f"/runs/{2**63}").status_code == 422  # bounded like every id


def test_session_cookie_reads_the_api_but_never_writes(lab: Lab) -> None:
    """The page's scripts read with the cookie; a write (another site's form, say) still
    needs the bearer token, and a redirect never leaves the lab."""
    seeded = seed_run(lab.db, lab.store)
    with lab.client() as anon:
        assert anon.get(f"/api/v1/runs/{seeded.run_id}/frontier").status_code == 401
        sign_in(anon, seeded.run_id)
        assert anon.get(f"/api/v1/runs/{seeded.run_id}/frontier").status_code == 200
        assert anon.post("/api/v1/devices", json={"name": "x", "kind": "x86"}).status_code == 401
        r = anon.post("/login", data={"token": ADMIN_TOKEN, "next": "https://evil.example/"})
        assert r.status_code == 303 and r.headers["location"] == "/"


def test_page_shows_the_study_report_or_says_why_there_is_none(lab: Lab) -> None:
    seeded = seed_run(lab.db, lab.store)
    with lab.db.session_scope() as s:
        manual = repo.create_run(s, name="manual", config={})
    with lab.client() as anon:
        r = sign_in(anon, seeded.run_id)
        assert 'class="star-report"' in r.text and 'id="provenance"' in r.text
        r = anon.get(f"/runs/{manual.id}")
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
    browser.call("Page.navigate", url=f"{lab.url}/runs/{seeded.run_id}")
    # the login form, filled and submitted in the page like a person would
    browser.wait("document.querySelector('input[name=token]') !== null", lambda v: v is True)
    browser.eval(f"(() => {{ document.querySelector('input[name=token]').value = "
                 f"{json.dumps(ADMIN_TOKEN)}; document.querySelector('form').submit(); }})()")
    # 5 feasible candidates on (params, kv_bytes_per_token): 1 grey + 4 on the frontier
    count = "document.querySelectorAll('#plot .scatterlayer path.point').length"
    browser.wait(count, lambda n: n == 5)
    per_trace = browser.eval("Array.from(document.querySelectorAll('#plot .scatterlayer .trace'))"
                             ".map(t => t.querySelectorAll('path.point').length)")
    assert per_trace == [1, 4]
    assert browser.eval("location.search") == ""  # the token never was in the address bar
    assert ADMIN_TOKEN not in browser.eval("document.documentElement.outerHTML")
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
