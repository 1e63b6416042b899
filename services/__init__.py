"""Nurture services. One package per service; `services.common` holds the shared plumbing.

Services never import each other; each has a `__main__` (the composition root)."""
