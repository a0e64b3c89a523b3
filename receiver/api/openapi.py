"""The OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json.

Generated: the schemas are the JSON schemas of the models in `receiver.api.models`
(the same models every answer goes out through and the sending routes read their
bodies with), the query parameters are the fields of each route's query model, and
the table below says which model each operation takes and answers with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from receiver.api import models as m

_REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Operation:
    """One method on one path: what it takes and what it answers."""

    method: str
    path: str
    summary: str
    answers: dict[int, tuple[type[BaseModel] | None, str]]
    query: type[m.Query] | None = None
    body: type[m.Body] | None = None
    path_params: dict[str, str] = field(default_factory=dict)
    headers: list[dict[str, Any]] = field(default_factory=list)
    admin: bool = False
    """A read token is 403: the change needs an admin token."""


_PAGE = "a page, newest first; `next_cursor` null on the last"

OPERATIONS = [
    Operation(
        "get",
        "/api/v1/messages",
        "Messages, newest status first",
        {200: (m.MessagePage, _PAGE)},
        query=m.MessagesQuery,
    ),
    Operation(
        "get",
        "/api/v1/messages/{sms_id}",
        "One message with its history, events and forwards",
        {200: (m.MessageDetail, "the message"), 404: (m.Error, "no such message")},
        path_params={"sms_id": "the SMS id, any case"},
    ),
    Operation(
        "put",
        "/api/v1/messages/{sms_id}",
        "Register an outbound SMS (a v2 send) and its user_data, before or after its first"
        " webhook: replies to it then route by that user_data",
        {
            201: (m.Registration, "registered (a new event)"),
            200: (m.Registration, "registered already, the same: nothing changed"),
            404: (m.Error, "not an SMS id"),
            409: (m.Error, "the message records another user_data, to or from"),
        },
        body=m.RegistrationRequest,
        path_params={"sms_id": "the SMS id CALLR gave (v2 sid, v1 hash), any case"},
        admin=True,
    ),
    Operation(
        "get",
        "/api/v1/events",
        "Stored events, newest first",
        {200: (m.EventPage, _PAGE)},
        query=m.EventsQuery,
    ),
    Operation(
        "get",
        "/api/v1/events/{event_id}",
        "One event, its raw body as received, and every distinct delivery",
        {200: (m.EventDetail, "the event"), 404: (m.Error, "no such event")},
        path_params={"event_id": "the event id"},
    ),
    Operation(
        "get",
        "/api/v1/forwards",
        "Forwards of replies and status changes to handlers, newest first",
        {200: (m.ForwardPage, _PAGE)},
        query=m.ForwardsQuery,
    ),
    Operation(
        "post",
        "/api/v1/forwards/{forward_id}/retry",
        "Send a dead (or delivered) forward again now, with a fresh set of attempts",
        {
            200: (m.RetriedForward, "queued"),
            404: (m.Error, "no such forward"),
            409: (m.Error, "pending, in flight, or without a handler"),
        },
        path_params={"forward_id": "forward id"},
        admin=True,
    ),
    Operation(
        "get",
        "/api/v1/stats",
        "Outcomes of outbound SMS created in the window (default: the last day; at most 366"
        " days, else 400)",
        {200: (m.Stats, "the figures")},
        query=m.StatsQuery,
    ),
    Operation(
        "get",
        "/api/v1/status",
        "How far behind the message records are (the projection's backlog), the schema and"
        " the release",
        {200: (m.ServiceStatus, "the status")},
    ),
    Operation(
        "get",
        "/api/v1/handlers",
        "The registered handlers",
        {200: (m.HandlerList, "the handlers")},
    ),
    Operation(
        "post",
        "/api/v1/handlers",
        "Register a handler (waiting forwards are routed to it)",
        {
            201: (m.NewHandlerAnswer, "registered"),
            409: (m.Error, "a handler for this user_data (or the default) exists"),
        },
        body=m.NewHandler,
        admin=True,
    ),
    Operation(
        "delete",
        "/api/v1/handlers/{handler_id}",
        "Remove a handler (its undelivered forwards are routed again)",
        {204: (None, "removed"), 404: (m.Error, "no such handler")},
        path_params={"handler_id": "handler id"},
        admin=True,
    ),
    Operation(
        "patch",
        "/api/v1/handlers/{handler_id}",
        "Change a handler in place (its id, user_data and forwards kept): its URL, secret,"
        " events, timeout and policy",
        {200: (m.Handler, "the handler as it is now"), 404: (m.Error, "no such handler")},
        path_params={"handler_id": "handler id"},
        body=m.HandlerChanges,
        admin=True,
    ),
    Operation(
        "post",
        "/api/v1/handlers/{handler_id}/rotate-secret",
        "A new signing secret; the old one signs beside it for ?overlap= seconds (a day)",
        {200: (m.RotatedSecret, "the new secret, shown once"), 404: (m.Error, "no such handler")},
        path_params={"handler_id": "handler id"},
        query=m.RotateQuery,
        admin=True,
    ),
    *(
        Operation(
            "post",
            f"/api/v1/handlers/{{handler_id}}/{action}",
            f"{action.capitalize()} a handler",
            {200: (m.Handler, "the handler"), 404: (m.Error, "no such handler")},
            path_params={"handler_id": "handler id"},
            admin=True,
        )
        for action in ("enable", "disable")
    ),
    Operation(
        "post",
        "/api/v1/sms/preview",
        "The parts and encoding a text takes, by CALLR's rules (nothing is sent); with"
        " ?quote=true, CALLR's sms.get_quote too",
        {
            200: (m.SmsPreview, "the preview"),
            502: (m.Error, "CALLR could not quote"),
        },
        query=m.PreviewQuery,
        body=m.SmsPreviewRequest,
    ),
    Operation(
        "post",
        "/api/v1/sms",
        "Send an SMS through the receiver: durable at the 202, never sent twice (a send or"
        " admin token)",
        {
            202: (m.Send, "durable: the sender takes it to CALLR"),
            200: (m.Send, "the send this key already names"),
            403: (m.Error, "a read token: sending needs a send or admin token"),
            409: (m.Error, "the key names a send of another request"),
            503: (m.Error, "sending is not configured"),
        },
        body=m.SendRequest,
        headers=[
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
                "description": "the same key and request: the same send, no second SMS",
            }
        ],
    ),
    Operation(
        "get",
        "/api/v1/sms/{send_id}",
        "A send through the receiver: its state, CALLR's id or refusal",
        {200: (m.Send, "the send"), 404: (m.Error, "no such send")},
        path_params={"send_id": "the send's id (snd_...)"},
    ),
    Operation(
        "post",
        "/api/v1/sms/{send_id}/settle",
        "Say what became of an unknown send",
        {
            200: (m.Send, "settled"),
            404: (m.Error, "no such send"),
            409: (m.Error, "the send is not unknown"),
        },
        body=m.Settle,
        path_params={"send_id": "the send's id (snd_...)"},
        admin=True,
    ),
]


def _schemas() -> dict[str, Any]:
    answers = {model for op in OPERATIONS for model, _ in op.answers.values() if model}
    bodies = {op.body for op in OPERATIONS if op.body is not None}
    queries = {op.query for op in OPERATIONS if op.query is not None}
    wanted: list[tuple[type[BaseModel], Any]] = [
        *((model, "serialization") for model in sorted(answers, key=lambda c: c.__name__)),
        (m.StatusCallback, "serialization"),
        *((model, "validation") for model in sorted(bodies | queries, key=lambda c: c.__name__)),
    ]
    _, top = models_json_schema(wanted, ref_template=_REF)
    schemas: dict[str, Any] = top["$defs"]
    return schemas


def _query_parameters(query: type[m.Query], schemas: dict[str, Any]) -> list[dict[str, Any]]:
    """Each field of a query model as an optional query parameter."""
    described = schemas[query.__name__]["properties"]
    parameters = []
    for name, info in query.model_fields.items():
        alias = info.alias or name
        schema = dict(described[alias])
        description = schema.pop("description", "")
        schema.pop("default", None)
        schema.pop("title", None)
        # A parameter is absent or has a value: the model's null is not one to send.
        options = schema.pop("anyOf", None)
        if options:
            schema.update(next(o for o in options if o.get("type") != "null"))
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


def _operation(op: Operation, schemas: dict[str, Any]) -> dict[str, Any]:
    parameters = [
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
    responses: dict[str, Any] = {}
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
    if op.admin:
        responses.setdefault(
            "403", {"description": "a read token: changes need an admin token", **error}
        )
    described: dict[str, Any] = {"summary": op.summary, "responses": responses}
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


def describe() -> dict[str, Any]:
    """The whole description, from the models and the operations."""
    schemas = _schemas()
    paths: dict[str, Any] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, schemas)
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
                            "description": "408, 429 and 5xx are retried with backoff; any"
                            " other answer makes the callback dead"
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


DESCRIPTION: dict[str, Any] = describe()
