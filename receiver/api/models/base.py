"""What every model of the contract is made of: answers (checked on the way out), bodies
(strict, a 400 naming the field), errors; the enums' names; and the functions that send
an answer and read a body through its model."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
)
from starlette.requests import Request
from starlette.responses import Response

from receiver.callr.sends import SendState
from receiver.db.models import EventState, ForwardState
from receiver.http import JSONResponse, error_response
from receiver.status import Status

# The enums' own values: a status, an event's or forward's state, a send's state.
StatusName = Status
EventStateName = EventState
ForwardStateName = ForwardState
SendStateName = SendState


class Answer(BaseModel):
    """An answer of the API: every field declared, nothing else."""

    model_config = ConfigDict(extra="forbid")


class Body(BaseModel):
    """A request body: an unknown field, or a value of another JSON type, is a 400 naming it.

    Strict: JSON's types as they are (no "true" for true, no "10" for 10). The rules
    beyond the shape (a URL's scheme, a secret's form, a number's range) are the
    route's own, with their own messages; the description shows them as well.
    """

    model_config = ConfigDict(extra="forbid", strict=True)


class Error(Answer):
    error: str
    parameter: str | None = None
    model_config = ConfigDict(extra="allow")  # some errors name the object (`id`, `sms_id`)


# ------------------------------------------------------------------- answers


def answer(model: type[Answer], data: Any, status_code: int = 200, **headers: str) -> JSONResponse:
    """`data` sent as the route's `model` says: checked against it, dumped by its aliases."""
    checked = model.model_validate(data)
    return JSONResponse(
        checked.model_dump(by_alias=True, exclude_unset=False),
        status_code=status_code,
        headers=headers or None,
    )


B = TypeVar("B", bound="Body")


async def read_body(model: type[B], request: Request) -> B | Response:
    """The request's JSON body read by `model`, or the 400 that says what is wrong."""
    try:
        document = orjson.loads(await request.body())
    except orjson.JSONDecodeError as error:
        return error_response(400, f"body is not valid JSON: {error}")
    try:
        return model.model_validate(document)
    except ValidationError as error:
        parameter, message = first_problem(error)
        return error_response(400, message, parameter=parameter)


def first_problem(error: ValidationError) -> tuple[str | None, str]:
    """(the field, what is wrong with it) of a body a model refused: its first error."""
    problem = error.errors(include_url=False)[0]
    location = [str(part) for part in problem["loc"]]
    field = location[0] if location else None
    kind = problem["type"]
    if kind == "extra_forbidden":
        return field, f"unknown field(s): {field}"
    if kind == "missing":
        return field, f"{field} is required"
    if kind == "model_type" or field is None:
        return None, "body must be a JSON object"
    where = ".".join(location)
    return field, f"{where}: {problem['msg']}"
