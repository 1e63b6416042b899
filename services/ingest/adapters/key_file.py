"""API keys that may come from a mounted file (a Kubernetes Secret) and change without a restart.

`KeyRing.current` is what the auth dependency checks: the keys of `NURTURE_INGEST_API_KEYS` plus
those of `NURTURE_INGEST_API_KEYS_FILE` (the same JSON list). `watch` re-reads the file when it
changes (its size, modification time or inode: a Secret's update swaps a symlink), at most every
`interval` seconds. A file that no longer parses, or that would leave no key, is refused with an
error in the log and the keys in use stay: a bad edit never locks every sender out."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from services.ingest.domain.auth import ApiKey
from services.ingest.settings import ApiKeyConfig, read_key_file

log = logging.getLogger(__name__)

def keys_of(configs: Sequence[ApiKeyConfig]) -> tuple[ApiKey, ...]:
    """The keys to check requests against; ValueError if none, or if two share a name."""
    names = [c.name for c in configs]
    if not names:
        raise ValueError("no API key")
    if len(names) != len(set(names)):
        raise ValueError("API key names must be unique: " + ", ".join(
            sorted({n for n in names if names.count(n) > 1})))
    return tuple(ApiKey(c.name, c.sha256, tuple(c.sources), tuple(c.types), tuple(c.origins))
                 for c in configs)


class KeyRing:
    """The API keys in use: the environment's, and the file's as it is now."""

    def __init__(self, configured: Sequence[ApiKeyConfig], path: Path | None = None) -> None:
        self._configured, self.path = list(configured), path
        self._seen: tuple[int, int, int] | None = None
        self.current = keys_of(self._configured + self._read())

    def _read(self) -> list[ApiKeyConfig]:
        if self.path is None:
            return []
        self._seen = _signature(self.path)
        return read_key_file(self.path)

    def reload(self) -> bool:
        """Read the file again if it changed; whether the keys changed. Keeps the keys in use,
        logging why, when the new file is not usable."""
        if self.path is None or _signature(self.path) == self._seen:
            return False
        try:
            keys = keys_of(self._configured + self._read())
        except ValueError as exc:
            log.error("API key file refused; the keys in use stay", extra={"reason": str(exc)})
            return False
        changed, self.current = keys != self.current, keys
        if changed:
            log.info("API keys reloaded", extra={"keys": len(keys)})
        return changed

    async def watch(self, interval: float) -> None:
        """Reload every `interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.reload()


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns
