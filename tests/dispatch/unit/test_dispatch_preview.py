"""`nurture-dispatch preview`: a template rendered for a profile through the send path's
composition, with no database or broker, and clear errors for what cannot be rendered."""

from __future__ import annotations

import email
import json
from email import policy
from pathlib import Path

from tests.dispatch.unit.test_dispatch_cli import run


def test_preview_renders_the_sample_profile_with_headers_and_links() -> None:
    proc = run("preview", "welcome-1-hello", NURTURE_TRACKING_SECRET="s" * 32,
               NURTURE_DISPATCH_TRACKING_BASE_URL="https://t.example.com")
    assert proc.returncode == 0, proc.stderr
    head, _, body = proc.stdout.partition("\n\n")
    assert "Subject: Welcome to Nurture, Ada" in head.splitlines()
    assert "To: Ada Lovelace <ada@example.com>" in head.splitlines()
    assert body.startswith("Hi Ada,")
    assert "https://t.example.com/t/unsubscribe/" in body


def test_preview_for_a_profile_writes_the_html_and_the_whole_message(tmp_path: Path) -> None:
    profile = tmp_path / "lead.json"
    profile.write_text(json.dumps({"email": "grace@example.org", "first_name": "Grace"}))
    html, eml = tmp_path / "out.html", tmp_path / "out.eml"
    proc = run("preview", "welcome-1-hello", "--profile", str(profile), "--html", str(html),
               "--eml", str(eml), NURTURE_DISPATCH_BRAND="Acme")
    assert proc.returncode == 0, proc.stderr
    assert "Subject: Welcome to Acme, Grace" in proc.stdout
    assert "Grace" in html.read_text() and "<html" in html.read_text().lower()
    message = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert (message["To"], message["Subject"]) == ("Grace <grace@example.org>",
                                                  "Welcome to Acme, Grace")


def test_preview_of_what_cannot_be_rendered_says_why_and_exits_2(tmp_path: Path) -> None:
    missing = run("preview", "no-such-template")
    assert missing.returncode == 2
    assert "no-such-template" in missing.stderr and "Traceback" not in missing.stderr
    sms = run("preview", "welcome-1-hello", "--channel", "sms")
    assert sms.returncode == 2 and "sms.txt" in sms.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    wrong = run("preview", "welcome-1-hello", "--profile", str(bad))
    assert wrong.returncode == 2 and "JSON object" in wrong.stderr
