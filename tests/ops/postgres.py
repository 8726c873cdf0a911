"""A throwaway PostgreSQL cluster for tests: initdb + pg_ctl on a free port in a temp dir."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from flows.stack import free_port

PG_BIN = Path(os.environ.get("MODELMILL_PG_BIN", "/usr/lib/postgresql/15/bin"))


@dataclass
class Cluster:
    data: Path
    port: int
    user: str

    def url(self, database: str, driver: str = "postgresql") -> str:
        return f"{driver}://{self.user}@127.0.0.1:{self.port}/{database}"


def unavailable() -> str | None:
    """Why a cluster cannot be started here, or None."""
    if not (PG_BIN / "initdb").exists():
        return f"PostgreSQL server binaries not found in {PG_BIN} (apt-get install postgresql)"
    if os.geteuid() == 0 and not _has_user("postgres"):
        return "running as root and no 'postgres' user to run initdb as"
    return None


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _as_owner(argv: list[str]) -> list[str]:
    """initdb refuses root: run the server tools as the 'postgres' user then."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def start(base: Path) -> Cluster:
    base.mkdir(parents=True, exist_ok=True)
    data = base / "pgdata"
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    subprocess.run(
        _as_owner(
            [str(PG_BIN / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "--no-sync", "-E", "UTF8"]
        ),
        check=True,
        capture_output=True,
    )
    port = free_port()
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={base} -c fsync=off"
    subprocess.run(
        _as_owner(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(base / "postgres.log"),
                "-w",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    return Cluster(data=data, port=port, user=user)


def create_database(cluster: Cluster, name: str) -> None:
    subprocess.run(
        [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(cluster.port), "-U", cluster.user, name],
        check=True,
        capture_output=True,
    )


def stop(cluster: Cluster) -> None:
    subprocess.run(
        _as_owner([str(PG_BIN / "pg_ctl"), "-D", str(cluster.data), "-m", "fast", "-w", "stop"]),
        check=False,
        capture_output=True,
    )
