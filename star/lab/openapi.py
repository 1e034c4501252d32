"""What /openapi.json and /docs say about the API: error responses, operation ids, offline docs.

Every operation documents each status it can answer, with an example body: the errors follow
from how a route is built (its token dependency, its path parameters, its body), so
``star.lab.deps.TxRoute`` derives them (``route_errors``) rather than each route repeating
them; the few that depend on stored state (409) are declared on their routes with
``conflict``. Operation ids are the endpoint
functions' names, which read as verb phrases (``lease_job``, ``submit_result``).

/docs and /redoc load Swagger UI and ReDoc from the ``fastapi-offline`` package, served by the
coordinator itself: a lab without internet access still has its API documentation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

DOCS_STATIC = "/docs-static"


class ErrorPublic(BaseModel):
    """An error that is not about one field."""

    detail: str = Field(description="what went wrong, in words")


class FieldError(BaseModel):
    """One refused field."""

    type: str = Field(description="the kind of problem (missing, less_than_equal, value_error)")
    loc: list[str | int] = Field(
        description="where: body, path, query or header, then the field's path in it")
    msg: str = Field(description="why it is refused, in words")
    input: Any = Field(default=None, description="the value refused (long values shortened)")


class ValidationErrorPublic(BaseModel):
    """A request refused field by field (422)."""

    detail: list[FieldError] = Field(description="one entry per refused field")


def _error(description: str, detail: str) -> dict[str, Any]:
    return {"model": ErrorPublic, "description": description,
            "content": {"application/json": {"example": {"detail": detail}}}}


UNAUTHORIZED = _error("No token, or an unknown or retired one.", "invalid token")
FORBIDDEN = _error("A device token on an operator's route, or another device's job.",
                   "a device token cannot do this")
NOT_FOUND = _error("The row named in the path (or in a name parameter) does not exist.",
                   "no job with id 7")
TOO_LARGE = _error("The request body is larger than the coordinator accepts "
                   "(coordinator.max_body_bytes; artifacts: coordinator.max_artifact_bytes).",
                   "the request body is larger than 16777216 bytes")
INVALID: dict[str, Any] = {
    "model": ValidationErrorPublic,
    "description": "A field is refused: loc names it, msg says why. Nothing was stored.",
    "content": {"application/json": {"example": {"detail": [{
        "type": "less_than_equal",
        "loc": ["body", "report", "contexts", 0, "peak_rss_bytes"],
        "msg": "Input should be less than or equal to 1125899906842624",
        "input": 1180591620717411303424,
    }]}}},
}


def conflict(description: str, detail: str) -> dict[int | str, dict[str, Any]]:
    """A route's 409: the stored state does not allow the request (say which, by example)."""
    return {409: _error(description, detail)}


def route_errors(*, auth: tuple[int, ...], path_params: bool, body: bool,
                 params: bool) -> dict[int | str, dict[str, Any]]:
    """The error responses that follow from how a route is built: its token dependency (401,
    and 403 for the operator's routes), path parameters (404), a body (413) and any input at
    all (422)."""
    errors: dict[int | str, dict[str, Any]] = {}
    if 401 in auth:
        errors[401] = UNAUTHORIZED
    if 403 in auth:
        errors[403] = FORBIDDEN
    if path_params:
        errors[404] = NOT_FOUND
    if body:
        errors[413] = TOO_LARGE
    if body or path_params or params:
        errors[422] = INVALID
    return errors


def operation_id(route: APIRoute) -> str:
    """The endpoint function's name: ``lease_job``, not ``lease_api_v1_agent_lease_post``."""
    return route.name


def docs_assets() -> Path:
    """Swagger UI and ReDoc as shipped in the ``fastapi-offline`` package."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def install_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc, with every script and style served from here."""
    app.mount(DOCS_STATIC, StaticFiles(directory=docs_assets()), name="docs-static")
    title = app.title

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{title} - API",
            swagger_js_url=f"{root}{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_STATIC}/favicon.png",
            # no badge from the public validator: nothing on the page leaves the coordinator
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{title} - API",
            redoc_js_url=f"{root}{DOCS_STATIC}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_STATIC}/favicon.png", with_google_fonts=False,
        )
