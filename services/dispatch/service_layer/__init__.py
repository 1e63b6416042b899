"""Dispatch's use cases (handlers.py) over a unit of work (unit_of_work.py)."""
