"""`nurture-dispatch preview TEMPLATE`: a template rendered for a lead's profile, through the same
composition a send uses (variables, tracking links, the email's headers and parts), with nothing
sent and nothing recorded.

    nurture-dispatch preview welcome-1-hello                     # a sample profile
    nurture-dispatch preview welcome-1-hello --profile lead.json --html out.html
    curl -s -H "Authorization: Bearer $TOKEN" $ORCH/v1/leads/lead-42 | jq .profile \\
        | nurture-dispatch preview accelerator-demo-invite --profile -

The profile is the lead's `profile` as the orchestrator's lead API shows it (the context a
command carries). Settings that shape a message (NURTURE_DISPATCH_TEMPLATES, _FROM_ADDRESS,
_BRAND, _SITE_URL, _TRACKING_BASE_URL, NURTURE_TRACKING_SECRET, ...) are read as `serve` reads
them; no database or broker is needed."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import orjson

from schemas.records import SendMessage
from schemas.vocabulary import CHANNELS
from services.common.config.settings import load
from services.common.errors import ConfigError
from services.common.tracking import TrackingSettings
from services.dispatch.adapters.channels import Channels, Prepared
from services.dispatch.bootstrap import build_composer, tracking_key
from services.dispatch.domain.errors import DispatchError
from services.dispatch.settings import DispatchSettings

SAMPLE_PROFILE: dict[str, Any] = {
    "email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace",
    "company": "Example Ltd", "industry": "software", "country": "GB", "phone": "+447700900123",
    "scores": {"b2b": {"total": 72.5, "breakdown": [{"rule": "pricing-page", "points": 15}]}},
}
PROVIDER_FIELDS = {"email": "mailer", "sms": "sms", "crm_task": "tasks", "webhook": "webhooks"}
NOT_USED = "postgresql+asyncpg://preview@localhost/not-used"
"""Stands in for DATABASE_URL (required to serve) when it is unset: preview reads no table."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("template",
                        help="template name (a directory of NURTURE_DISPATCH_TEMPLATES)")
    parser.add_argument("--channel", choices=CHANNELS, default="email", help="(%(default)s)")
    parser.add_argument("--profile", help="JSON file of the lead's profile, - for stdin "
                        "(default: a sample profile)")
    parser.add_argument("--lead-id", default="lead-preview", help="(%(default)s)")
    parser.add_argument("--html", type=Path, help="write the email's HTML part to this file")
    parser.add_argument("--eml", type=Path,
                        help="write the whole email (.eml, opens in a mail client) to this file")


def profile(source: str | None) -> dict[str, Any]:
    if source is None:
        return dict(SAMPLE_PROFILE)
    raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    value = orjson.loads(raw)
    if not isinstance(value, dict):
        raise ValueError(f"--profile {source}: a JSON object is needed, "
                         f"not {type(value).__name__}")
    return value


def compose(args: argparse.Namespace, settings: DispatchSettings,
            tracking: TrackingSettings, now: datetime) -> Prepared:
    command = SendMessage(message_id="preview", lead_id=args.lead_id, channel=args.channel,
                          template=args.template, program_id="preview", step_id="preview",
                          context=profile(args.profile), created_at=now)
    # any object as the channel's provider: the channel counts as configured, nothing is sent
    channels = Channels(**{PROVIDER_FIELDS[args.channel]: object()})  # type: ignore[arg-type]
    return build_composer(settings, tracking_key(tracking)).prepare(
        command, channels=channels, now=now)


def show(message: Prepared, args: argparse.Namespace) -> str:
    if not isinstance(message, EmailMessage):
        return orjson.dumps(message, option=orjson.OPT_INDENT_2).decode()
    lines = [f"{name}: {value}" for name, value in message.items()
             if name in ("From", "To", "Reply-To", "Subject", "List-Unsubscribe")]
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    lines += ["", text.get_content() if text else "(no text part)"]
    if args.html and html is not None:
        args.html.write_text(html.get_content())
        lines.append(f"(HTML part written to {args.html})")
    if args.eml:
        args.eml.write_bytes(bytes(message))
        lines.append(f"(the whole message written to {args.eml})")
    return "\n".join(lines)


def run_preview(args: argparse.Namespace) -> int:
    os.environ.setdefault("DATABASE_URL", NOT_USED)
    try:
        settings, tracking = load(DispatchSettings), load(TrackingSettings)
        message = compose(args, settings, tracking, datetime.now(UTC))
    except (ConfigError, DispatchError, ValueError, OSError) as exc:
        print(f"nurture-dispatch preview: {exc}", file=sys.stderr)
        return 2
    print(show(message, args))
    return 0
