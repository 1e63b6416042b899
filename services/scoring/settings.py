"""scoring settings: environment variables with the `NURTURE_SCORING_` prefix (plus the shared
`KAFKA_*`, `NURTURE_TOPIC_PREFIX` and `NURTURE_LOG_*` ones)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ScoringSettings(BaseSettings):
    """Where the models are, how the faust worker keeps its state, and how it joins its group."""

    model_config = SettingsConfigDict(env_prefix="NURTURE_SCORING_", extra="ignore",
                                      use_attribute_docstrings=True)

    models: str = Field(
        default="config/scoring",
        description="comma-separated model files or directories of *.yaml files")
    app_id: str = Field(default="nurture-scoring", pattern=r"^[A-Za-z0-9._-]+$",
                        description="faust app id: the consumer group and changelog topic prefix")
    store: Literal["memory", "rocksdb"] = "memory"
    """where the scores live: memory (rebuilt from the changelog at start) or rocksdb"""
    state_dir: str = "/tmp/nurture-scoring"  # noqa: S108 - an emptyDir / volume in Kubernetes
    """directory of the table state (rocksdb) and faust's data"""
    metrics_port: int = Field(default=9102, ge=0, le=65535, description="0 disables /metrics")
    recent_ids: int = Field(default=64, ge=1, le=10_000,
                            description="per-lead window of event ids remembered for dedupe")
    replication_factor: int = Field(default=1, ge=1, description="of the changelog topic")
    session_timeout_seconds: float = Field(default=30.0, ge=3)
    """Kafka consumer session timeout: a silent worker loses its partitions after this"""
    commit_interval_seconds: float = Field(default=1.0, gt=0)
    """how often consumed offsets are committed"""
    commit_stuck_seconds: float = Field(
        default=300.0, ge=30,
        description="/livez fails once records read have waited this long for a commit")
    batch_max: int = Field(
        default=500, ge=1, le=10_000,
        description="most events scored together (each touched lead's state written once per "
                    "batch)")
    batch_wait_ms: float = Field(
        default=5.0, gt=0, le=1000,
        description="how long a batch waits for more events after its first one before it is "
                    "scored (latency vs CPU)")
    state_cache_leads: int = Field(
        default=10_000, ge=0, le=10_000_000,
        description="leads whose decoded state the worker keeps besides the table, so their "
                    "next event need not decode it (CPU vs memory: about 3 KB per lead; 0: none)")
    fetch_wait_ms: int = Field(
        default=100, ge=10, le=1500,
        description="the longest a fetch waits at the broker for new records (faust's own "
                    "1500 ms stalled partitions behind an idle one; see faust_app, workaround 10)")
