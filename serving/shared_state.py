"""State the worker processes of one `passos serve` share through ``$PASSOS_HOME/run/``.

* :class:`SharedBuckets`: the rate limiter's token buckets in one SQLite file, so N workers (and
  the API containers of one host that share the volume) enforce one limit, not N.
* :class:`WorkerStatus`: each worker's served model versions in a small file, so ``/ready`` on any
  worker can tell whether they all serve the same versions.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from modeling.registry_files import process_alive

log = logging.getLogger(__name__)


class SharedBuckets:
    """Token buckets (one per client key) kept in a SQLite file that every worker opens.

    Each take is one ``BEGIN IMMEDIATE`` transaction: read the bucket, refill it by the time since
    its last use, take, write it back. SQLite's lock makes that atomic across processes. A batch is
    charged by its students (:meth:`charge`) after it is admitted, so the bucket may go below zero:
    the client then waits until it has refilled. Buckets idle long enough to be full again are the
    same as absent ones, and at most ``max_clients`` are kept (the least recently used go first).
    """

    def __init__(self, path: Path, *, per_second: float, burst: float, max_clients: int = 10_000) -> None:
        self.path = path
        self.per_second = per_second
        self.burst = burst
        self.max_clients = max_clients
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute(
                "create table if not exists buckets (client text primary key, tokens real not null, last real not null)"
            )
            con.execute("create index if not exists buckets_last on buckets (last)")

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=2.0, isolation_level=None)
        con.execute("pragma journal_mode = wal")
        con.execute("pragma synchronous = off")  # a bucket lost in a power cut only refills early
        return con

    def _con(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = self._connect()
        return con

    def _update(self, client: str, cost: float, *, admit: bool, now: float | None = None) -> bool:
        con = self._con()
        con.execute("begin immediate")
        try:
            # The time is read once the lock is held: read before, a worker that waited for the
            # lock would see a bucket written "after" its own now. Wall-clock time, because the
            # file outlives a reboot; a clock set back only delays the refill.
            now = time.time() if now is None else now
            row = con.execute("select tokens, last from buckets where client = ?", [client]).fetchone()
            refilled = self.burst if row is None else row[0] + max(0.0, now - row[1]) * self.per_second
            tokens = min(self.burst, refilled)
            allowed = not admit or tokens >= 1.0
            if allowed:
                tokens -= cost
            con.execute("insert or replace into buckets (client, tokens, last) values (?, ?, ?)", [client, tokens, now])
            if row is None:
                self._evict(con)
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
        return allowed

    def _evict(self, con: sqlite3.Connection) -> None:
        excess = int(con.execute("select count(*) from buckets").fetchone()[0]) - self.max_clients
        if excess > 0:
            con.execute(
                "delete from buckets where client in (select client from buckets order by last limit ?)", [excess]
            )

    def take(self, client: str, now: float | None = None) -> bool:
        """Take one token from ``client``'s bucket; False (nothing taken) when it holds less than one."""
        return self._update(client, 1.0, admit=True, now=now)

    def charge(self, client: str, tokens: float, now: float | None = None) -> None:
        """Take ``tokens`` more from an admitted request's bucket (a batch: one per student beyond the first)."""
        if tokens > 0:
            self._update(client, tokens, admit=False, now=now)


class WorkerStatus:
    """Each worker's served versions, in ``<folder>/<host>/<pid>.json``, rewritten every ``interval_s``.

    A file not rewritten for ``stale_s`` (a worker that died without removing it) is ignored.
    The host name keeps the API containers that share a volume apart: each container answers its
    own ``/ready`` for its own workers.
    """

    def __init__(self, folder: Path, *, stale_s: float = 5.0) -> None:
        self.folder = folder / socket.gethostname()
        self.stale_s = stale_s
        self.pid = os.getpid()
        self.file = self.folder / f"{self.pid}.json"

    def write(self, versions: dict[str, str | None]) -> None:
        """Publish this worker's versions (an atomic rename, so a reader never sees half a file)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        staging = self.file.with_name(f".{self.pid}.tmp")
        staging.write_text(json.dumps({"pid": self.pid, "models": versions}), encoding="utf-8")
        os.replace(staging, self.file)

    def remove(self) -> None:
        self.file.unlink(missing_ok=True)

    def others(self) -> dict[int, dict[str, Any]]:
        """The other live workers' versions, by pid."""
        found: dict[int, dict[str, Any]] = {}
        now = time.time()
        try:
            entries = list(self.folder.glob("*.json"))
        except OSError:
            return found
        for entry in entries:
            try:
                if now - entry.stat().st_mtime > self.stale_s:
                    continue
                status = json.loads(entry.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # removed meanwhile, or being replaced
            pid = status.get("pid")
            if isinstance(pid, int) and pid != self.pid and process_alive(pid):
                found[pid] = status.get("models") or {}
        return found
