"""``/api/scripts``: named scripts to list, read, save and delete; ``POST /api/jobs`` with ``script`` runs one.

The checks are the store's (:mod:`jobbalancer.scripts_store`); the models here only describe the
shapes for the OpenAPI document, with the store's own patterns.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from jobbalancer.scripts_store import DESCRIPTION_LIMIT, LANGUAGES, NAME_PATTERN, PARAM_PATTERN, PARAMS_LIMIT
from jobbalancer.web.jobs import ClientDep
from jobbalancer.web.models import NO_NUL, Problem

router = APIRouter(prefix="/api/scripts", tags=["scripts"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "No script with that name."}}
INVALID: dict[int | str, dict[str, Any]] = {422: {"model": Problem, "description": "Invalid input; names the field."}}
Name = Annotated[str, Path(pattern=NAME_PATTERN.pattern, description="The script's name.")]
BODY = r"^[^\x00]*\S[^\x00]*$"


class ParamSpec(BaseModel):
    """A declared parameter. Its value comes from the run, else ``default``; a ``required`` one must be given,
    another one left out is the empty string. The script gets it as an argument (in declared order)
    and as ``JB_PARAM_<NAME>``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=PARAM_PATTERN.pattern, description="A letter or '_', then letters, digits, '_'.")
    default: str | None = Field(None, pattern=NO_NUL)
    required: bool = False
    description: str = Field("", max_length=DESCRIPTION_LIMIT)


class ScriptIn(BaseModel):
    """A script to save under the path's name; it replaces any script of that name."""

    model_config = ConfigDict(extra="forbid")

    language: str = Field(
        pattern=f"^({'|'.join(LANGUAGES)})$", description="sh, bash, python (run by python3) or node."
    )
    body: str = Field(pattern=BODY, description="The script (not only blanks); at most spec_limit bytes.")
    params: list[ParamSpec] = Field(default_factory=list, max_length=PARAMS_LIMIT)


class ScriptOut(ScriptIn):
    """A stored script."""

    model_config = ConfigDict(extra="forbid")

    name: str
    updated: float | None = Field(description="When it was last saved, epoch seconds (Redis's clock).")


async def no_such_script(_request: Request, exc: Exception) -> JSONResponse:
    """404 for an unknown script, here and on ``POST /api/jobs``."""
    return JSONResponse({"detail": str(exc), "field": None}, status_code=404)


@router.get("", response_model=list[ScriptOut])
def list_scripts(client: ClientDep) -> Any:
    """Every named script, by name."""
    return [script.to_dict() for script in client.named_scripts.all()]


@router.get("/{name}", response_model=ScriptOut, responses={**NOT_FOUND, **INVALID})
def get_script(name: Name, client: ClientDep) -> Any:
    """One script."""
    return client.named_scripts.get(name).to_dict()


@router.put("/{name}", response_model=ScriptOut, responses=INVALID)
def put_script(name: Name, body: ScriptIn, client: ClientDep) -> Any:
    """Create or replace a script; jobs already submitted from it keep what they were given."""
    params = [param.model_dump() for param in body.params]
    return client.named_scripts.save(name, body.language, body.body, params).to_dict()


@router.delete("/{name}", status_code=204, response_class=Response, responses={**NOT_FOUND, **INVALID})
def delete_script(name: Name, client: ClientDep) -> Response:
    """Delete a script; jobs already submitted from it are not touched."""
    client.named_scripts.delete(name)
    return Response(status_code=204)
