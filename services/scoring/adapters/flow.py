"""faust's flow control, kept from dropping the records of a flow that is already running
(faust_app, workaround 14).

`app.flow_control` (mode's `FlowControlEvent`) gates every stream's and table's queue: a
rebalance suspends it and clears the queues (the records there belong to the old assignment),
and `resume()` opens them again and clears them once more. faust's recovery calls `resume()`
several times in one rebalance: first to read the changelogs, then again when it is done
(`Recovery.on_recovery_completed`), after it has already resumed the stream partitions and
sought them to their committed offsets. The flow has been running since the first call, so the
records fetched in between are of the new assignment, and the second clear drops them while
aiokafka's position and faust's read offset say they were delivered: the worker stops reading
those partitions until the next rebalance (docs/architecture.md, known problem; found by
workaround 13's report).

`keep_running_flow` makes `resume()` of a running flow do nothing (all it would do is that
clear); a resume after a suspension clears as before."""

from __future__ import annotations

import logging
from typing import Any

from mode.utils.queues import FlowControlEvent

log = logging.getLogger(__name__)


def keep_running_flow(flow: FlowControlEvent) -> None:
    """Make `flow.resume()` leave the queues alone while the flow is already running (once:
    a second call, as a restarted app makes, changes nothing)."""
    resume = flow.resume
    if getattr(resume, "keeps_running_flow", False):
        return

    def resume_unless_running() -> None:
        if not flow.is_active():
            resume()
            return
        queues: Any = flow._queues  # mode's WeakSet of the queues it clears on resume
        held = sum(queue.qsize() for queue in list(queues))
        if held:
            log.info("the flow is already running: %d fetched records kept in the queues that "
                     "resuming it again would have cleared", held)

    resume_unless_running.keeps_running_flow = True  # type: ignore[attr-defined]
    flow.resume = resume_unless_running  # type: ignore[method-assign]
