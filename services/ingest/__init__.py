"""ingest: the HTTP front door. Authenticates, validates against `schemas/`, normalizes foreign
formats (Segment-style batches) and produces to `nurture.events.v1`, answering 2xx only after
Kafka has acknowledged every event of the request."""
