"""`modelmill data import` as a user runs it: bad input is one line and changes nothing;
a good table becomes a new DVC data version."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = str(Path(sys.executable).with_name("modelmill"))


def modelmill(*args, cwd):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_TRACKING"))}
    return subprocess.run([CLI, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def state(project: Path) -> dict[str, str]:
    files = [project / "data.dvc", *(project / "data").rglob("*"), *(project / ".dvc" / "cache").rglob("*")]
    return {
        str(p.relative_to(project)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.is_file()
    }


def test_bad_table_is_one_line_and_data_dvc_and_cache_stay_byte_identical(project, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,target\n" + "".join(f"{i},{i % 2}\n" for i in range(40)) + "forty,1\n")
    before = state(project)
    result = modelmill("data", "import", str(bad), cwd=project)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {bad}, row 41, column 'a': text 'forty' in a numeric column"
    ]
    assert state(project) == before


def test_table_import_makes_a_new_data_version(project, tmp_path):
    rows = "".join(f"k{i},{i % 7}.5,{'ab'[i % 2]},{'yes' if i % 3 else 'no'}\n" for i in range(150))
    (tmp_path / "t.csv").write_text("key,x,group,outcome\n" + rows)
    old = (project / "data.dvc").read_text()
    result = modelmill(
        "data", "import", str(tmp_path / "t.csv"), "--target", "outcome", "--id", "key", cwd=project
    )
    assert result.returncode == 0, result.stderr
    assert "tabular dataset 't': 150 items, 150 labeled, classes ['no', 'yes']" in result.stdout
    assert "x (numeric), group (categorical)" in result.stdout
    new = (project / "data.dvc").read_text()
    assert new != old and new.split("md5: ")[1].split()[0] in result.stdout
    assert "up to date" in modelmill("data", "status", cwd=project).stdout


def _photos(root: Path) -> Path:
    """An RGB folder of two sizes (PNG and JPEG): reddish `apple`, bluish `berry`."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, color in (("apple", (200, 40, 40)), ("berry", (40, 40, 200))):
        (root / label).mkdir(parents=True)
        for i in range(60):
            w, h = (24, 24) if i % 2 else (40, 30)
            grid = np.clip(np.array(color) + rng.integers(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(grid).save(root / label / f"{i:03d}.{'png' if i % 2 else 'jpg'}")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["tabular", "image"])
def test_import_then_run_trains_and_registers(project, tmp_path, kind):
    if kind == "tabular":
        rows = "".join(f"{i % 11}.5,{'ab'[i % 2]},{'yes' if (i % 11) > 5 else 'no'}\n" for i in range(300))
        (tmp_path / "t.csv").write_text("x,group,target\n" + rows)
        args = [str(tmp_path / "t.csv")]
    else:
        args = [str(_photos(tmp_path / "photos")), "--size", "16x16"]
    imported = modelmill("data", "import", *args, cwd=project)
    assert imported.returncode == 0, imported.stderr
    result = modelmill("run", "--epochs", "2", cwd=project)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "version 1: promoted to champion" in result.stdout


HOLD = """
import sys, time
from modelmill.lock import project_lock
with project_lock(sys.argv[1], "import-labels"):
    print("held", flush=True)
    time.sleep(120)
"""


def test_data_import_waits_for_the_project_lock_and_names_its_holder(project, tmp_path):
    table = tmp_path / "table.csv"
    table.write_text("a,target\n" + "".join(f"{i},{i % 2}\n" for i in range(60)))
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("lock_timeout:", "lock_timeout: 1  #", 1))
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(project)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = state(project)
        result = modelmill("data", "import", str(table), cwd=project)
        assert result.returncode == 1
        assert f"held by PID {holder.pid} (import-labels" in result.stderr
        assert state(project) == before
    finally:
        holder.kill()
        holder.wait()
