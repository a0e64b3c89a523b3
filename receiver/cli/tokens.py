"""`receiver tokens add|list|revoke`: the API's and the console's tokens kept in the database."""

from __future__ import annotations

import argparse
import asyncio
import sys

from receiver.api.auth import SCOPES
from receiver.api.tokens import TokenError, add_token, list_tokens, revoke_token
from receiver.cli.arguments import Commands
from receiver.cli.listing import add_json_flag, print_listing
from receiver.cli.replay import run_with_database
from receiver.db.engine import Pool
from receiver.settings import Settings


def tokens_add(args: argparse.Namespace) -> int:
    """Make a token and print it once, on a line of its own (only its digest is kept)."""

    async def add(pool: Pool, settings: Settings, stop: asyncio.Event) -> int:
        try:
            async with pool.acquire() as conn:
                token = await add_token(
                    conn,
                    args.name,
                    args.scope,
                    user_data_prefix=args.user_data_prefix,
                    senders=args.sender or (),
                )
        except TokenError as error:
            print(f"receiver tokens add: {error}", file=sys.stderr)
            return 2
        print(token)
        print(
            f"token {args.name!r} ({args.scope}) made: it is shown this once, keep it now",
            file=sys.stderr,
        )
        return 0

    return run_with_database(add, connections=1)


def tokens_list(args: argparse.Namespace) -> int:
    """The tokens kept: name, scope, created, last used (never the token)."""

    async def show(pool: Pool, settings: Settings, stop: asyncio.Event) -> int:
        async with pool.acquire() as conn:
            kept = await list_tokens(conn, revoked=args.revoked)
        rows = [
            {
                "name": token.name,
                "scope": token.scope,
                "created_at": token.created_at,
                "last_used_at": token.last_used_at,
                "revoked_at": token.revoked_at,
                "user_data_prefix": token.user_data_prefix,
                "senders": list(token.senders),
                "limits": _limits(token.user_data_prefix, token.senders) or None,
            }
            for token in kept
        ]
        print_listing(rows, _TOKEN_COLUMNS, as_json=args.json, nothing="no token kept")
        env = [name for name, on in _environment(settings) if on]
        if env:
            print(
                f"(and the tokens of {' and '.join(env)}, which are not listed)",
                file=sys.stderr if args.json else sys.stdout,
            )
        return 0

    return run_with_database(show, connections=1)


def tokens_revoke(args: argparse.Namespace) -> int:
    """Revoke a token: within seconds it opens nothing, its console sessions included."""

    async def revoke(pool: Pool, settings: Settings, stop: asyncio.Event) -> int:
        async with pool.acquire() as conn:
            revoked = await revoke_token(conn, args.name)
        if not revoked:
            print(f"receiver tokens revoke: no live token named {args.name!r}", file=sys.stderr)
            return 1
        print(f"token {args.name!r} revoked")
        return 0

    return run_with_database(revoke, connections=1)


def _environment(settings: Settings) -> list[tuple[str, bool]]:
    return [
        ("RECEIVER_API_TOKENS", bool(settings.api_tokens)),
        ("RECEIVER_ADMIN_TOKENS", bool(settings.admin_tokens)),
        ("RECEIVER_SEND_TOKENS", bool(settings.send_tokens)),
    ]


_TOKEN_COLUMNS = [
    ("name", "name"),
    ("scope", "scope"),
    ("created (UTC)", "created_at"),
    ("last used (UTC)", "last_used_at"),
    ("revoked (UTC)", "revoked_at"),
    ("limits", "limits"),
]


def _limits(prefix: str | None, senders: list[str]) -> str:
    said = [f"user_data {prefix!r}..."] if prefix else []
    if senders:
        said.append(f"from {', '.join(map(repr, senders))}")
    return "; ".join(said)


def add_token_commands(commands: Commands) -> None:
    tokens = commands.add_parser(
        "tokens", help="API and console tokens kept in the database (made, listed, revoked)"
    )
    sub = tokens.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="make a token and print it once")
    add.add_argument("--scope", required=True, choices=SCOPES, help="what it may do")
    add.add_argument("--name", required=True, help="how it is listed and revoked")
    add.add_argument(
        "--user-data-prefix",
        metavar="P",
        help="send tokens: every user_data starts with P (ending in a delimiter, such as"
        " 'teamA-'); it reads the sends P covers",
    )
    add.add_argument(
        "--sender",
        action="append",
        metavar="S",
        help="send tokens: the only sender (`from`) it may use; repeat for several",
    )
    add.set_defaults(run=tokens_add)
    listing = sub.add_parser("list", help="list the tokens (never the tokens themselves)")
    listing.add_argument("--revoked", action="store_true", help="the revoked ones too")
    add_json_flag(listing)
    listing.set_defaults(run=tokens_list)
    revoke = sub.add_parser("revoke", help="revoke a token: it opens nothing within seconds")
    revoke.add_argument("name")
    revoke.set_defaults(run=tokens_revoke)
