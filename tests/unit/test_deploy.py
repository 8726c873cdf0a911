"""Deployment files against the code: the compose file, the Dockerfile it builds and the
Kubernetes job template, parsed and compared with the CLIs, settings and env names the
code accepts (no Docker engine or Kubernetes runs here). Closed by default: loopback binds,
credentials only from the git-ignored env file, every image pinned."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest
import yaml

from flows import stack as local_stack
from modelmill.config import load_settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent
LOOPBACK_BIND = "${MODELMILL_BIND:-127.0.0.1}:"


@cache
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def services() -> dict:
    return compose()["services"]


def dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text()


def k8s() -> dict:
    return json.loads((DEPLOY / "k8s-job-template.json").read_text())


def argv(service: str) -> list[str]:
    command = services()[service]["command"]
    return command if isinstance(command, list) else shlex.split(command)


@cache
def help_text(*command: str) -> str:
    done = subprocess.run(
        [str(BIN / command[0]), *command[1:], "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def options(words: list[str]) -> list[str]:
    return [w.split("=")[0] for w in words if w.startswith("--")]


def project_version() -> str:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


# --- closed by default -------------------------------------------------------------------


def test_every_image_is_pinned_and_the_built_one_is_in_the_repository():
    for name, service in services().items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and re.search(r"\d+\.\d+", tag), (name, image)
        if "build" in service:
            assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
            assert image == f"modelmill:{project_version()}", name
    base = re.search(r"^FROM (\S+)", dockerfile(), re.M).group(1)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), base


def test_published_ports_bind_loopback_unless_told_otherwise():
    published = [(n, p) for n, s in services().items() for p in s.get("ports", [])]
    assert {n for n, _ in published} == {"prefect-server", "mlflow"}
    assert all(port.startswith(LOOPBACK_BIND) for _, port in published), published


def test_credentials_come_only_from_the_git_ignored_env_file():
    text = (DEPLOY / "docker-compose.yml").read_text()
    for userinfo in re.findall(r"://[^/\s:@]+:([^@\s]+)@", text):
        assert userinfo.startswith("${POSTGRES_PASSWORD"), userinfo
    for service in services().values():
        for key, value in (service.get("environment") or {}).items():
            assert not re.search("PASSWORD|SECRET|TOKEN", key) or str(value).startswith("${"), key
    referenced = set(re.findall(r"\$\{(\w+)", text))
    example = {
        line.split("=")[0] for line in (DEPLOY / "env.example").read_text().splitlines() if "=" in line
    }
    assert referenced == example == {"POSTGRES_PASSWORD", "MODELMILL_BIND"}
    assert services()["postgres"]["env_file"] == [".env"]
    ignored = subprocess.run(["git", "check-ignore", "-q", "deploy/.env"], cwd=REPO)
    tracked = subprocess.run(
        ["git", "ls-files", "--error-unmatch", "deploy/.env"], cwd=REPO, capture_output=True
    )
    assert ignored.returncode == 0 and tracked.returncode != 0


# --- commands, ports and env names against what the code accepts --------------------------


def test_server_commands_use_options_the_servers_accept_on_the_published_ports():
    for service, prefix in (
        ("prefect-server", ("prefect", "server", "start")),
        ("mlflow", ("mlflow", "server")),
    ):
        words = argv(service)
        assert tuple(words[: len(prefix)]) == prefix
        assert set(options(words)) <= set(re.findall(r"--[\w-]+", help_text(*prefix))), service
        port = words[words.index("--port") + 1]
        assert services()[service]["ports"] == [f"{LOOPBACK_BIND}{port}:{port}"]
    urls = services()["worker"]["environment"]
    assert (
        urls["PREFECT_API_URL"]
        == f"http://prefect-server:{argv('prefect-server')[argv('prefect-server').index('--port') + 1]}/api"
    )
    assert (
        urls["MLFLOW_TRACKING_URI"] == f"http://mlflow:{argv('mlflow')[argv('mlflow').index('--port') + 1]}"
    )


def test_worker_serves_the_pool_prefect_yaml_deploys_to_from_the_mounted_checkout():
    script = " ".join(argv("worker")[2:])
    steps = [shlex.split(step) for step in script.split("&&")]
    assert steps[0][:4] == ["prefect", "work-pool", "create", local_stack.WORK_POOL]
    assert steps[1] == ["prefect", "--no-prompt", "deploy", "--all"]
    assert steps[2][:5] == ["prefect", "worker", "start", "--pool", local_stack.WORK_POOL]
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    assert {d["work_pool"]["name"] for d in spec["deployments"]} == {local_stack.WORK_POOL}
    root = services()["worker"]["environment"]["MODELMILL_ROOT"]
    assert services()["worker"]["working_dir"] == root
    assert services()["worker"]["volumes"] == [f"./..:{root}"]
    assert "{{ $MODELMILL_ROOT }}" in (REPO / "prefect.yaml").read_text()


def test_dask_services_form_a_cluster_modelmill_tune_accepts():
    scheduler, worker = argv("dask-scheduler"), argv("dask-worker")
    assert scheduler[:2] == ["dask", "scheduler"] and worker[:2] == ["dask", "worker"]
    assert set(options(scheduler)) <= set(re.findall(r"--[\w-]+", help_text("dask", "scheduler")))
    assert set(options(worker)) <= set(re.findall(r"--[\w-]+", help_text("dask", "worker")))
    address = f"tcp://dask-scheduler:{scheduler[scheduler.index('--port') + 1]}"
    assert worker[2] == address and worker[worker.index("--nthreads") + 1] == "1"
    assert load_settings(None, {"tune.cluster": address}).tune.cluster == address
    assert "--cluster" in help_text("modelmill", "tune")


def known_env_names() -> set[str]:
    from prefect.settings import Settings
    from prefect.settings.legacy import _get_valid_setting_names

    from mlflow import environment_variables

    stack = local_stack.Stack(root=str(REPO), prefect_port=1, mlflow_port=2, worker_port=3)
    templated = set(re.findall(r"\$(\w+)", (REPO / "prefect.yaml").read_text()))
    return (
        _get_valid_setting_names(Settings)
        | {n for n in dir(environment_variables) if n.startswith("MLFLOW_")}
        | set(local_stack.project_env(REPO))
        | {k for k in stack.env() if k.startswith(("PREFECT_", "MLFLOW_"))}
        | set(local_stack.deploy_env(REPO))
        | templated
        | {"MODELMILL_OPTUNA_STORAGE", "PGPASSWORD"}  # tasks/tune.py; libpq (psycopg2)
    )


def test_every_env_name_is_one_the_code_or_its_servers_read():
    known = known_env_names()
    for name, service in services().items():
        unknown = set(service.get("environment") or {}) - known - {"POSTGRES_USER", "POSTGRES_DB"}
        assert not unknown, (name, unknown)
    docker_env = set(re.findall(r"^\s+(\w+)=", dockerfile(), re.M)) - {"PYTHONDONTWRITEBYTECODE"}
    assert docker_env - {"PIP_NO_CACHE_DIR", "PIP_DISABLE_PIP_VERSION_CHECK", "DO_NOT_TRACK"} <= known


def test_dockerfile_installs_this_project_and_copies_files_that_exist():
    text = dockerfile()
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        for source in line.split()[:-1]:
            assert (REPO / source).exists(), source
    assert re.search(r"^RUN pip install \. ", text, re.M)
    assert "modelmill" in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert 'CMD ["modelmill", "--help"]' in text
    root = re.search(r"MODELMILL_ROOT=(\S+)", text).group(1)
    assert re.search(rf"^WORKDIR {root}$", text, re.M)


# --- the Kubernetes work-pool job template -------------------------------------------------


def test_k8s_job_template_declares_every_placeholder_it_uses():
    template = k8s()
    used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", json.dumps(template["job_configuration"])))
    assert used == set(template["variables"]["properties"])


def test_k8s_job_template_runs_the_compose_image_with_its_env_and_no_secrets():
    template, props = k8s(), k8s()["variables"]["properties"]
    assert props["image"]["default"] == services()["worker"]["image"]
    env = props["env"]["default"]
    assert set(env) == set(compose()["x-modelmill"]["environment"])
    assert not [k for k in env if re.search("PASSWORD|SECRET|TOKEN", k)]
    assert not [v for v in env.values() if re.search(r"://[^/@]+:[^@]+@", v)]
    container = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert container["workingDir"] == env["MODELMILL_ROOT"] == container["volumeMounts"][0]["mountPath"]
    uid = int(re.search(r"--uid (\d+)", dockerfile()).group(1))
    pod = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": uid}


@pytest.mark.parametrize("name", ["prefect-server", "mlflow", "worker", "dask-scheduler", "dask-worker"])
def test_services_of_the_image_run_console_scripts_the_image_installs(name):
    executable = argv(name)[0]
    installed = {"prefect", "mlflow", "dask", "modelmill"}
    assert executable in installed or (executable == "sh" and argv(name)[2].split()[0] in installed)
    assert all((BIN / exe).exists() for exe in installed)
