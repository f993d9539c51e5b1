"""The dashboard's ASGI app: ``create_app()`` builds it around one :class:`~jobbalancer.client.Client`.

Everything it reads and writes goes through the client, the same library API the CLI uses; the
routes live in :mod:`jobbalancer.web.jobs` and :mod:`jobbalancer.web.cluster`, the page in
``static/``, and :mod:`jobbalancer.web.guard` stands in front of all of it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from importlib import metadata, resources
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from jobbalancer.client import Client
from jobbalancer.errors import InvalidJob, InvalidSetting, JobStateError, NoSuchJob, RedisUnavailable
from jobbalancer.scripts_store import NoSuchScript
from jobbalancer.web import cluster, history, jobs, later, schedules, scripts
from jobbalancer.web.guard import PROTECTED, WRITE_METHODS, Guard, allowed_hosts
from jobbalancer.web.models import JOB_KINDS, ArgvJob, CallJob, CommandJob

log = logging.getLogger("jobbalancer.web")

STATIC = resources.files("jobbalancer.web") / "static"
# Words an InvalidJob message starts with, and the request field each one is about.
MESSAGE_FIELDS = {"function": "func", "arguments": "args", "call": "args", "spec": "command", "env": "env"}


def create_app(
    client_factory: Callable[[], Client] | None = None,
    *,
    url: str | None = None,
    prefix: str | None = None,
    token: str,
    hosts: Iterable[str] | None = None,
) -> FastAPI:
    """The dashboard and HTTP API as an ASGI app.

    Args:
        client_factory: makes the client every request uses; default ``Client(url, prefix)``.
        url: Redis URL (when no factory is given); defaults as for :class:`Client`.
        prefix: key prefix (when no factory is given); defaults as for :class:`Client`.
        token: the bearer token every ``/api`` and ``/metrics`` request must carry.
        hosts: Host header names to answer; default the loopback names (see ``guard.allowed_hosts``).

    Raises:
        RedisUnavailable: Redis does not answer.
    """
    client = client_factory() if client_factory is not None else Client(url, prefix)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        client.close()

    app = FastAPI(
        title="jobbalancer",
        version=_version(),
        summary="Submit, watch and steer jobs on a jobbalancer cluster.",
        docs_url=None,  # the interactive docs load their scripts from a CDN; the dashboard works offline
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.client = client
    app.include_router(jobs.router)
    app.include_router(cluster.router)
    app.include_router(scripts.router)
    app.include_router(schedules.router)
    app.include_router(history.router)
    app.mount("/static", StaticFiles(packages=[("jobbalancer.web", "static")]), name="static")
    index = (STATIC / "index.html").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(index, headers={"cache-control": "no-store"})

    _handle_errors(app)
    app.add_exception_handler(NoSuchScript, scripts.no_such_script)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.add_middleware(Guard, token=token, hosts=frozenset(hosts) if hosts is not None else allowed_hosts("127.0.0.1"))
    return app


def _version() -> str:
    try:
        return metadata.version("jobbalancer")
    except metadata.PackageNotFoundError:
        return "unknown"


def problem(status: int, detail: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "field": field}, status_code=status)


def _invalid_field(exc: InvalidJob) -> str | None:
    named: str | None = getattr(exc, "field", None)  # InvalidScript says which field it is about
    if named:
        return named
    first = str(exc).split(" ", 1)[0].strip("'\"")
    if any(first in model.model_fields for model in (CommandJob, ArgvJob, CallJob)) or first in ("cursor", "limit"):
        return first
    return MESSAGE_FIELDS.get(first) or later.field_of(str(exc))


def _handle_errors(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        error: dict[str, Any] = exc.errors()[0]
        if error.get("type") == "json_invalid":
            return problem(422, f"the body is not valid JSON: {error.get('ctx', {}).get('error', '')}")
        # The first part says where (body, query, path, header); a field may be called "body" too (a script's).
        loc = [str(part) for part in error.get("loc", ())][1:]
        if len(loc) > 1 and loc[0] in JOB_KINDS:  # the tag of the job shape (command or call) that was checked
            loc = loc[1:]
        field = loc[0] if loc else None
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        return problem(422, f"{'.'.join(loc)}: {message}" if loc else message, field)

    @app.exception_handler(InvalidJob)
    async def invalid_job(_request: Request, exc: InvalidJob) -> JSONResponse:
        return problem(422, str(exc), _invalid_field(exc))

    @app.exception_handler(InvalidSetting)
    async def invalid_setting(_request: Request, exc: InvalidSetting) -> JSONResponse:
        return problem(422, str(exc), getattr(exc, "field", None))

    @app.exception_handler(NoSuchJob)
    async def no_such_job(_request: Request, exc: NoSuchJob) -> JSONResponse:
        return problem(404, str(exc))

    @app.exception_handler(JobStateError)
    async def wrong_state(_request: Request, exc: JobStateError) -> JSONResponse:
        return problem(409, str(exc))

    @app.exception_handler(RedisUnavailable)
    async def no_redis(_request: Request, exc: RedisUnavailable) -> JSONResponse:
        return problem(503, str(exc))

    @app.exception_handler(redis.RedisError)
    async def redis_error(_request: Request, exc: redis.RedisError) -> JSONResponse:
        log.warning("Redis error serving a request: %s", exc)
        return problem(503, f"Redis: {exc}")


def _guard_answers(path: str, method: str) -> list[tuple[str, str]]:
    """The refusals the guard and the error handlers may give on any operation, for its documentation."""
    answers = [("400", "Unknown Host header."), ("503", "Redis did not answer or refused the command.")]
    if path.startswith(PROTECTED):
        answers.append(("401", "Missing or wrong bearer token."))
    if method.upper() in WRITE_METHODS:
        answers.append(("403", "A cross-origin write."))
    return answers


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "The token `jb web` printed."}
        }
        schema["security"] = [{"bearer": []}]
        for path, operations in schema["paths"].items():
            for method, operation in operations.items():
                for status, why in _guard_answers(path, method):
                    problem_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
                    operation["responses"].setdefault(status, {"description": why, "content": problem_ref})
        app.openapi_schema = schema
    return app.openapi_schema
