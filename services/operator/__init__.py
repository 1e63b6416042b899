"""Operator command-line tools (`nurture-topics`, `nurture-dlq`), apart from the runtime code."""
