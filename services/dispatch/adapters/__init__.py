"""Dispatch's I/O: PostgreSQL (deliveries, suppressions, outbox), templates on disk, and the
channel providers (SMTP, SMS API, CRM API, webhooks), each behind a small Protocol with a fake."""
