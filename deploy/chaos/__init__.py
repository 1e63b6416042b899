"""The counted fault-injection run (`make chaos`): the whole stack as separate processes on its
own broker and database, a load with known expected outcomes, faults injected in turn, and a
table that says whether anything accepted was lost or delivered twice. See docs/reliability.md."""
