"""dispatch: delivers email, SMS, CRM tasks and webhooks exactly once, with
templates, tracking and feedback events.

Not built yet: see issue #5."""
