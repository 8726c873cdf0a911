"""`modelmill data import` as a user runs it: bad input is one line and changes nothing;
a good table becomes a new DVC data version."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

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
