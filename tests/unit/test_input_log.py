"""modelmill.input_log: batches written off the caller's thread into rotating Parquet files,
never raising into the caller (a full queue drops, a failed write is counted)."""

import time

import pandas as pd

from modelmill.input_log import InputLog, InputLogLimits


def frame(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"a": range(start, start + n), "b": [0.5] * n})


def test_batches_become_files_of_bounded_rows_and_count(tmp_path):
    log = InputLog(
        tmp_path / "inputs", InputLogLimits(rows_per_file=25, max_files=3, flush_seconds=60)
    ).start()
    for i in range(10):
        log.offer(frame(10, 10 * i), "7")
    log.close()
    files = sorted((tmp_path / "inputs").glob("inputs-*.parquet"))
    assert len(files) == 3  # 100 rows in files of <= 25 rows: 4 or more written, the oldest removed
    kept = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    assert all(len(pd.read_parquet(f)) <= 25 for f in files)
    assert kept["a"].tolist() == sorted(kept["a"].tolist()) and kept["a"].iloc[-1] == 99
    assert set(kept["model_version"]) == {"7"} and str(kept["served_at"].dtype).startswith("datetime64")
    assert log.written == 100 and log.dropped == 0
    assert not list((tmp_path / "inputs").glob(".*"))  # no temp file left behind


def test_pending_rows_are_written_after_flush_seconds(tmp_path):
    log = InputLog(tmp_path, InputLogLimits(rows_per_file=1000, flush_seconds=0.2)).start()
    log.offer(frame(3), "1")
    deadline = time.monotonic() + 5
    while not list(tmp_path.glob("inputs-*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(pd.read_parquet(next(tmp_path.glob("inputs-*.parquet")))) == 3
    log.close()


def test_a_full_queue_drops_and_a_failed_write_is_counted(tmp_path):
    log = InputLog(tmp_path / "x", InputLogLimits(queued_batches=2))  # not started: nothing drains it
    for _ in range(5):
        log.offer(frame(4), "1")  # never blocks, never raises
    assert log.dropped == 12
    blocked = tmp_path / "file"
    blocked.write_text("a file where the folder should be")
    failing = InputLog(blocked / "inputs", InputLogLimits(flush_seconds=60)).start()
    failing.offer(frame(2), "1")
    failing.close()
    assert failing.failures == 1 and failing.written == 0
