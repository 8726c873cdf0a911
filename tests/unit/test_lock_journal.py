"""The project lock (one writer, holder named, re-entrant) and the write journal, on real files."""

import subprocess
import sys
import time

import pytest

from modelmill import journal
from modelmill.data import bootstrap
from modelmill.errors import LockTimeout
from modelmill.lock import holder, is_held, project_lock

HOLD = """
import sys, time
from modelmill.lock import project_lock
with project_lock(sys.argv[1], "import-labels"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_writer_times_out_naming_the_holder_pid_and_command(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        assert is_held(tmp_path)
        start = time.monotonic()
        with (
            pytest.raises(LockTimeout, match=rf"held by PID {proc.pid} \(import-labels, since "),
            project_lock(tmp_path, "retrain", timeout=0.5),
        ):
            pass
        assert 0.4 < time.monotonic() - start < 5
    finally:
        proc.kill()  # SIGKILL: the OS frees the lock with the process
        proc.wait()
    with project_lock(tmp_path, "retrain", timeout=5):
        assert holder(tmp_path)["command"] == "retrain"


def test_the_lock_is_reentrant_in_one_process_and_free_after(tmp_path):
    with project_lock(tmp_path, "retrain", timeout=1):
        with project_lock(tmp_path, "import-labels", timeout=0):  # retrain runs the import flow inside
            assert is_held(tmp_path)
        assert is_held(tmp_path)
    assert not is_held(tmp_path)


def test_journal_entries_are_pending_until_ended(tmp_path):
    assert journal.pending(tmp_path) == []
    journal.begin(tmp_path, "import-labels", "abc.dir", exports=["e1"], paths=["/x.json"])
    (entry,) = journal.pending(tmp_path)
    assert (entry.op, entry.version_before, entry.details["exports"]) == ("import-labels", "abc.dir", ["e1"])
    journal.end(tmp_path, "import-labels")
    assert journal.pending(tmp_path) == []


def test_folder_md5_is_the_version_dvc_records_for_the_builtin_digits(tmp_path):
    from tests.conftest import REPO

    committed = (REPO / "data.dvc").read_text().split("md5: ")[1].split()[0]
    assert journal.folder_md5(bootstrap(tmp_path / "data", "digits")) == committed
