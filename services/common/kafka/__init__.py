"""Kafka plumbing: client factories, the topic map, the consumer runner and dead letters."""
