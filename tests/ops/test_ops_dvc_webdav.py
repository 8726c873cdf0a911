"""A DVC remote over a real protocol: WebDAV served by wsgidav on 127.0.0.1 (a free port). A
first checkout pushes a data version there; a second clone elsewhere pulls it and reproduces
the same run fingerprint (tasks/reuse.py)."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.stack import free_port
from modelmill.config import load_settings
from modelmill.data import Dataset, load_dataset, write_dataset
from tasks.data import _repo, data_version, version_data
from tasks.reuse import code_version, run_fingerprint

pytestmark = [pytest.mark.slow]


@pytest.fixture
def webdav(tmp_path):
    """wsgidav sharing a folder on 127.0.0.1:<free port>; stopped by its process group."""
    share = tmp_path / "webdav-share"
    (share / "dvc").mkdir(parents=True)  # the remote's folder (DVC creates what is below it)
    port = free_port()
    wsgidav = Path(sys.executable).parent / "wsgidav"
    proc = subprocess.Popen(
        [str(wsgidav), "--host", "127.0.0.1", "--port", str(port), "--root", str(share)]
        + ["--auth", "anonymous", "--no-config", "-q", "--server", "uvicorn"],  # cheroot is not installed
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "wsgidav did not start"
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        yield f"webdav://127.0.0.1:{port}/dvc", share
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def files_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_second_clone_pulls_the_pushed_version_over_webdav_and_reproduces_the_fingerprint(
    project, webdav, tmp_path
):
    url, share = webdav
    settings = load_settings(project / "params.yaml")
    # a data version the built-in bootstrap cannot produce: only a pull can bring it back
    ds = load_dataset(project / "data")
    write_dataset(project / "data", Dataset(ds.schema, ds.items, ds.labels.iloc[40:].reset_index(drop=True)))
    version = version_data(project, settings, "drop 40 labels")
    subprocess.run(
        [sys.executable, "-m", "dvc", "remote", "add", "-d", "-f", "webdav", url], cwd=project, check=True
    )
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "data over WebDAV")
    with _repo(project) as repo:
        assert repo.push(remote="webdav") > 0
    assert any(p.is_file() for p in share.rglob("*")), "nothing arrived on the WebDAV share"
    fingerprint = run_fingerprint(settings, version, code_version())
    pushed = files_digest(project / "data")
    shutil.rmtree(
        project / ".modelmill", ignore_errors=True
    )  # the first checkout's local remote: only WebDAV is left

    clone = tmp_path / "second-clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    assert not (clone / "data").exists() and not (clone / ".dvc" / "cache").exists()
    with _repo(clone) as repo:
        repo.pull(remote="webdav")
    settings = load_settings(clone / "params.yaml")
    assert data_version(clone, settings) == version
    assert files_digest(clone / "data") == pushed
    assert run_fingerprint(settings, version, code_version()) == fingerprint
    with _repo(clone) as repo:
        assert not repo.status(cloud=True, remote="webdav")  # clone and remote agree
