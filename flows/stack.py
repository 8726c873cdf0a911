"""The local stack: a Prefect server, a process worker and an MLflow server on 127.0.0.1.

`modelmill up` starts them, creates the work pool, deploys prefect.yaml and waits for each
health check; PIDs, ports and logs live in the state folder (.modelmill/stack/) so that
`modelmill down` stops exactly those processes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from flows import postgres
from flows.env import STATE_DIR, project_env
from modelmill.config import load_project_settings
from modelmill.processes import identity

WORK_POOL = "modelmill-process"


class StackError(RuntimeError):
    """A stack process failed to start, to answer its health check, or to deploy."""


@dataclass
class Stack:
    """What `up` started: where it lives, its ports and PIDs (saved as stack.json)."""

    root: str
    prefect_port: int
    mlflow_port: int
    worker_port: int
    # None: the embedded sqlite store mlflow/mlflow.db; else e.g. postgresql://user@host:port/db
    mlflow_backend: str | None = None
    # `up --postgres`: the project's PostgreSQL cluster for Prefect, MLflow and Optuna
    postgres_port: int | None = None
    pids: dict[str, int] = field(default_factory=dict)
    # start time (clock ticks since boot) and command line of each PID when `up` started it
    identity: dict[str, dict] = field(default_factory=dict)

    @property
    def prefect_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}"

    @property
    def prefect_api_url(self) -> str:
        return f"{self.prefect_url}/api"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def state(self) -> Path:
        return Path(self.root) / STATE_DIR

    @property
    def record(self) -> Path:
        return self.state / "stack" / "stack.json"

    def log(self, name: str) -> Path:
        return self.state / "stack" / "logs" / f"{name}.log"

    def env(self) -> dict[str, str]:
        """Environment of every stack process: settings kept inside the project."""
        # the caller's Prefect profile/API and tracking URI must not leak into the stack
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "MLFLOW_TRACKING_URI"
        }
        env.update(project_env(Path(self.root)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (self.root, os.environ.get("PYTHONPATH")) if p)
        env.update(
            PREFECT_API_URL=self.prefect_api_url,
            PREFECT_SERVER_API_HOST="127.0.0.1",
            PREFECT_SERVER_API_PORT=str(self.prefect_port),
            PREFECT_UI_URL=self.prefect_url,
            PREFECT_WORKER_WEBSERVER_HOST="127.0.0.1",
            PREFECT_WORKER_WEBSERVER_PORT=str(self.worker_port),
            MLFLOW_TRACKING_URI=self.mlflow_url,
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        )
        if self.postgres_port:  # URLs without the password: PGPASSFILE holds it
            env.update(postgres.client_env(self.state, self.postgres_port))
            env.update(
                PREFECT_API_DATABASE_CONNECTION_URL=postgres.url(
                    self.postgres_port, "prefect", "postgresql+asyncpg"
                ),
                MODELMILL_OPTUNA_STORAGE=postgres.url(self.postgres_port, "optuna"),
            )
        return env


def free_port(preferred: int = 0) -> int:
    """`preferred` when it is free on 127.0.0.1, else any free port."""
    for port in dict.fromkeys((preferred, 0)):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise StackError("no free port on 127.0.0.1")


def _bin(name: str) -> str:
    """The console script of a dependency installed next to this interpreter."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _spawn(stack: Stack, name: str, argv: list[str]) -> None:
    log = stack.log(name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            cwd=stack.root,
            env=stack.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    stack.pids[name] = proc.pid
    stack.identity[name] = identity(proc.pid) or {}
    _save(stack)


def still_ours(stack: Stack, name: str) -> bool:
    """Whether the recorded PID is still the process `up` started (not a reused PID)."""
    pid, recorded = stack.pids[name], stack.identity.get(name)
    now = identity(pid)
    if now is None:
        return False
    if not recorded:  # a stack.json written before identities were recorded: the program must match
        return any(("mlflow" if name == "mlflow" else "prefect") in arg for arg in now["cmdline"])
    # a PID and its start time (clock ticks since boot) name one process: a reused PID starts
    # later. The command line is not compared: a server may rewrite its own (process titles).
    return bool(now["start"] == recorded.get("start"))


def _save(stack: Stack) -> None:
    stack.record.parent.mkdir(parents=True, exist_ok=True)
    tmp = stack.record.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(stack), indent=2))
    os.replace(tmp, stack.record)


def load_stack(root: str | Path) -> Stack | None:
    record = Path(root).resolve() / STATE_DIR / "stack" / "stack.json"
    return Stack(**json.loads(record.read_text())) if record.exists() else None


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_healthy(stack: Stack, name: str, url: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if healthy(url):
            return
        if not _alive(stack.pids.get(name)):
            raise StackError(f"{name} exited during start-up; see {stack.log(name)}")
        time.sleep(0.3)
    raise StackError(f"{name} did not answer {url} within {timeout:.0f}s; see {stack.log(name)}")


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def spawn_mlflow(stack: Stack) -> None:
    """The MLflow tracking server: one worker, no job runner, artifacts served by it."""
    root = Path(stack.root)
    (root / "mlflow" / "artifacts").mkdir(parents=True, exist_ok=True)
    backend = stack.mlflow_backend or f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
    _spawn(
        stack,
        "mlflow",
        [
            _bin("mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(stack.mlflow_port),
            "--workers",
            "1",
            "--backend-store-uri",
            backend,
            "--artifacts-destination",
            str(root / "mlflow" / "artifacts"),
            "--serve-artifacts",
        ],
    )


def start_servers(stack: Stack) -> None:
    """Start the MLflow and Prefect servers side by side and wait for both."""
    spawn_mlflow(stack)
    _spawn(
        stack,
        "prefect-server",
        [
            _bin("prefect"),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(stack.prefect_port),
        ],
    )
    # a first start on PostgreSQL runs every schema migration of both servers: minutes on a busy machine
    timeout = 300.0 if stack.postgres_port else 90.0
    wait_healthy(stack, "prefect-server", f"{stack.prefect_api_url}/health", timeout)
    wait_healthy(stack, "mlflow", f"{stack.mlflow_url}/health", timeout)


def prefect_cli(stack: Stack, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Run the Prefect CLI against the stack's server; its output, or StackError."""
    result = subprocess.run(
        [_bin("prefect"), "--no-prompt", *args],
        cwd=stack.root,
        env={**stack.env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise StackError(f"prefect {' '.join(args)} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    return result.stdout


def deployable(root: Path) -> list[str]:
    """Names of prefect.yaml deployments whose entrypoint file exists in this checkout."""
    spec = yaml.safe_load((root / "prefect.yaml").read_text())
    return [d["name"] for d in spec.get("deployments", []) if (root / d["entrypoint"].split(":")[0]).exists()]


def deploy(stack: Stack) -> list[str]:
    """Deploy prefect.yaml (the deployments whose entrypoints exist); their names."""
    names = deployable(Path(stack.root))
    if names:
        selection = (
            ["--all"] if len(names) == len(_declared(stack)) else [a for n in names for a in ("-n", n)]
        )
        prefect_cli(stack, "deploy", *selection, env=deploy_env(Path(stack.root)))
    return names


def deploy_env(root: Path) -> dict[str, str]:
    """Values prefect.yaml templates from the project configuration (params.yaml)."""
    settings = load_project_settings(root)
    return {"MODELMILL_TIMEZONE": settings.ops.timezone}


def _declared(stack: Stack) -> list[str]:
    spec = yaml.safe_load((Path(stack.root) / "prefect.yaml").read_text())
    return [d["name"] for d in spec.get("deployments", [])]


def up(
    root: str | Path,
    prefect_port: int | None = None,
    mlflow_port: int | None = None,
    mlflow_backend: str | None = None,
    with_postgres: bool = False,
) -> Stack:
    """Start the stack for the project at `root`; returns it once every part is healthy.
    `with_postgres`: first the project's PostgreSQL, which the Prefect server, the MLflow
    server and the Optuna storage (MODELMILL_OPTUNA_STORAGE) then run on."""
    root = Path(root).resolve()
    running = load_stack(root)
    if running and all(_alive(pid) for pid in running.pids.values()):
        raise StackError(f"the stack is already up ({running.prefect_url}); run `modelmill down` first")
    stack = Stack(
        root=str(root),
        prefect_port=prefect_port or free_port(),
        mlflow_port=mlflow_port or free_port(),
        worker_port=free_port(),
        mlflow_backend=mlflow_backend,
    )
    try:
        if with_postgres:
            start_postgres(stack)
        start_servers(stack)
        create_writer_limit(stack)
        prefect_cli(stack, "work-pool", "create", WORK_POOL, "--type", "process", "--overwrite")
        _spawn(
            stack,
            "worker",
            [
                _bin("prefect"),
                "worker",
                "start",
                "--pool",
                WORK_POOL,
                "--type",
                "process",
                "--with-healthcheck",
            ],
        )
        deploy(stack)
        wait_healthy(stack, "worker", f"http://127.0.0.1:{stack.worker_port}/health")
    except BaseException:
        down(root)
        raise
    return stack


def create_writer_limit(stack: Stack) -> None:
    """The global concurrency limit every writer flow takes a slot of (one writer at a time)."""
    from tasks.writers import WRITER_LIMIT

    try:
        prefect_cli(stack, "global-concurrency-limit", "create", WRITER_LIMIT, "--limit", "1")
    except StackError as exc:
        if "already exists" not in str(exc):
            raise


def start_postgres(stack: Stack) -> None:
    try:
        postgres.init(stack.state)
        stack.postgres_port = free_port()
        stack.pids["postgres"] = postgres.start(stack.state, stack.postgres_port)
    except postgres.PostgresError as exc:
        raise StackError(f"postgres: {exc}; see {postgres.base_dir(stack.state) / 'postgres.log'}") from None
    stack.mlflow_backend = postgres.url(stack.postgres_port, "mlflow")
    _save(stack)


def _stop(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM the process group we started (leader = pid), SIGKILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.1)


def down(root: str | Path) -> list[str]:
    """Stop exactly the processes recorded by `up` (worker first); the names stopped."""
    stack = load_stack(root)
    if stack is None:
        return []
    for name in ("worker", "prefect-server", "mlflow"):
        if name not in stack.pids:
            continue
        if still_ours(stack, name):
            _stop(stack.pids[name])
        elif _alive(stack.pids[name]):
            print(
                f"not signalling PID {stack.pids[name]} ({name}): its start time or command line is not "
                "the one `up` recorded (the PID was reused)",
                file=sys.stderr,
            )
    if "postgres" in stack.pids:  # the server's own fast shutdown, as its owner
        postgres.stop(stack.state)
    stack.record.unlink(missing_ok=True)
    return list(stack.pids)


def main(argv: list[str] | None = None) -> int:
    """`python -m flows.stack up|down|status [ROOT] [--postgres]` (`make up`, `make up-pg`, `make down`)."""
    argv = sys.argv[1:] if argv is None else argv
    with_postgres = "--postgres" in argv
    argv = [a for a in argv if a != "--postgres"]
    command, root = (argv + ["status"])[0], Path(argv[1] if len(argv) > 1 else ".")
    try:
        if command == "up":
            stack = up(
                root, prefect_port=free_port(4200), mlflow_port=free_port(5000), with_postgres=with_postgres
            )
            print(f"Prefect UI : {stack.prefect_url}\nMLflow UI  : {stack.mlflow_url}")
            if stack.postgres_port:
                print(
                    f"PostgreSQL : 127.0.0.1:{stack.postgres_port} "
                    f"(password in {postgres.passfile(stack.state)})"
                )
            print(f"logs and PIDs in {stack.record.parent}")
        elif command == "down":
            stopped = down(root)
            print(f"stopped: {', '.join(stopped)}" if stopped else "the stack is not running")
        else:
            stack = load_stack(root)
            print("the stack is not running" if stack is None else json.dumps(asdict(stack), indent=2))
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
