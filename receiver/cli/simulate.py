"""`receiver simulate`: CALLR-like traffic against a receiver, with what it should then hold."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from receiver.cli.arguments import Commands, above_zero, http_url, whole
from receiver.http import loggable_path
from receiver.simulate import ALGORITHMS, Mix, Plan, Signer, parse_mix, simulate
from receiver.simulate.report import Summary


def simulate_command(args: argparse.Namespace) -> int:
    plan = Plan(args.messages, args.mix, seed=args.seed)
    report = asyncio.run(
        simulate(
            args.url,
            plan,
            signer=Signer(args.secret, args.algorithm),
            concurrency=args.concurrency,
            duration=args.duration,
            max_tries=args.max_tries,
        )
    )
    summary = report.summary()
    _print(summary)
    for hint in _hints(summary["answers"], args.url):
        print(hint, file=sys.stderr)
    if args.json:
        try:
            args.json.write_text(json.dumps(summary, indent=2) + "\n")
        except OSError as error:
            print(f"receiver simulate: the report was not written: {error}", file=sys.stderr)
            return 1
    return 0 if report.unacknowledged == 0 else 1


def _report_file(text: str) -> Path:
    """Where --json writes: checked before the run, so that a typo does not cost one."""
    path = Path(text)
    folder = path.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(
            f"cannot write {text!r}: no writable folder {str(folder)!r}"
        )
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: it is a folder")
    return path


def _print(summary: Summary) -> None:
    print(
        f"sent {summary['requests']:,} requests in {summary['seconds']} s"
        f" ({summary['requests_per_second']:,.0f}/s)"
    )
    print("answers    " + ", ".join(f"{k}: {v:,}" for k, v in summary["answers"].items()))
    latency = summary["latency_ms"]
    if latency:
        print("latency ms " + ", ".join(f"{k} {v}" for k, v in latency.items()))
    if summary["unacknowledged"]:
        print(f"NOT acknowledged after every try: {summary['unacknowledged']:,} deliveries")
    expected = summary["expected"]
    print(
        f"expected   {expected['events']:,} distinct events ({expected['invalid']:,} invalid,"
        f" {expected['unhandled']:,} unhandled), {expected['messages']:,} messages"
        f" ({expected['outbound']:,} outbound, {expected['inbound']:,} inbound)"
    )
    finals = ", ".join(f"{k} {v:,}" for k, v in expected["final_statuses"].items())
    print(f"           outbound final statuses: {finals}")


def _hints(answers: dict[str, int], url: str) -> list[str]:
    """What answers that are not 2xx most likely mean, and what to do."""
    hints = []
    if answers.get("404"):
        hints.append(
            f"404 from {_shown(url)}: not the webhook URL. With a URL token (the default on a new"
            " machine) the webhook URL is the whole one `receiver serve` printed,"
            " .../webhooks/callr/<token>; its token is kept in .receiver/webhook-url-token"
            " (a token set in RECEIVER_CALLR_URL_TOKEN is printed by its last 4 characters:"
            " use the whole token)."
        )
    if answers.get("401"):
        hints.append(
            "401: the receiver checks a signature or basic auth: give --secret the HMAC"
            " secret of RECEIVER_CALLR_HMAC_SECRETS (and --algorithm its algorithm)."
        )
    return hints


def _shown(url: str) -> str:
    """`url` as it may be printed: a URL token (a credential) in its path replaced."""
    parts = urlsplit(url)
    return parts._replace(path=loggable_path(parts.path)).geturl()


def _mix(text: str) -> Mix:
    try:
        return parse_mix(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_simulate_command(commands: Commands) -> None:
    parser = commands.add_parser(
        "simulate",
        help="send realistic CALLR webhook traffic to a receiver and say what it should hold",
    )
    parser.add_argument(
        "--url",
        required=True,
        type=http_url,
        help="the webhook URL as `receiver serve` printed it, e.g."
        " http://127.0.0.1:8000/webhooks/callr/<token>",
    )
    parser.add_argument("--secret", help="sign each body as CALLR does (X-CALLR-HmacSignature)")
    parser.add_argument("--algorithm", choices=sorted(ALGORITHMS), default="sha256")
    parser.add_argument(
        "--messages", type=whole(1, 10_000_000), default=1000, help="SMS to simulate"
    )
    parser.add_argument("--concurrency", type=whole(1, 1024), default=16, help="requests in flight")
    parser.add_argument(
        "--duration",
        type=above_zero("seconds"),
        default=60.0,
        help="stop sending after this many seconds",
    )
    parser.add_argument(
        "--mix",
        type=_mix,
        default=parse_mix(""),
        help="shares from 0 to 1, e.g. v2=0.5,history=0.8,failures=0.1,mo=0.1,duplicates=0.05,"
        "retries=0.05,second_subscription=0.02,out_of_order=0.1 (these are the defaults)",
    )
    parser.add_argument("--max-tries", type=whole(1, 100), default=5, help="tries per delivery")
    parser.add_argument("--seed", type=int, help="the same traffic for the same seed")
    parser.add_argument(
        "--json", metavar="FILE", type=_report_file, help="also write the report as JSON"
    )
    parser.set_defaults(run=simulate_command)
