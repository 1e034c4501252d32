"""Browser pages: ``GET /runs/{id}`` (a run's frontier, interactive, above the run's study
report: the same sections as ``star report``) and the bundled plotly.js.

Authentication for the browser: open ``/runs/{id}?token=ADMIN_TOKEN`` once; the page sets the
``star_token`` cookie (HttpOnly, SameSite=Strict, path ``/runs``) so later visits need no query
parameter, and strips the token from the address bar. The page itself calls the JSON API with
``Authorization: Bearer`` using the token embedded in it (only ever served to the admin).

plotly.js is served from the ``plotly`` Python package (``plotly/package_data/plotly.min.js``) at
``/static/plotly.min.js``: no CDN, the page works offline.
"""

from __future__ import annotations

import hmac
import html
import json
from functools import cache
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Cookie, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, HTMLResponse, Response
from sqlalchemy.orm import Session

from device_agents.protocol import API_PREFIX
from star.db import repo
from star.lab.deps import SessionDep, TxRoute
from star.report.style import CSS as REPORT_CSS

router = APIRouter(tags=["web"], route_class=TxRoute, include_in_schema=False)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
COOKIE = "star_token"


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


def _admin_token(request: Request, token: str | None, cookie: str | None) -> str:
    admin: str | None = request.app.state.admin_token
    for candidate in (token, cookie):
        if admin and candidate and hmac.compare_digest(admin.encode(), candidate.encode()):
            return candidate
    raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                        detail="open this page with ?token=<admin token> (then a cookie is set)")


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


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(
    run_id: int,
    request: Request,
    session: SessionDep,
    token: Annotated[str | None, Query()] = None,
    star_token: Annotated[str | None, Cookie()] = None,
) -> Response:
    """The run's frontier as an interactive scatter (click a point for the candidate), then
    the run's study report."""
    admin = _admin_token(request, token, star_token)
    run = repo.get_run(session, run_id)
    objectives = ((run.config or {}).get("search") or {}).get("objectives") or []
    page = (WEB_DIR / "run.html").read_text()
    boot = {"runId": run.id, "runName": run.name, "api": API_PREFIX, "token": admin,
            "objectives": objectives, "labels": _labels(objectives)}
    page = page.replace("{{title}}", html.escape(f"run {run.name} (id {run.id})"))
    page = page.replace("{{boot}}", html.escape(json.dumps(boot), quote=True))
    page = page.replace("{{report_css}}", REPORT_CSS)
    page = page.replace("{{report}}", report_body(session, run.id))  # last: not re-scanned
    response = HTMLResponse(page, headers={"Cache-Control": "no-store",
                                           "Referrer-Policy": "no-referrer"})
    if token is not None:
        response.set_cookie(COOKIE, admin, httponly=True, samesite="strict", path="/runs")
    return response
