"""The `receiver` command: one subcommand per operation."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib.metadata import version

from receiver.cli.arguments import whole
from receiver.cli.backup import add_backup_commands
from receiver.cli.callr import add_callr_commands
from receiver.cli.database import DatabaseNotReady
from receiver.cli.forwarding import add_handler_commands
from receiver.cli.forwards import add_forward_commands
from receiver.cli.replay import add_replay_commands
from receiver.cli.send import add_send_command, add_sends_commands
from receiver.cli.service import run_migrations, serve, worker
from receiver.cli.simulate import add_simulate_command
from receiver.cli.tokens import add_token_commands
from receiver.settings import SettingsError


def build_parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per operation."""
    parser = argparse.ArgumentParser(
        prog="receiver",
        description="Receive CALLR SMS webhooks durably. Settings come from RECEIVER_* variables.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('receiver')}")
    commands = parser.add_subparsers(title="commands", dest="command", required=True)

    serve_parser = commands.add_parser("serve", help="run the webhook service")
    serve_parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve_parser.add_argument(
        "--port", type=whole(1, 65535), default=8000, help="port to listen on"
    )
    serve_parser.add_argument(
        "--workers", type=whole(1, 64), default=1, help="uvicorn worker processes"
    )
    serve_parser.add_argument(
        "--migrate",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="apply migrations before serving (always done for the embedded database)",
    )
    serve_parser.add_argument(
        "--forwarded-allow-ips",
        default=None,
        help="proxies whose X-Forwarded-For / -Proto headers are believed, comma-separated"
        " (default: RECEIVER_TRUSTED_PROXIES, which is none)",
    )
    serve_parser.add_argument(
        "--graceful-timeout",
        type=whole(0, 3600),
        default=30,
        help="seconds to finish in-flight requests on SIGTERM",
    )
    serve_parser.add_argument(
        "--max-connections",
        type=whole(1, 1_000_000),
        default=2000,
        help="open connections a process keeps; past it a new one is closed at once",
    )
    serve_parser.add_argument(
        "--keep-alive",
        type=whole(1, 3600),
        default=5,
        help="seconds an idle connection (one that sent nothing yet, too) stays open",
    )
    serve_parser.set_defaults(run=serve)

    migrate_parser = commands.add_parser("migrate", help="apply the database migrations")
    migrate_parser.set_defaults(run=run_migrations)

    worker_parser = commands.add_parser(
        "worker", help="run the projector, the forward dispatcher and the sender, without HTTP"
    )
    worker_parser.set_defaults(run=worker)

    add_handler_commands(commands)
    add_forward_commands(commands)
    add_replay_commands(commands)
    add_simulate_command(commands)
    add_callr_commands(commands)
    add_token_commands(commands)
    add_send_command(commands)
    add_sends_commands(commands)
    add_backup_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `receiver` command."""
    args = build_parser().parse_args(argv)
    try:
        result: int = args.run(args)
        # What is still buffered goes out here, where a closed pipe is caught below.
        sys.stdout.flush()
    except SettingsError as error:
        print(f"receiver: {error}", file=sys.stderr)
        return 2
    except DatabaseNotReady as error:
        print(f"receiver: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # Its reader went away (`receiver forwards list | head`): nothing more to say, and
        # nothing for the interpreter to flush into the closed pipe at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return result
