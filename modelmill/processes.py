"""Who a PID is: its start time and command line (Linux /proc), so a reused PID is never mistaken."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TypedDict


class Identity(TypedDict):
    start: int  # clock ticks since boot when the process started
    cmdline: list[str]


def identity(pid: int) -> Identity | None:
    """Start time and command line of a live PID, or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    return {"start": int(fields[19]), "cmdline": [a.decode(errors="replace") for a in raw if a]}


def owner_tags() -> dict[str, str]:
    """Tags naming this process (host, PID, start time), so a later run can tell it died."""
    me = identity(os.getpid())
    return {
        "modelmill.host": socket.gethostname(),
        "modelmill.pid": str(os.getpid()),
        "modelmill.pid_start": str(me["start"] if me else ""),
    }


def owner_alive(tags: dict[str, str]) -> bool | None:
    """Whether the process named by owner_tags still runs; None when it ran on another host or is unnamed."""
    if tags.get("modelmill.host") != socket.gethostname() or not tags.get("modelmill.pid"):
        return None
    now = identity(int(tags["modelmill.pid"]))
    return now is not None and str(now["start"]) == tags.get("modelmill.pid_start")
