"""Browser pages: ``GET /runs/{id}`` (a run's frontier, interactive, above the run's study
report: the same sections as ``star report``) and the bundled plotly.js.

Authentication for the browser: the admin token never travels in a URL (where access logs,
history and Referer headers keep it) nor in a page. ``/runs/{id}`` without the session cookie
answers 401 with a login form; the form POSTs the token to ``/login``, which sets the
``star_token`` cookie (HttpOnly, SameSite=Strict) and redirects back. The page's scripts call the
JSON API with that cookie, which ``star.lab.deps.require_admin`` accepts for reads (GET/HEAD)
only: a SameSite=Strict cookie on a read cannot be abused by another site, and every write
still needs ``Authorization: Bearer``.

plotly.js is served from the ``plotly`` Python package (``plotly/package_data/plotly.min.js``) at
``/static/plotly.min.js``: no CDN, the page works offline.
"""

from __future__ import annotations

import hmac
import html
import json
import re
from functools import cache
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Cookie, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from device_agents.protocol import API_PREFIX
from star.db import repo
from star.lab.deps import SESSION_COOKIE, SessionDep, TxRoute, id_path
from star.report.style import CSS as REPORT_CSS

router = APIRouter(tags=["web"], route_class=TxRoute, include_in_schema=False)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
COOKIE = SESSION_COOKIE


@cache
def plotly_js() -> Path:
    """The ``plotly.min.js`` shipped inside the plotly package (``pip install plotly``)."""
    try:
        import plotly  # type: ignore[import-untyped]
    except ImportError as exc:
        raise FileNotFoundError("plotly is not installed (pip install 'plotly>=5')") from exc
    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the plotly package")
    return path


def is_admin_token(request: Request, candidate: str | None) -> bool:
    admin: str | None = request.app.state.admin_token
    return bool(admin and candidate
                and hmac.compare_digest(admin.encode(), candidate.encode()))


LOGIN_FORM = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>STAR lab: sign in</title><meta name="referrer" content="no-referrer"></head>
<body style="font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto">
<h1>STAR lab</h1><p>{message}</p>
<form method="post" action="/login"><input type="hidden" name="next" value="{next}">
<label>admin token <input type="password" name="token" autocomplete="current-password"
autofocus required></label> <button type="submit">open</button></form></body></html>"""


def login_page(next_path: str, message: str, code: int = 401) -> HTMLResponse:
    page = LOGIN_FORM.format(message=html.escape(message), next=html.escape(next_path, True))
    return HTMLResponse(page, status_code=code, headers={"Cache-Control": "no-store"})


def _safe_next(value: str) -> str:
    """Only this lab's run pages: never an open redirect to another site."""
    return value if re.fullmatch(r"/runs/\d{1,19}", value) else "/"


def _labels(objectives: list[str]) -> dict[str, str]:
    """Objective name -> its human name with unit and direction (``describe``)."""
    from star.search.objectives import describe

    out = {}
    for name in objectives:
        try:
            out[name] = describe(name)
        except ValueError:  # a name this build does not know: shown as stored
            out[name] = name
    return out


@router.get("/static/plotly.min.js")
def plotly_static() -> FileResponse:
    try:
        path = plotly_js()
    except FileNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    return FileResponse(path, media_type="application/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})


@router.get("/static/run.js")
def run_js() -> FileResponse:
    return FileResponse(WEB_DIR / "run.js", media_type="application/javascript")


def report_body(session: Session, run_id: int) -> str:
    """The study report's sections (``star.report``) for the page, rendered on the server from
    the same rows ``star report`` reads; a short note for runs the search did not create."""
    from star.report.build import build_report
    from star.report.html import render_body
    from star.search.rundata import NotASearchRun, load_run

    try:
        data = load_run(session, run_id)
    except NotASearchRun as exc:
        return f'<p class="muted">no study report: {html.escape(str(exc))}</p>'
    return render_body(build_report(data))


@router.post("/login")
async def login(request: Request) -> Response:
    """The login form's target: a valid token sets the session cookie and goes back to the page
    (303); a wrong one shows the form again (401). Parsed by hand: a form body needs no extra
    dependency."""
    body = (await request.body())[:4096].decode("utf-8", "replace")
    form = {k: v[0] for k, v in parse_qs(body).items()}
    target = _safe_next(form.get("next", "/"))
    token = form.get("token")
    if not is_admin_token(request, token):
        return login_page(target, "That is not the admin token.")
    response = RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(COOKIE, str(token), httponly=True, samesite="strict", path="/")
    return response


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(
    run_id: Annotated[int, id_path("run")],
    request: Request,
    session: SessionDep,
    token: Annotated[str | None, Query(include_in_schema=False)] = None,
    star_token: Annotated[str | None, Cookie()] = None,
) -> Response:
    """The run's frontier as an interactive scatter (click a point for the candidate), then
    the run's study report."""
    if token is not None:  # refused even when right: it is in the access log already
        return login_page(f"/runs/{run_id}", "The token does not go in the address (access "
                          "logs and history keep it): sign in here instead.", code=400)
    if not is_admin_token(request, star_token):
        return login_page(f"/runs/{run_id}", f"Sign in to see run {run_id}.")
    run = repo.get_run(session, run_id)
    objectives = ((run.config or {}).get("search") or {}).get("objectives") or []
    page = (WEB_DIR / "run.html").read_text()
    boot = {"runId": run.id, "runName": run.name, "api": API_PREFIX,
            "objectives": objectives, "labels": _labels(objectives)}
    page = page.replace("{{title}}", html.escape(f"run {run.name} (id {run.id})"))
    page = page.replace("{{boot}}", html.escape(json.dumps(boot), quote=True))
    page = page.replace("{{report_css}}", REPORT_CSS)
    page = page.replace("{{report}}", report_body(session, run.id))  # last: not re-scanned
    return HTMLResponse(page, headers={"Cache-Control": "no-store",
                                       "Referrer-Policy": "no-referrer"})
