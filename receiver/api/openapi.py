"""The OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json.

Generated from what the app serves: each `ApiRoute` carries its operations (what each
method takes and answers, and the scope of token it needs), written beside the route
(receiver/api/routes.py, handlers.py); the schemas are the JSON schemas of the models
in `receiver.api.models`, which read every body and query and check every answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import version

from pydantic import BaseModel
from pydantic.config import JsonDict
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from receiver.api import models as m
from receiver.api.auth import ADMIN, READ, SEND, Endpoint, Scope, Tokens

_REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Operation:
    """One method of a route: what it takes, what it answers, who may call it."""

    method: str
    summary: str
    answers: dict[int, tuple[type[BaseModel] | None, str]]
    query: type[m.Query] | None = None
    body: type[m.Body] | None = None
    path_params: dict[str, str] = field(default_factory=dict)
    headers: list[JsonDict] = field(default_factory=list)
    scope: Scope | None = READ
    """The token it needs: read (any token may read), send, admin; None: any scope."""


class ApiRoute(Route):
    """A path of /api/v1 and its operations, each method's endpoint behind the token
    its operation names: what is served and what is described are one list."""

    def __init__(self, path: str, tokens: Tokens, *served: tuple[Operation, Endpoint]) -> None:
        self.operations = [operation for operation, _ in served]
        by_method = {
            operation.method.upper(): tokens.guard(endpoint, operation.scope)
            for operation, endpoint in served
        }

        if "GET" in by_method:
            # Starlette serves HEAD wherever GET is: the same endpoint answers it.
            by_method["HEAD"] = by_method["GET"]

        async def dispatch(request: Request) -> Response:
            return await by_method[request.method](request)

        # Starlette answers 405 for the other methods, naming these.
        super().__init__(path, dispatch, methods=list(by_method))

    @property
    def described_path(self) -> str:
        """The path as OpenAPI writes it: `{sms_id}` for Starlette's `{sms_id:path}`."""
        return re.sub(r":\w+\}", "}", self.path)


def _schemas(operations: list[Operation]) -> dict[str, JsonDict]:
    answers = {model for op in operations for model, _ in op.answers.values() if model}
    bodies = {op.body for op in operations if op.body is not None}
    queries = {op.query for op in operations if op.query is not None}
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        *((model, "serialization") for model in sorted(answers, key=lambda c: c.__name__)),
        (m.StatusCallback, "serialization"),
        *((model, "validation") for model in sorted(bodies | queries, key=lambda c: c.__name__)),
    ]
    _, top = models_json_schema(wanted, ref_template=_REF)
    return {name: _object(schema) for name, schema in _object(top["$defs"]).items()}


def _object(value: object) -> JsonDict:
    """`value`, a JSON schema's object (pydantic writes them: this is its shape)."""
    assert isinstance(value, dict)
    return value


def _query_parameters(query: type[m.Query], schemas: dict[str, JsonDict]) -> list[JsonDict]:
    """Each field of a query model as an optional query parameter."""
    described = _object(schemas[query.__name__]["properties"])
    parameters: list[JsonDict] = []
    for name, info in query.model_fields.items():
        alias = info.alias or name
        schema = dict(_object(described[alias]))
        description = schema.pop("description", "")
        if schema.get("default") in (None, []):
            schema.pop("default", None)
        schema.pop("title", None)
        # A parameter is absent or has a value: the model's null is not one to send.
        options = schema.pop("anyOf", None)
        if isinstance(options, list):
            schema.update(next(o for o in map(_object, options) if o.get("type") != "null"))
        parameters.append(
            {
                "name": alias,
                "in": "query",
                "required": False,
                "schema": schema,
                "description": description,
            }
        )
    return parameters


_FORBIDDEN = {
    ADMIN: "a read or send token: changes need an admin token",
    SEND: "a read token: sending needs a send or admin token",
}


def _operation(op: Operation, schemas: dict[str, JsonDict]) -> dict[str, object]:
    parameters: list[JsonDict] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            "description": d,
        }
        for name, d in op.path_params.items()
    ]
    parameters += op.headers
    if op.query is not None:
        parameters += _query_parameters(op.query, schemas)
    responses: dict[str, object] = {}
    for code, (model, description) in op.answers.items():
        responses[str(code)] = (
            {"description": description}
            if model is None
            else {
                "description": description,
                "content": {
                    "application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}}
                },
            }
        )
    error = {"content": {"application/json": {"schema": {"$ref": _REF.format(model="Error")}}}}
    if op.body is not None or op.query is not None:
        responses.setdefault(
            "400", {"description": "a parameter is wrong; `parameter` names it", **error}
        )
    responses.setdefault("401", {"description": "no valid API token", **error})
    if op.scope in _FORBIDDEN:
        responses.setdefault("403", {"description": _FORBIDDEN[op.scope], **error})
    described: dict[str, object] = {"summary": op.summary, "responses": responses}
    if parameters:
        described["parameters"] = parameters
    if op.body is not None:
        described["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": _REF.format(model=op.body.__name__)}}
            },
        }
    return described


def describe(routes: Iterable[BaseRoute]) -> dict[str, object]:
    """The whole description of the `ApiRoute`s among `routes`."""
    api = [route for route in routes if isinstance(route, ApiRoute)]
    schemas = _schemas([op for route in api for op in route.operations])
    paths: dict[str, dict[str, object]] = {}
    for route in api:
        for op in route.operations:
            paths.setdefault(route.described_path, {})[op.method] = _operation(op, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "receiver",
            "version": version("receiver"),
            "description": "What happened to the SMS sent through CALLR, for internal"
            " dashboards; and sending SMS through the receiver.",
        },
        "security": [{"bearer": []}],
        "paths": paths,
        # What the receiver posts to the handlers that subscribed to status news.
        "webhooks": {
            "smsStatus": {
                "post": {
                    "summary": "A change of an outbound SMS's status, to the team that sent it",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": _REF.format(model="StatusCallback")}
                            }
                        },
                    },
                    "responses": {
                        "2XX": {"description": "done"},
                        "default": {
                            "description": "any other answer is retried on the handler's"
                            " schedule; 410 disables the handler (its callbacks wait); a status"
                            " named in the handler's final_statuses ends the callback"
                        },
                    },
                }
            }
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
