"""PostgreSQL plumbing: migrations, the transactional outbox and retention."""
