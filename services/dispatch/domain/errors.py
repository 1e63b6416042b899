"""Dispatch's exceptions. Adapters translate driver errors (SMTP replies, HTTP statuses,
socket errors) into these at the boundary; one place (the delivery step) decides retry or
give up from `transient` alone.

`reason` is a short, bounded, PII-free code (`smtp_4xx`, `http_429`, `connection_failed`,
`template_error`, ...) used in events and metric labels; `detail` says more for operators (still
without addresses or names: SMTP reply texts, which can echo the recipient, are not kept)."""

from __future__ import annotations


class DispatchError(Exception):
    """Root of everything dispatch raises on purpose."""

    transient = False

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail or reason


class TemplateError(DispatchError):
    """The message cannot be rendered: missing template file, syntax error, undefined variable,
    sandbox violation. Permanent: rendering again gives the same result."""

    def __init__(self, detail: str) -> None:
        super().__init__("template_error", detail)


class HandoffRefused(DispatchError):
    """At its hand-off point the delivery was no longer this attempt's to send (another replica
    took it over after its lease ran out, or it was finished or suppressed meanwhile). Nothing
    went to the provider."""

    def __init__(self, message_id: str) -> None:
        super().__init__("handoff_refused", f"{message_id} is no longer pending")


class ProviderError(DispatchError):
    """A provider refused or could not be reached."""


class ProviderUnavailable(ProviderError):
    """Transient: worth another attempt later (connection refused, timeouts, SMTP 4xx, HTTP
    429/5xx). `retry_after` is the provider's own hint in seconds, when it gave one."""

    transient = True

    def __init__(self, reason: str, detail: str = "", *,
                 retry_after: float | None = None) -> None:
        super().__init__(reason, detail)
        self.retry_after = retry_after


class ProviderRejected(ProviderError):
    """Permanent: the same request would be refused again (SMTP 5xx, HTTP 4xx other than 408 and
    429, a channel that is not configured)."""
