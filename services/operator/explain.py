"""`nurture-ops explain LEAD`: why a lead is where it is, from the orchestrator's lead API:
its stage and how it got there, each model's score with the rules that made it, the programs it
is in, and its recent messages with why any were held or dropped.

    NURTURE_OPS_ORCHESTRATOR_URL=http://orchestrator:8081 \\
    NURTURE_OPS_ORCHESTRATOR_TOKEN=... nurture-ops explain lead-42

`--json` prints the API's document as it is."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.cli import ends_quietly
from services.common.config.settings import environment_help, load
from services.common.errors import ConfigError


class OpsSettings(BaseSettings):
    """Where the operator commands reach the services' APIs."""

    model_config = SettingsConfigDict(env_prefix="NURTURE_OPS_", extra="ignore",
                                      use_attribute_docstrings=True)

    orchestrator_url: str = Field(default="http://127.0.0.1:8081",
                                  pattern=r"^https?://[^\s/]+(/\S*)?$")
    """the orchestrator's API"""
    orchestrator_token: SecretStr | None = None
    """its API token (NURTURE_ORCHESTRATOR_API_TOKEN of the orchestrator)"""
    timeout_seconds: float = Field(default=10.0, gt=0)
    """how long to wait for an answer"""


class NotFound(LookupError):
    pass


def fetch(settings: OpsSettings, lead_id: str) -> dict[str, Any]:
    """The orchestrator's view of the lead; NotFound, or httpx.HTTPError saying what failed."""
    token = settings.orchestrator_token
    headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
    url = f"{settings.orchestrator_url.rstrip('/')}/v1/leads/{quote(lead_id, safe='')}"
    response = httpx.get(url, headers=headers, timeout=settings.timeout_seconds)
    if response.status_code == 404:
        raise NotFound(f"no lead {lead_id!r} at {settings.orchestrator_url}")
    response.raise_for_status()
    view: dict[str, Any] = response.json()
    return view


def explain(view: dict[str, Any]) -> str:
    """The lead's view as a few readable sections."""
    lines = [f"lead {view['lead_id']}: stage {view['stage']}"
             + (f", journey {view['journey_stage']}" if view.get("journey_stage") else "")]
    if view.get("suppressed"):
        lines.append("  suppressed: " + ", ".join(
            f"{channel} ({reason})" for channel, reason in sorted(view["suppressed"].items())))
    lines += ["", "how it got there:"] + [
        f"  {h['at']}  {h['from_stage'] or '(new)'} -> {h['to_stage']}: {h['cause']}"
        for h in view.get("stage_history", [])] or ["  (no stage change yet)"]
    lines += ["", "scores:", *_scores(view.get("scores", {}))]
    lines += ["", "programs:"] + [
        f"  {e['program_id']}: {e['status']} (entered {e['entered_at']}"
        + (f", exited {e['exited_at']}" if e.get("exited_at") else "") + ")"
        for e in view.get("enrollments", [])] or ["  (none)"]
    lines += ["", "recent messages (newest first):"] + [
        f"  {m['at']}  {m['program_id']}/{m['step_id']} {m['channel']}: {m['status']}"
        + (f" because {m['reason']}" if m.get("reason") else "")
        + (f" until {m['until']}" if m.get("until") else "")
        for m in view.get("messages", [])[:20]] or ["  (none)"]
    return "\n".join(lines)


def _scores(scores: dict[str, Any]) -> list[str]:
    lines = []
    for model, score in sorted(scores.items()):
        above = ", ".join(score.get("above") or []) or "no threshold"
        lines.append(f"  {model}: {score.get('total')} (fit {score.get('fit')}, engagement "
                     f"{score.get('engagement')}; above {above})")
        lines += [f"    {part['points']:+g}  {part['rule']}"
                  for part in score.get("breakdown") or []]
    return lines or ["  (not scored yet)"]


@ends_quietly
def main(argv: Sequence[str] | None = None, prog: str = "nurture-ops explain") -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, epilog=environment_help("environment", OpsSettings),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lead_id", help="the lead's id")
    parser.add_argument("--json", action="store_true", help="the API's document as it is")
    args = parser.parse_args(argv)
    try:
        view = fetch(load(OpsSettings), args.lead_id)
    except (ConfigError, NotFound, httpx.HTTPError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    print(orjson.dumps(view, option=orjson.OPT_INDENT_2).decode() if args.json
          else explain(view))
    return 0
