"""The web console under `/console`: server-rendered pages over the API's own reads.

For support (find an SMS, see what happened to it), handler owners (replies, their
attempts, send a dead one again) and on-call (traffic, refusals, backlog, failing
handlers). Signed in with a read or admin token; changes need an admin token.
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from receiver.api.auth import Tokens
from receiver.api.params import Cursors
from receiver.api.queries import Queries
from receiver.console.mask import Mask
from receiver.console.reads import TrafficCounts
from receiver.console.sends import SendPages
from receiver.console.session import Sessions
from receiver.console.signin import SignIn
from receiver.console.tokens import TokenPages
from receiver.console.views import Console
from receiver.ingest.recent import MinuteCounts
from receiver.settings import Settings


def console_routes(settings: Settings, tokens: Tokens, refusals: MinuteCounts) -> list[BaseRoute]:
    """Every route of the console; its pages share the API's cursors, so links carry over.

    `refusals` are the webhook endpoint's refused requests per minute.
    """
    console = Console(
        Sessions(tokens, hours=settings.console_session_hours),
        Queries(Cursors(lambda: tokens.secret("receiver-cursors")), region=settings.default_region),
        Mask(settings.console_mask),
        TrafficCounts(refusals),
    )
    page, action = console.page, console.action
    tokens_page = TokenPages(console)
    sends_page = SendPages(console)
    signing = SignIn(console, tokens.throttle)
    return [
        Route("/console", page(console.overview), methods=["GET"]),
        Route("/console/login", signing.login_page, methods=["GET"]),
        Route("/console/login", signing.login, methods=["POST"]),
        Route("/console/logout", action(signing.logout, admin=False), methods=["POST"]),
        Route("/console/logout-everywhere", action(signing.logout_everywhere), methods=["POST"]),
        Route("/console/messages", page(console.messages), methods=["GET"]),
        Route("/console/messages/export", page(console.export), methods=["GET"]),
        Route("/console/messages/{sms_id:path}", page(console.message), methods=["GET"]),
        Route("/console/events", page(console.events), methods=["GET"]),
        Route("/console/events/{event_id:path}", page(console.event), methods=["GET"]),
        Route("/console/forwards", page(console.forwards), methods=["GET"]),
        Route("/console/forwards/retry", action(console.retry), methods=["POST"]),
        Route("/console/handlers", page(console.handlers), methods=["GET"]),
        Route("/console/handlers", action(console.add_handler), methods=["POST"]),
        Route(
            "/console/handlers/{handler_id}/{change}",
            action(console.change_handler),
            methods=["POST"],
        ),
        Route("/console/tokens", page(tokens_page.page), methods=["GET"]),
        Route("/console/tokens", action(tokens_page.add), methods=["POST"]),
        Route("/console/tokens/{name}/revoke", action(tokens_page.revoke), methods=["POST"]),
        Route("/console/sends", page(sends_page.list), methods=["GET"]),
        Route("/console/sends/{send_id}", page(sends_page.page), methods=["GET"]),
        Route("/console/sends/{send_id}/settle", action(sends_page.settle), methods=["POST"]),
        Mount(
            "/console/static",
            StaticFiles(directory=Path(__file__).parent / "static"),
            name="console-static",
        ),
    ]
