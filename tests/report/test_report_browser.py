"""The report in headless Chromium (DevTools protocol, as tests/lab/test_lab_web.py drives the
run page): opened from a file it loads nothing, its layer strips, baseline marks and SVG plots
are laid out with real sizes, and a measurement link opens the collapsed provenance table. The
run page shows the same report under its interactive frontier."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from star.report.html import render_document
from star.report.model import Report
from tests.factories import ADMIN_TOKEN, ThreadServer, make_settings
from tests.lab.test_lab_web import Tab, browser  # noqa: F401  (fixture: headless Chromium)
from tests.report.conftest import OBJECTIVES, Study

VISIBLE = "(el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; })"


def shot(tab: Tab, path: Path) -> None:
    """A full-page screenshot, kept with the test's files for a person to look at."""
    data = tab.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    path.write_bytes(base64.b64decode(data["data"]))


def count_visible(tab: Tab, selector: str) -> list[int]:
    """[how many match, how many have a non-zero box]."""
    value: list[int] = tab.eval(
        f"(() => {{ const els = Array.from(document.querySelectorAll({selector!r}));"
        f" return [els.length, els.filter({VISIBLE}).length]; }})()")
    return value


def open_page(tab: Tab, url: str, ready: str) -> None:
    tab.call("Page.enable")
    tab.call("Page.navigate", url=url)
    assert tab.wait(ready, bool), tab.eval("document.body && document.body.innerText")


def test_report_file_draws_strips_baselines_and_plots_offline(
        report: Report, browser: Tab, tmp_path: Path) -> None:  # noqa: F811
    path = tmp_path / "report.html"
    path.write_text(render_document(report))
    open_page(browser, path.as_uri(), "document.readyState === 'complete' && "
                                      "document.querySelectorAll('svg.plot').length > 0")
    assert browser.eval("performance.getEntriesByType('resource').length") == 0  # no loads

    layers = sum(len(report.candidates[g].blocks) for g in [*report.front, *report.baselines])
    total, visible = count_visible(browser, "#architectures > .cands .blk")
    assert total == visible == layers
    assert browser.eval("document.querySelector('#architectures .card.baseline .strip')"
                        ".dataset.pattern") == "A" * 16
    pairs = len(OBJECTIVES) * (len(OBJECTIVES) - 1) // 2
    assert count_visible(browser, "#frontier svg .pt.baseline path") == [pairs, pairs]
    assert count_visible(browser, "#frontier svg .blabel") == [pairs, pairs]
    assert browser.eval("Array.from(document.querySelectorAll('#frontier svg .blabel'))"
                        ".every(t => t.textContent === 'llama-3.2-1b')")
    scatters = count_visible(browser, "#frontier svg.plot")
    assert scatters == [pairs, pairs]
    fronts = count_visible(browser, "#frontier svg .pt.front")
    assert fronts[0] == fronts[1] == pairs * len(report.front)
    lines, drawn = count_visible(browser, "#context svg.plot")
    families = len({report.candidates[g].arch for g in report.front})
    assert lines == drawn == families * len(report.device_classes) * 3
    assert count_visible(browser, "#context svg .lp")[1] > 0
    assert count_visible(browser, "#answer td.ratio")[1] == len(report.front) * 3 * 2

    # a figure's link opens the collapsed provenance table at its measurement
    target = browser.eval("document.querySelector('#answer td.ratio a').getAttribute('href')")
    assert browser.eval(f"document.querySelector('{target}').closest('details').open") is False
    browser.eval(f"location.hash = '{target}'")
    assert browser.wait(f"document.querySelector('{target}').closest('details').open", bool)
    assert browser.eval(f"{VISIBLE}(document.querySelector('{target}'))")
    shot(browser, tmp_path / "report.png")


@pytest.fixture
def study_lab(study: Study, tmp_path: Path) -> Iterator[str]:
    """A coordinator serving a copy of the study's database."""
    db_file = tmp_path / "star.db"
    shutil.copy(study.path, db_file)
    settings = make_settings(tmp_path, f"sqlite:///{db_file}")
    with ThreadServer(settings) as srv:
        yield srv.url


def test_run_page_shows_the_report_under_the_interactive_frontier(
        study: Study, study_lab: str, report: Report, browser: Tab,  # noqa: F811
        tmp_path: Path) -> None:
    with httpx.Client(base_url=study_lab, timeout=30) as client:
        r = client.post("/login", data={"token": ADMIN_TOKEN, "next": f"/runs/{study.run_id}"},
                        follow_redirects=True)
    assert r.status_code == 200 and 'class="star-report"' in r.text
    assert ADMIN_TOKEN not in r.text  # neither in the boot data nor in the report
    open_page(browser, f"{study_lab}/runs/{study.run_id}", "document.forms.length > 0")
    browser.eval(f"(() => {{ document.querySelector('input[name=token]').value = "
                 f"{json.dumps(ADMIN_TOKEN)}; document.forms[0].submit(); }})()")
    assert browser.wait("document.querySelectorAll('#plot .scatterlayer path.point').length > 0",
                        bool)
    traces: list[dict[str, Any]] = browser.eval(
        "Array.from(document.getElementById('plot').data)"
        ".map(t => ({name: t.name, n: t.x.length, symbol: t.marker.symbol || ''}))")
    names = {t["name"].split(" (")[0]: t for t in traces}
    assert names["baseline"]["n"] == 1 and names["baseline"]["symbol"] == "diamond"
    # the interactive front matches the report's (axes: its first two objectives)
    assert browser.eval("document.querySelector('#x option:checked').textContent") == (
        "proxy loss ↓")
    total, visible = count_visible(browser, "#report #architectures > .cands .blk")
    assert total == visible > 0
    assert count_visible(browser, "#report #frontier svg .pt.baseline path")[1] == 6
    assert count_visible(browser, "#report svg.plot")[1] > 6

    # clicking a frontier point shows that candidate's report card in the details panel
    box = browser.eval(
        "(() => { const t = Array.from(document.querySelectorAll('#plot .scatterlayer .trace'))"
        "[1].querySelector('path.point').getBoundingClientRect();"
        " return [t.x + t.width / 2, t.y + t.height / 2]; })()")
    browser.click(*box)
    shown = browser.wait("document.querySelector('#details .card')?.dataset.genome",
                         lambda v: v is not None, timeout=10)
    assert shown in report.front
    assert count_visible(browser, "#details .card .blk")[1] == len(report.candidates[shown].blocks)
    shot(browser, tmp_path / "run-page.png")
