"""Start a KRaft broker configured from KAFKA_* environment variables (KAFKA_NODE_ID -> node.id),
formatting its storage on the first start, as the apache/kafka image does."""

import base64
import os
import subprocess
import sys
import uuid
from pathlib import Path

CONFIG = Path("/tmp/server.properties")
NOT_PROPERTIES = {"KAFKA_HEAP_OPTS", "KAFKA_OPTS", "KAFKA_CLUSTER_ID"}
DEFAULTS = {"share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "log.dirs": "/tmp/kraft-combined-logs"}  # the apache/kafka image's default


def java(main: str, *args: str) -> list[str]:
    heap = os.environ.get("KAFKA_HEAP_OPTS", "-Xms256m -Xmx512m").split()
    return ["java", *heap, "-Djava.awt.headless=true", "-cp", "/opt/kafka/libs/*", main, *args]


def main() -> int:
    props = DEFAULTS | {name[len("KAFKA_"):].lower().replace("_", "."): value
                        for name, value in os.environ.items()
                        if name.startswith("KAFKA_") and name not in NOT_PROPERTIES}
    CONFIG.write_text("".join(f"{key}={value}\n" for key, value in sorted(props.items())))
    if not (Path(props["log.dirs"]) / "meta.properties").exists():
        cluster = os.environ.get("KAFKA_CLUSTER_ID") or base64.urlsafe_b64encode(
            uuid.uuid4().bytes).decode().rstrip("=")
        subprocess.run(java("kafka.tools.StorageTool", "format", f"--cluster-id={cluster}",
                            f"--config={CONFIG}"), check=True)
    os.execvp("java", java("kafka.Kafka", str(CONFIG)))  # noqa: S606 - the broker replaces us
    return 1


if __name__ == "__main__":
    sys.exit(main())
