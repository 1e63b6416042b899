"""scoring: streaming lead scoring (faust-streaming): per-lead scores, decay,
thresholds and explanations; nurture.events.v1 -> nurture.scored-events.v1.

Not built yet: see issue #3."""
