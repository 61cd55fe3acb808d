"""The OpenAPI document as the API's contract: what every operation can answer, in one place.

Routes declare what is theirs (a 404 for an unknown id, a 409 for a decided approval); this
module adds what the edge answers for every route, so the document cannot forget one:

- every error body is a `Problem` (`{"detail": "why"}`), except 422, which is always FastAPI's
  `HTTPValidationError` (`{"detail": [{"loc", "msg", "type"}]}`) — our own 422s use `invalid()`
  to keep that shape;
- 400 for a Host that is not served, and on routes that take a body 403 (cross-site), 408 (the
  body did not arrive in time) and 413 (too large) — `api/security.py` answers them;
- 401 with `WWW-Authenticate` and 403 (a key of the other scope) on routes that need a key; the
  key schemes (`Authorization: Bearer` or `X-API-Key`) are FastAPI security dependencies in
  `api/auth.py`, so `securitySchemes` and each operation's `security` come from the routes;
- 503 when the database is unavailable or not migrated (`database_unavailable` below).
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Path, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, BeforeValidator, Field
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, ProgrammingError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("switchboard.api")


class Problem(BaseModel):
    """Why a request was refused."""

    detail: str = Field(description="The reason, and what to do about it where there is something to do")


PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
VALIDATION_REF = {"$ref": "#/components/schemas/HTTPValidationError"}
BODY_METHODS = ("post", "put", "patch")
EDGE_RESPONSES = {
    "400": "Malformed request: a Host that is not served here, a bad Content-Length, a body that is not JSON",
}
BODY_RESPONSES = {
    "403": "A cross-site browser request",
    "408": "The body did not arrive within SWITCHBOARD_API_BODY_TIMEOUT_S",
    "413": "The body exceeds the route's limit (refused on Content-Length, or while it is read)",
}
KEY_RESPONSES = {
    "401": "No API key, or a wrong one (the WWW-Authenticate header names the scheme)",
    "403": "A key of the other scope (operator and ingest keys are distinct)",
}
UNAVAILABLE = "The database or the broker is unavailable, or the database is not migrated"


def _decimal_digits(value: Any) -> Any:
    # lax int parsing would take "1.0", "1_000" or "²" as ids
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("must be a whole number in decimal digits")
    return value


# A numeric id in a path (approvals, insights): decimal digits only, within BIGINT.
PathId = Annotated[int, Path(ge=1, le=2**63 - 1), BeforeValidator(_decimal_digits)]


def invalid(loc: list[str | int], msg: str) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors."""
    return HTTPException(422, [{"loc": loc, "msg": msg, "type": "value_error"}])


async def single_valued_query(request: Request) -> None:
    """App dependency: no query parameter given twice (every one is a single value; FastAPI would
    silently keep the last)."""
    seen = request.query_params
    for name in {key for key, _ in seen.multi_items()}:
        if len(seen.getlist(name)) > 1:
            raise invalid(["query", name], f"{name} is given {len(seen.getlist(name))} times: give it once")


def complete(document: dict[str, Any]) -> dict[str, Any]:
    """`document` with the edge's statuses and error schemas on every operation."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = Problem.model_json_schema()
    if "HTTPValidationError" not in schemas:  # FastAPI adds these only when a route validates parameters
        from fastapi.openapi.utils import validation_error_definition, validation_error_response_definition

        schemas["ValidationError"] = validation_error_definition
        schemas["HTTPValidationError"] = validation_error_response_definition
    for operations in document.get("paths", {}).values():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            extra = dict(EDGE_RESPONSES)
            if method in BODY_METHODS:
                extra |= BODY_RESPONSES
            if operation.get("security"):
                extra |= KEY_RESPONSES
            if operation.get("x-uses-database", True):
                extra["503"] = UNAVAILABLE
            for status, description in extra.items():
                responses.setdefault(status, {"description": description})
            operation.pop("x-uses-database", None)
            for status, response in responses.items():
                if status == "422":
                    response["content"] = {"application/json": {"schema": VALIDATION_REF}}
                elif status[0] in "45" and "content" not in response:
                    response["content"] = {"application/json": {"schema": PROBLEM_REF}}
                if status == "401":
                    response["headers"] = {
                        "WWW-Authenticate": {
                            "description": "The scheme to authenticate with",
                            "schema": {"type": "string"},
                        }
                    }
    return document


async def method_not_allowed(request: Request, error: Exception) -> Response:
    """405 whose Allow header lists every method the document gives the path (Starlette's names
    only those of the first route on it, and /api/backfill has a GET and a POST route)."""
    if not isinstance(error, StarletteHTTPException) or error.status_code != 405:
        return await http_exception_handler(request, error)  # type: ignore[arg-type]
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        if re.fullmatch(re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)), request.url.path):
            methods |= {method.upper() for method in operations}
    allow = ", ".join(sorted(methods)) or (error.headers or {}).get("Allow", "")
    detail = f"{request.method} is not allowed here: use {allow}"
    return JSONResponse({"detail": detail}, status_code=405, headers={"Allow": allow})


def install(app: FastAPI) -> None:
    """Serve the completed document at /openapi.json, and answer database failures with 503."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(
                get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_exception_handler(StarletteHTTPException, method_not_allowed)
    for error in (OperationalError, InterfaceError, ProgrammingError):
        app.add_exception_handler(error, database_unavailable)


def _not_migrated(error: DBAPIError) -> bool:
    original = error.orig
    return getattr(original, "pgcode", None) in ("42P01", "42703") or "no such table" in str(original)


async def database_unavailable(_request: Request, error: Exception) -> JSONResponse:
    """503 with the reason for a database that is down or not migrated; any other programming
    error is a bug and stays one (re-raised: a 500 the logs show)."""
    assert isinstance(error, DBAPIError)
    if isinstance(error, ProgrammingError) and not _not_migrated(error):
        raise error
    if _not_migrated(error):
        reason = "the database is not migrated: run `switchboard migrate`"
    else:
        reason = f"the database is unavailable ({type(error.orig).__name__}): try again shortly"
    log.warning("answered 503: %s", reason)
    return JSONResponse({"detail": reason}, status_code=503)
