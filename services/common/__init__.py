"""Plumbing shared by every service, by concern: `kafka` (clients, topic map, consumer loop, dead
letters), `db` (migrations, outbox, retention), `http` (server, body limit), `config` (settings,
config files), `observability` (logging, metrics), plus `clock` and `errors`. No business logic
lives here; the operator CLIs are in services/operator/."""
