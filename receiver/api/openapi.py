"""The OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from receiver.callr.sms import Status
from receiver.db.models import EventState, ForwardState


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


def _time(nullable: bool = True) -> dict[str, Any]:
    return (
        _nullable("string", format="date-time")
        if nullable
        else {
            "type": "string",
            "format": "date-time",
        }
    )


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _path(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": description,
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _page(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": _ref(item)},
            "next_cursor": _nullable("string", description="pass as `cursor` for the next page"),
        },
    }


_ERRORS = {
    "400": _json(_ref("Error"), "a parameter is wrong; `parameter` names it"),
    "401": _json(_ref("Error"), "no valid API token"),
}
_ADMIN = {"403": _json(_ref("Error"), "a read token: changes need an admin token")}
_SINCE = _query("since", {"type": "string", "format": "date-time"}, "from this time (inclusive)")
_UNTIL = _query("until", {"type": "string", "format": "date-time"}, "to this time (exclusive)")
_LIMIT = _query(
    "limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, "items per page"
)
_CURSOR = _query(
    "cursor", {"type": "string", "minLength": 1}, "the `next_cursor` of the previous page"
)
_STATUSES = [status.value for status in Status]

_STATUS_NAMES = {"type": "string", "enum": [status.value for status in Status]}

_SCHEMAS: dict[str, Any] = {
    "StatusCallback": {
        "type": "object",
        "description": "What a handler subscribed to status news receives, once per change"
        " of an SMS's current status, never backwards, in order per SMS. Headers:"
        " webhook-id (the callback_id, stable across retries), webhook-timestamp, and"
        " webhook-signature when the handler has a secret (Standard Webhooks).",
        "required": ["type", "callback_id", "user_data", "change", "sms"],
        "properties": {
            "type": {"const": "sms.status"},
            "callback_id": {"type": "string"},
            "user_data": _nullable("string", description="the SMS's user_data, which routed it"),
            "change": {
                "type": "object",
                "required": ["before", "after", "at"],
                "properties": {
                    "before": {**_STATUS_NAMES, "type": ["string", "null"]},
                    "after": _STATUS_NAMES,
                    "at": _time(False),
                },
            },
            "sms": {
                "type": "object",
                "required": ["id", "status", "history"],
                "properties": {
                    "id": {"type": "string"},
                    "to": _nullable("string"),
                    "from": _nullable("string"),
                    "user_data": _nullable("string"),
                    "status": _STATUS_NAMES,
                    "provider_status": _nullable("string"),
                    "status_at": _time(),
                    "error": _nullable("string"),
                    "parts": _nullable("integer"),
                    "cost": _nullable("string"),
                    "cost_cents": _nullable("string"),
                    "network": _nullable("string"),
                    "history": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["before", "after", "at"],
                            "properties": {
                                "before": _STATUS_NAMES,
                                "after": _STATUS_NAMES,
                                "at": _time(False),
                            },
                        },
                    },
                },
            },
        },
    },
    "SmsPreviewRequest": {
        "type": "object",
        "required": ["text"],
        "additionalProperties": False,
        "properties": {
            "text": {"type": "string", "minLength": 1, "maxLength": 3200},
            "encoding": {
                "type": "string",
                "enum": ["gsm", "unicode"],
                "description": "forced (CALLR's force_encoding); chosen from the text when absent",
            },
        },
    },
    "SendRequest": {
        "type": "object",
        "required": ["to", "text"],
        "additionalProperties": False,
        "properties": {
            "to": {"type": "string", "pattern": "^\\+[1-9][0-9]{6,14}$"},
            "text": {"type": "string", "minLength": 1, "maxLength": 3200},
            "from": _nullable("string", description="CALLR's sender rules"),
            "user_data": _nullable(
                "string",
                maxLength=255,
                description="replies route by it (a send token's PREFIX must start it)",
            ),
            "nature": {"type": ["string", "null"], "enum": ["alerting", "marketing", None]},
            "encoding": {"type": ["string", "null"], "enum": ["gsm", "unicode", None]},
        },
    },
    "Send": {
        "type": "object",
        "required": ["id", "state", "sms_id", "error", "attempts", "parts", "encoding"],
        "properties": {
            "id": {"type": "string"},
            "state": {
                "type": "string",
                "enum": ["queued", "submitted", "accepted", "rejected", "unknown"],
            },
            "sms_id": _nullable("string", description="CALLR's id, once accepted"),
            "error": _nullable("string", description="CALLR's reason, when rejected"),
            "reason": _nullable("string", description="why the last step was taken"),
            "attempts": {"type": "integer"},
            "to": {"type": "string"},
            "from": _nullable("string"),
            "text": {"type": "string"},
            "user_data": _nullable("string"),
            "nature": _nullable("string"),
            "encoding": {"type": "string", "enum": ["gsm", "unicode"]},
            "parts": {"type": "integer", "minimum": 1},
            "forced_unicode_by": {"type": "array", "items": {"type": "string"}},
            "replaced": {"type": "array", "items": {"type": "string"}},
            "api": {"type": "string", "enum": ["v1", "v2"]},
            "idempotency_key": _nullable("string"),
            "requested_at": _time(False),
            "attempted_at": _time(),
            "decided_at": _time(),
            "updated_at": _time(False),
            "next_at": _time(),
        },
    },
    "Settle": {
        "type": "object",
        "required": ["state"],
        "additionalProperties": False,
        "properties": {
            "state": {"type": "string", "enum": ["accepted", "rejected", "queued"]},
            "sms_id": {"type": "string", "description": "with accepted: CALLR's SMS id"},
            "error": {"type": "string", "maxLength": 1000},
        },
    },
    "SmsPreview": {
        "type": "object",
        "required": [
            "parts",
            "encoding",
            "characters",
            "units",
            "unit",
            "forced_unicode_by",
            "replaced",
        ],
        "properties": {
            "parts": {"type": "integer", "minimum": 1},
            "encoding": {"type": "string", "enum": ["gsm", "unicode"]},
            "characters": {"type": "integer"},
            "units": {"type": "integer", "description": "septets, or UTF-16 code units"},
            "unit": {"type": "string", "enum": ["septets", "UTF-16 code units"]},
            "forced_unicode_by": {
                "type": "array",
                "items": {"type": "string"},
                "description": "the characters GSM 03.38 lacks, which made the text unicode",
            },
            "replaced": {
                "type": "array",
                "items": {"type": "string"},
                "description": "with encoding gsm: the characters CALLR replaces",
            },
        },
    },
    "Status": {
        "type": "object",
        "required": ["projection", "schema", "version"],
        "properties": {
            "projection": {
                "type": "object",
                "required": ["pending", "lag_seconds", "oldest_pending_received_at"],
                "properties": {
                    "pending": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "stored events not yet applied to the message records",
                    },
                    "lag_seconds": {
                        "type": "number",
                        "minimum": 0,
                        "description": "how long the oldest pending event has waited",
                    },
                    "oldest_pending_received_at": _time(),
                },
            },
            "schema": {"type": "string", "description": "the database's schema revision"},
            "version": {"type": "string", "description": "this release of the receiver"},
        },
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "parameter": _nullable("string")},
    },
    "Registration": {
        "type": "object",
        "required": ["sms_id", "event_id", "registered"],
        "properties": {
            "sms_id": {"type": "string"},
            "event_id": {"type": "string", "description": "the registration's event"},
            "registered": {"type": "boolean", "description": "false: it was registered already"},
        },
    },
    "Message": {
        "type": "object",
        "required": ["id", "direction", "status", "status_at", "anomaly"],
        "properties": {
            "id": {"type": "string", "description": "the SMS id, lower case"},
            "direction": {"type": "string", "enum": ["outbound", "inbound"]},
            "from": _nullable("string"),
            "to": _nullable("string"),
            "text": _nullable("string"),
            "user_data": _nullable("string"),
            "status": {"type": "string", "enum": _STATUSES},
            "provider_status": {"type": "string", "description": "as CALLR spelled it"},
            "status_at": _time(False),
            "created_at": _time(),
            "sent_at": _time(),
            "delivered_at": _time(),
            "parts": _nullable("integer"),
            "cost": _nullable(
                "string",
                description="v1's b_customer_debit, a decimal as CALLR reported it (CALLR"
                " documents no unit)",
            ),
            "cost_cents": _nullable(
                "string", description="v2's cost, a decimal in cents as CALLR documents it"
            ),
            "network": _nullable("string", description="MCC+MNC"),
            "encoding": _nullable("string"),
            "nature": _nullable("string"),
            "error": _nullable("string"),
            "anomaly": {"type": "boolean", "description": "two terminal statuses were reported"},
        },
    },
    "HistoryStep": {
        "type": "object",
        "required": ["before", "after", "at", "derived", "event_id"],
        "properties": {
            "before": {"type": "string", "enum": _STATUSES},
            "after": {"type": "string", "enum": _STATUSES},
            "at": _time(False),
            "derived": {"type": "boolean", "description": "inferred, not reported"},
            "event_id": {"type": "string"},
            "reported_at": {
                **_time(True),
                "description": "when the event that reported the step (or, derived, the event"
                " it was inferred from) arrived",
            },
        },
    },
    "MessageEvent": {
        "type": "object",
        "required": ["event_id", "type", "received_at", "state", "tries"],
        "properties": {
            "event_id": {"type": "string"},
            "type": _nullable("string"),
            "received_at": _time(False),
            "state": {"type": "string", "enum": [s.value for s in EventState]},
            "tries": {"type": "array", "items": {"type": "integer"}},
        },
    },
    "Forward": {
        "type": "object",
        "required": ["id", "event_id", "sms_id", "rule", "state", "attempts", "created_at"],
        "properties": {
            "id": {"type": "integer"},
            "kind": {
                "type": "string",
                "enum": ["reply", "status"],
                "description": "an inbound SMS, or a change of an outbound SMS's status",
            },
            "event_id": {"type": "string"},
            "sms_id": {"type": "string"},
            "handler_id": _nullable("integer"),
            "rule": {"type": "string", "enum": ["user_data", "recent_mt", "default", "unrouted"]},
            "user_data": _nullable("string"),
            "mt_sms_id": _nullable("string"),
            "status_before": _nullable("string", description="a status change: from"),
            "status_after": _nullable("string", description="a status change: to"),
            "state": {"type": "string", "enum": [s.value for s in ForwardState]},
            "attempts": {"type": "integer"},
            "next_attempt_at": _time(),
            "created_at": _time(False),
            "delivered_at": _time(),
            "last_error": _nullable("string"),
        },
    },
    "MessageDetail": {
        "allOf": [
            _ref("Message"),
            {
                "type": "object",
                "required": ["history", "events", "forwards"],
                "properties": {
                    "history": {"type": "array", "items": _ref("HistoryStep")},
                    "events": {"type": "array", "items": _ref("MessageEvent")},
                    "forwards": {"type": "array", "items": _ref("Forward")},
                    "reconciliation": {
                        "type": ["object", "null"],
                        "description": "what `receiver callr reconcile` last learned of it",
                        "properties": {
                            "checks": {"type": "integer"},
                            "checked_at": _time(False),
                            "unknown": {
                                "type": "boolean",
                                "description": "CALLR does not know it (not asked again)",
                            },
                            "answer_status": _nullable("string"),
                        },
                    },
                },
            },
        ]
    },
    "Event": {
        "type": "object",
        "required": ["event_id", "received_at", "state"],
        "properties": {
            "event_id": {"type": "string"},
            "type": _nullable("string"),
            "emitted_at": _time(),
            "received_at": _time(False),
            "state": {"type": "string", "enum": [s.value for s in EventState]},
            "reason": _nullable("string"),
            "sms_id": _nullable("string"),
        },
    },
    "Delivery": {
        "type": "object",
        "required": ["try", "received_at", "headers", "conflict"],
        "properties": {
            "try": _nullable("integer"),
            "received_at": _time(False),
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "conflict": {"type": "boolean"},
            "subscription": _nullable("string"),
            "remote_addr": _nullable("string"),
            "body": _nullable("string", description="a conflicting delivery's own body"),
            "body_base64": {"type": "string"},
        },
    },
    "EventDetail": {
        "allOf": [
            _ref("Event"),
            {
                "type": "object",
                "required": ["body_base64", "deliveries"],
                "properties": {
                    "subscription": _nullable("string"),
                    "body": _nullable("string", description="the raw body, when it is UTF-8"),
                    "body_base64": {"type": "string", "description": "the raw body, always"},
                    "deliveries": {"type": "array", "items": _ref("Delivery")},
                },
            },
        ]
    },
    "Handler": {
        "type": "object",
        "required": ["id", "default", "url", "signed", "timeout", "enabled", "created_at"],
        "properties": {
            "id": {"type": "integer"},
            "user_data": _nullable("string", description="a final * matches a prefix"),
            "default": {"type": "boolean"},
            "url": {"type": "string"},
            "signed": {"type": "boolean"},
            "timeout": {"type": "number"},
            "enabled": {"type": "boolean"},
            "created_at": _time(False),
            "events": {
                "type": "array",
                "items": {"type": "string", "enum": ["replies", "status"]},
                "description": "the news it gets",
            },
            "status_filter": _nullable(
                "string", description="with status: all changes, or terminal ones only"
            ),
        },
    },
    "NewHandler": {
        "type": "object",
        "required": ["url"],
        "additionalProperties": False,
        "properties": {
            "user_data": {
                "type": "string",
                "description": "a value, or a prefix ending in '*'",
                # Something besides the final '*', and no NUL.
                "pattern": "^[^\\u0000]*[^*\\u0000][^\\u0000]*$",
            },
            "default": {"type": "boolean"},
            "events": {
                "type": "array",
                "items": {"type": "string", "enum": ["replies", "status"]},
                "minItems": 1,
                "uniqueItems": True,
                "description": "replies (the default): the inbound SMS routed to it; status:"
                " each change of the status of an outbound SMS sent with its user_data",
            },
            "status_filter": {
                "type": "string",
                "enum": ["all", "terminal"],
                "description": "with status: every change (all) or only to delivered,"
                " failed, expired or error (terminal)",
            },
            "url": {
                "type": "string",
                "format": "uri",
                # No whitespace or control character, as the API checks.
                "pattern": "^https?://[^/?#\\s\\u0000-\\u001f\\u007f-\\u009f]"
                "[^\\s\\u0000-\\u001f\\u007f-\\u009f]*$",
            },
            "secret": {
                "type": ["string", "null"],
                "description": "whsec_ followed by base64 of at least 24 bytes",
                "pattern": "^(whsec_)?([A-Za-z0-9+/]{4}){8,}"
                "([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
            },
            "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 300},
        },
        # Either a user_data value or the default handler, never both or neither.
        "oneOf": [
            {"required": ["user_data"], "properties": {"default": {"const": False}}},
            {
                "required": ["default"],
                "properties": {"default": {"const": True}},
                "not": {"required": ["user_data"]},
            },
        ],
    },
    "Outcomes": {
        "type": "object",
        "required": ["key", "total", "by_status", "delivery_rate", "latency_seconds", "anomalies"],
        "properties": {
            "key": {"description": "the group's value (network, user_data, hour or day)"},
            "total": {"type": "integer"},
            "by_status": {"type": "object", "additionalProperties": {"type": "integer"}},
            "delivery_rate": _nullable("number", description="delivered / all terminal"),
            "latency_seconds": {
                "type": ["object", "null"],
                "properties": {k: {"type": "number"} for k in ("p50", "p90", "p99")},
                "description": "from sent to delivered",
            },
            "anomalies": {"type": "integer"},
        },
    },
    "Stats": {
        "type": "object",
        "required": ["since", "until", "mo_received", "forwards", "deliveries", "anomalies"],
        "properties": {
            "since": _time(False),
            "until": _time(False),
            "outbound": _ref("Outcomes"),
            "group_by": {"type": "string"},
            "groups": {"type": "array", "items": _ref("Outcomes")},
            "mo_received": {"type": "integer"},
            "forwards": {"type": "object", "additionalProperties": {"type": "integer"}},
            "deliveries": {"type": "object", "additionalProperties": {"type": "integer"}},
            "anomalies": {"type": "integer"},
        },
    },
}


def _get(summary: str, parameters: list[dict[str, Any]], ok: dict[str, Any]) -> dict[str, Any]:
    return {
        "get": {"summary": summary, "parameters": parameters, "responses": {"200": ok, **_ERRORS}}
    }


_PATHS: dict[str, Any] = {
    "/api/v1/messages": _get(
        "Messages, newest status first",
        [
            _query("direction", {"type": "string", "enum": ["outbound", "inbound"]}, ""),
            _query("status", {"type": "string", "enum": _STATUSES}, "repeatable"),
            _query("user_data", {"type": "string"}, ""),
            _query("from", {"type": "string"}, ""),
            _query("to", {"type": "string"}, ""),
            _query(
                "number",
                {"type": "string", "pattern": "^[+ ]?[0-9 ().-]{1,40}$"},
                "a phone number or its start, sent from or to (not with from or to)",
            ),
            _query("network", {"type": "string"}, "MCC+MNC"),
            _SINCE,
            _UNTIL,
            _LIMIT,
            _CURSOR,
        ],
        _json(_page("Message"), "a page of messages"),
    ),
    "/api/v1/messages/{sms_id}": {
        "get": {
            "summary": "One message with its history, events and forwards",
            "parameters": [_path("sms_id", "the SMS id, any case")],
            "responses": {
                "200": _json(_ref("MessageDetail"), "the message"),
                "404": _json(_ref("Error"), "no such message"),
                **_ERRORS,
            },
        },
        "put": {
            "summary": "Register an outbound SMS (a v2 send) and its user_data, before or after"
            " its first webhook: replies to it then route by that user_data",
            "parameters": [_path("sms_id", "the SMS id CALLR gave (v2 sid, v1 hash), any case")],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["user_data", "to"],
                            "additionalProperties": False,
                            "properties": {
                                "user_data": {"type": "string", "minLength": 1, "maxLength": 256},
                                "to": {"type": "string", "minLength": 1, "maxLength": 256},
                                "from": _nullable("string", maxLength=256),
                                "created_at": {
                                    "type": "string",
                                    "format": "date-time",
                                    "description": "when it was sent (default: now)",
                                },
                            },
                        }
                    }
                },
            },
            "responses": {
                "201": _json(_ref("Registration"), "registered (a new event)"),
                "200": _json(_ref("Registration"), "registered already, the same: nothing changed"),
                "404": _json(_ref("Error"), "not an SMS id"),
                "409": _json(_ref("Error"), "the message records another user_data, to or from"),
                **_ERRORS,
                **_ADMIN,
            },
        },
    },
    "/api/v1/events": _get(
        "Stored events, newest first",
        [
            _query("type", {"type": "string"}, "event type"),
            _query("state", {"type": "string", "enum": [s.value for s in EventState]}, ""),
            _SINCE,
            _UNTIL,
            _LIMIT,
            _CURSOR,
        ],
        _json(_page("Event"), "a page of events"),
    ),
    "/api/v1/events/{event_id}": {
        "get": {
            "summary": "One event, its raw body as received, and every distinct delivery",
            "parameters": [_path("event_id", "the event id")],
            "responses": {
                "200": _json(_ref("EventDetail"), "the event"),
                "404": _json(_ref("Error"), "no such event"),
                **_ERRORS,
            },
        }
    },
    "/api/v1/forwards": _get(
        "Forwards of replies to handlers, newest first",
        [
            _query("state", {"type": "string", "enum": [s.value for s in ForwardState]}, ""),
            _query("handler", {"type": "integer", "minimum": 0}, "handler id"),
            _SINCE,
            _UNTIL,
            _LIMIT,
            _CURSOR,
        ],
        _json(_page("Forward"), "a page of forwards"),
    ),
    "/api/v1/stats": _get(
        "Outcomes of outbound SMS created in the window (default: the last day; at most 366"
        " days, else 400)",
        [
            _SINCE,
            _UNTIL,
            _query(
                "group_by", {"type": "string", "enum": ["network", "user_data", "hour", "day"]}, ""
            ),
        ],
        _json(_ref("Stats"), "the figures"),
    ),
    "/api/v1/status": _get(
        "How far behind the message records are (the projection's backlog), the schema and"
        " the release",
        [],
        _json(_ref("Status"), "the status"),
    ),
    "/api/v1/sms": {
        "post": {
            "summary": "Send an SMS through the receiver: durable at the 202, never sent twice",
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "maxLength": 255},
                    "description": "the same key and request: the same send, no second SMS",
                }
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("SendRequest")}},
            },
            "responses": {
                "202": _json(_ref("Send"), "durable: the sender takes it to CALLR"),
                "200": _json(_ref("Send"), "the send this key already names"),
                "403": _json(_ref("Error"), "a read token: sending needs a send or admin token"),
                "409": _json(_ref("Error"), "the key names a send of another request"),
                "503": _json(_ref("Error"), "sending is not configured"),
                **_ERRORS,
            },
        },
    },
    "/api/v1/sms/{send_id}": {
        "get": {
            "summary": "A send through the receiver: its state, CALLR's id or refusal",
            "parameters": [_path("send_id", "the send's id (snd_...)")],
            "responses": {
                "200": _json(_ref("Send"), "the send"),
                "404": _json(_ref("Error"), "no such send"),
                "401": _ERRORS["401"],
            },
        },
    },
    "/api/v1/sms/{send_id}/settle": {
        "post": {
            "summary": "Say what became of an unknown send (admin)",
            "parameters": [_path("send_id", "the send's id (snd_...)")],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("Settle")}},
            },
            "responses": {
                "200": _json(_ref("Send"), "settled"),
                "404": _json(_ref("Error"), "no such send"),
                "409": _json(_ref("Error"), "the send is not unknown"),
                **_ERRORS,
                **_ADMIN,
            },
        },
    },
    "/api/v1/sms/preview": {
        "post": {
            "summary": "The parts and encoding a text takes, by CALLR's rules (nothing is sent)",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("SmsPreviewRequest")}},
            },
            "responses": {"200": _json(_ref("SmsPreview"), "the preview"), **_ERRORS},
        },
    },
    "/api/v1/handlers": {
        "get": {
            "summary": "The registered handlers",
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {"items": {"type": "array", "items": _ref("Handler")}},
                    },
                    "the handlers",
                ),
                "401": _ERRORS["401"],
            },
        },
        "post": {
            "summary": "Register a handler (waiting forwards are routed to it)",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("NewHandler")}},
            },
            "responses": {
                "201": _json(_ref("Handler"), "registered"),
                "409": _json(_ref("Error"), "a handler for this user_data (or the default) exists"),
                **_ERRORS,
                **_ADMIN,
            },
        },
    },
    "/api/v1/handlers/{handler_id}": {
        "delete": {
            "summary": "Remove a handler (its undelivered forwards are routed again)",
            "parameters": [_path("handler_id", "handler id")],
            "responses": {
                "204": {"description": "removed"},
                "404": _json(_ref("Error"), "no such handler"),
                "401": _ERRORS["401"],
                **_ADMIN,
            },
        }
    },
    "/api/v1/forwards/{forward_id}/retry": {
        "post": {
            "summary": "Send a dead (or delivered) forward again now, with a fresh set of attempts",
            "parameters": [_path("forward_id", "forward id")],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {"id": {"type": "integer"}, "state": {"type": "string"}},
                    },
                    "queued",
                ),
                "404": _json(_ref("Error"), "no such forward"),
                "409": _json(_ref("Error"), "pending, in flight, or without a handler"),
                "401": _ERRORS["401"],
                **_ADMIN,
            },
        }
    },
    **{
        f"/api/v1/handlers/{{handler_id}}/{action}": {
            "post": {
                "summary": f"{action.capitalize()} a handler",
                "parameters": [_path("handler_id", "handler id")],
                "responses": {
                    "200": _json(_ref("Handler"), "the handler"),
                    "404": _json(_ref("Error"), "no such handler"),
                    "401": _ERRORS["401"],
                    **_ADMIN,
                },
            }
        }
        for action in ("enable", "disable")
    },
}

DESCRIPTION: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "receiver",
        "version": version("receiver"),
        "description": "What happened to the SMS sent through CALLR, for internal dashboards;"
        " and sending SMS through the receiver.",
    },
    "security": [{"bearer": []}],
    "paths": _PATHS,
    # What the receiver posts to the handlers that subscribed to status news.
    "webhooks": {
        "smsStatus": {
            "post": {
                "summary": "A change of an outbound SMS's status, to the team that sent it",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("StatusCallback")}},
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
        "schemas": _SCHEMAS,
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
}
