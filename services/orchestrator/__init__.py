"""orchestrator: lifecycle stages, nurture programs, durable timers and the contact
policy, with effectively-once state in PostgreSQL.

Not built yet: see issue #4."""
