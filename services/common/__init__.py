"""Plumbing shared by every service: typed settings, Kafka client factories, topic names,
JSON logging, Prometheus helpers and the injectable `Clock`. No business logic lives here."""
