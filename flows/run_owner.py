"""Which process runs a flow run: recorded on the run when it starts, so a killed one can be told apart.

A process killed by SIGKILL (``kill -9``, the out-of-memory killer, a stopped container) cannot
report its own end, so its flow run would stay Running in Prefect forever. Every flow of the
project records its process on its run as it starts (the hook :func:`record_process`): host,
process id and the process's start time, so that a process id used again by another process is
not taken for it. ``cli/crashed_runs.py`` reads it back. A label, not a tag: task runs inherit
tags, and each tagged task run asks the API for tag concurrency slots.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefect import Flow
    from prefect.client.schemas.objects import FlowRun
    from prefect.states import State

log = logging.getLogger(__name__)
LABEL = "passos.process"


@dataclass(frozen=True)
class RunProcess:
    """The process a flow run was started by, as its label records it."""

    host: str
    pid: int
    started: str  # the process's start time in clock ticks since boot (/proc/<pid>/stat, field 22)

    @property
    def label(self) -> str:
        return f"{self.host}:{self.pid}:{self.started}"

    @classmethod
    def parse(cls, label: object) -> RunProcess | None:
        """The process a label names, or None for anything else."""
        parts = label.rsplit(":", 2) if isinstance(label, str) else []
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        return cls(parts[0], int(parts[1]), parts[2])

    def gone(self) -> bool:
        """Whether this process has ended (False for a process of another host: it cannot be seen)."""
        return self.host == socket.gethostname() and process_start(self.pid) != self.started


def process_start(pid: int) -> str | None:
    """A process's start time in clock ticks since boot, or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]  # field 22; the name in parentheses may hold spaces


def this_process() -> RunProcess:
    return RunProcess(socket.gethostname(), os.getpid(), process_start(os.getpid()) or "")


def record_process(flow: Flow[Any, Any], flow_run: FlowRun, state: State[Any]) -> None:  # noqa: ARG001
    """``on_running`` hook of every flow: label the run with :func:`this_process`.

    A failure is logged, never raised: without the label, a killed run is only left Running.
    """
    from prefect import get_client

    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run_labels(flow_run.id, {LABEL: this_process().label})
    except Exception as error:  # the API did not take it: the flow itself goes on
        log.warning("could not record this process on flow run %s: %s", flow_run.id, error)
