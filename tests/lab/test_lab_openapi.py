"""The API describes itself: operation ids are verb phrases, every field and parameter has a
description, every error an operation can answer is documented with an example, and /docs and
/redoc render from assets the coordinator serves itself (no CDN: a lab offline has its docs).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

from tests.lab.conftest import Lab
from tests.lab.test_lab_web import Tab, browser  # noqa: F401 - the browser fixture

VERBS = {"get", "list", "create", "register", "retire", "update", "send", "lease", "submit",
         "report", "upload", "download", "cancel", "reap", "launch", "stop", "resume",
         "export", "check"}
# The search's own configuration schema (star.search.config.SearchConfig, POST /runs body) is
# documented by its module, not here: its fields' descriptions are the search's to write.
NOT_OURS = {("post", "/api/v1/runs")}


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, ops in doc["paths"].items()
            for method, op in ops.items()]


def _undescribed(node: Any, where: str) -> list[str]:
    """Every property of every schema under ``node`` that lacks a description."""
    missing: list[str] = []
    if isinstance(node, dict):
        for name, prop in (node.get("properties") or {}).items():
            if "description" not in prop:
                missing.append(f"{where}.{name}")
            missing += _undescribed(prop, f"{where}.{name}")
        for key, value in node.items():
            if key != "properties":
                missing += _undescribed(value, where)
    elif isinstance(node, list):
        for value in node:
            missing += _undescribed(value, where)
    return missing


def test_operation_ids_are_unique_verb_phrases(lab: Lab) -> None:
    doc = lab.admin.get("/openapi.json").json()
    ids = [op["operationId"] for _, _, op in _operations(doc)]
    assert len(ids) >= 29 and len(set(ids)) == len(ids), ids
    bad = [i for i in ids if not re.fullmatch(r"[a-z]+(_[a-z0-9]+)+", i)
           or i.split("_")[0] not in VERBS]
    assert bad == [], bad
    assert {"lease_job", "submit_result", "report_failure", "send_heartbeat"} <= set(ids)


def test_every_field_and_parameter_is_described(lab: Lab) -> None:
    doc = lab.admin.get("/openapi.json").json()
    missing = _undescribed(doc["components"]["schemas"], "components")
    fields = len(re.findall(r'"properties"', str(doc["components"]).replace("'", '"')))
    for method, path, op in _operations(doc):
        where = f"{method.upper()} {path}"
        missing += [f"{where} ?{p['name']}" for p in op.get("parameters", [])
                    if not p.get("description")]
        if (method, path) not in NOT_OURS:
            missing += _undescribed(op.get("requestBody", {}), where)
        missing += _undescribed(op.get("responses", {}), where)
        if not op.get("description"):
            missing.append(f"{where}: no description")
    assert fields > 30
    assert missing == [], missing


def test_every_error_an_operation_can_answer_is_documented_with_an_example(lab: Lab) -> None:
    doc = lab.admin.get("/openapi.json").json()
    for method, path, op in _operations(doc):
        where = f"{method.upper()} {path}"
        responses = op["responses"]
        params = op.get("parameters", [])
        secured = bool(op.get("security"))
        if secured:
            assert "401" in responses, where
        if any(p["in"] == "path" for p in params):
            assert {"404", "422"} <= set(responses), where
        if "requestBody" in op:
            assert {"413", "422"} <= set(responses), where
        if secured and not path.startswith("/api/v1/agent") and "/artifacts/" not in path:
            assert "403" in responses, where  # an operator's route refuses device tokens
        for code, response in responses.items():
            if code.startswith("2"):
                continue
            content = response.get("content", {}).get("application/json", {})
            assert "example" in content and response.get("description"), (where, code)


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


def test_docs_render_from_assets_the_coordinator_serves(lab: Lab) -> None:
    for page, bundle in (("/docs", "SwaggerUIBundle"), ("/redoc", "Redoc")):
        r = lab.admin.get(page)
        assert r.status_code == 200 and "text/html" in r.headers["content-type"], page
        assert not re.search(r"https?://", r.text), (page, re.findall(r"https?://\S+", r.text))
        parser = _Assets()
        parser.feed(r.text)
        scripts = [u for u in parser.urls if u.endswith(".js")]
        assert scripts and any(u.endswith(".css") or page == "/redoc" for u in parser.urls)
        for url in parser.urls:
            assert url.startswith("/"), (page, url)  # same origin: this coordinator
            asset = lab.admin.get(url)
            assert asset.status_code == 200 and len(asset.content) > 1000, (page, url)
        js = lab.admin.get(scripts[0]).text
        assert bundle in js, (page, scripts[0])
    assert "openapi.json" in lab.admin.get("/docs").text
    assert '"validatorUrl": null' in lab.admin.get("/docs").text  # no badge from outside
    assert lab.admin.get("/openapi.json").json()["openapi"].startswith("3.1")


def test_docs_render_in_a_browser_without_a_request_leaving_the_coordinator(
    lab: Lab, browser: Tab  # noqa: F811 - the fixture
) -> None:
    browser.call("Page.enable")
    browser.call("Page.navigate", url=f"{lab.url}/docs")
    count = "document.querySelectorAll('.opblock').length"
    operations = len(_operations(lab.admin.get("/openapi.json").json()))
    shown = browser.wait(count, lambda n: (n or 0) >= operations)
    assert shown >= operations, browser.eval("document.body.innerText.slice(0, 500)")
    assert "STAR lab coordinator" in browser.eval("document.body.innerText")
    loaded = browser.eval("performance.getEntriesByType('resource').map(e => e.name)")
    assert any(u.endswith("swagger-ui-bundle.js") for u in loaded), loaded
    assert [u for u in loaded if not u.startswith(lab.url)] == [], loaded
