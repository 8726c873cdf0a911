"""The project's own PostgreSQL cluster for `modelmill up --postgres`: initdb under
.modelmill/postgres/, loopback only, a free port, a generated password kept in a 0600 pgpass file.

Connection URLs never hold the password (so no log, argv or stack.json shows it): every
stack process gets PGPASSFILE, which libpq (psycopg2: MLflow, Optuna) and asyncpg (Prefect) read.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
from pathlib import Path

USER = "modelmill"
DATABASES = ("prefect", "mlflow", "optuna")
OWNER = "postgres"  # initdb refuses root: as root, the server runs as this system user


class PostgresError(RuntimeError):
    """The cluster could not be created, started or stopped."""


def server_bin() -> Path:
    """Folder of the PostgreSQL server binaries: MODELMILL_PG_BIN, initdb on PATH, or Debian's."""
    if os.environ.get("MODELMILL_PG_BIN"):
        return Path(os.environ["MODELMILL_PG_BIN"])
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if debian:
        return debian[-1].parent
    raise PostgresError(
        "PostgreSQL server binaries not found (apt-get install postgresql, or MODELMILL_PG_BIN)"
    )


def base_dir(state: Path) -> Path:
    return state / "postgres"


def passfile(state: Path) -> Path:
    return base_dir(state) / "pgpass"


def url(port: int, database: str, driver: str = "postgresql+psycopg2") -> str:
    """A connection URL without a password (PGPASSFILE supplies it)."""
    return f"{driver}://{USER}@127.0.0.1:{port}/{database}"


def client_env(state: Path, port: int) -> dict[str, str]:
    return {"PGPASSFILE": str(passfile(state)), "PGHOST": "127.0.0.1", "PGPORT": str(port), "PGUSER": USER}


def _as_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", OWNER, "--", *argv] if os.geteuid() == 0 else argv


def _run(argv: list[str], env: dict[str, str] | None = None) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise PostgresError(
            f"{Path(argv[0]).name if argv[0] != 'runuser' else argv[4]} failed: {done.stderr[-1500:]}"
        )


def _hand_to_owner(base: Path) -> None:
    """As root, the server's system user must own the cluster folder and reach it."""
    if os.geteuid() != 0:
        return
    try:
        pwd.getpwnam(OWNER)
    except KeyError:
        raise PostgresError(f"running as root and there is no '{OWNER}' user to run the server as") from None
    shutil.chown(base, OWNER, OWNER)
    if subprocess.run(["runuser", "-u", OWNER, "--", "test", "-w", str(base)]).returncode != 0:
        raise PostgresError(f"the '{OWNER}' user cannot reach {base} (a parent folder is closed to it)")


def init(state: Path) -> None:
    """initdb once (scram-sha-256, superuser `modelmill` with a generated password)."""
    base = base_dir(state)
    if (base / "data" / "PG_VERSION").exists():
        return
    base.mkdir(parents=True, exist_ok=True)
    _hand_to_owner(base)
    password = secrets.token_urlsafe(24)
    secret = base / "initdb-password"
    secret.write_text(password + "\n")
    os.chmod(secret, 0o600)
    if os.geteuid() == 0:
        shutil.chown(secret, OWNER, OWNER)
    try:
        _run(
            _as_owner(
                [str(server_bin() / "initdb"), "-D", str(base / "data"), "-U", USER, "--pwfile", str(secret)]
                + ["--auth=scram-sha-256", "-E", "UTF8", "--no-sync"]
            )
        )
    finally:
        secret.unlink(missing_ok=True)
    pgpass = passfile(state)
    pgpass.touch(mode=0o600)
    pgpass.write_text(f"127.0.0.1:*:*:{USER}:{password}\n")


def start(state: Path, port: int) -> int:
    """Start the server on 127.0.0.1:port (no Unix socket), create the databases; its PID."""
    base = base_dir(state)
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories=''"
    _run(
        _as_owner(
            [str(server_bin() / "pg_ctl"), "-D", str(base / "data"), "-o", options]
            + ["-l", str(base / "postgres.log"), "-w", "-t", "120", "start"]
        )
    )
    env = client_env(state, port)
    for database in DATABASES:
        exists = subprocess.run(
            [
                str(server_bin() / "psql"),
                "-d",
                "postgres",
                "-tAc",
                f"SELECT 1 FROM pg_database WHERE datname='{database}'",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
        )
        if exists.stdout.strip() != "1":
            _run([str(server_bin() / "createdb"), database], env)
    return int((base / "data" / "postmaster.pid").read_text().split()[0])


def stop(state: Path) -> None:
    base = base_dir(state)
    if (base / "data" / "postmaster.pid").exists():
        _run(_as_owner([str(server_bin() / "pg_ctl"), "-D", str(base / "data"), "-m", "fast", "-w", "stop"]))
