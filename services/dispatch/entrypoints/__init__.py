"""How dispatch is driven: the Kafka consumers and timed loops (consumer.py), the HTTP app
(http/), the `check` command (check.py)."""
