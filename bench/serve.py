"""Serving benchmark on 127.0.0.1, against a project that has a champion (e.g. after `modelmill run`):

1. 50 requests/s for --seconds with the champion alias flipped twice (to a copy version and back):
   failed requests, old answers after the first new one, seconds from flip to the new version,
   batch-1 latency p50 / p99.
2. Saturation: --clients closed-loop clients (keep-alive http.client connections) for --sat-seconds
   against `modelmill serve` and `mlflow models serve` of the same version, side by side:
   requests/s and p99, with ratios.
3. Batch: `modelmill.batch.predict_file` on --rows rows against the pyfunc model's own `predict`.

    python bench/serve.py -C PROJECT [--seconds 60] [--clients 8] [--rows 100000]

Registers one extra version (a copy of the champion) for the flips and puts the alias back.
"""

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.stack import free_port  # noqa: E402


def start(cmd: list[str], url: str, env: dict[str, str]) -> subprocess.Popen:
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                               start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/health", timeout=1).status_code == 200:
                return process
        except requests.ConnectionError:
            time.sleep(0.3)
    stop(process)
    raise SystemExit(f"{cmd[:4]} not healthy in 120 s")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


class Connection:
    """One keep-alive HTTP/1.1 connection (http.client): a light client, so that what saturates is
    the server, not the load generator (requests spends about 1 ms of client CPU per call)."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.host, self.port, self.conn = parts.hostname, parts.port, None

    def post(self, path: str, payload: bytes, timeout: float) -> tuple[int, str]:
        """(status, X-Model-Version), 0 on a failure. A kept-alive connection the server closed
        meanwhile is reopened and the request sent once more (as urllib3 does), never a fresh one."""
        for _ in (0, 1):
            reused = self.conn is not None
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
                self.conn.request("POST", path, payload, {"Content-Type": "application/json"})
                response = self.conn.getresponse()
                response.read()
                return response.status, response.getheader("X-Model-Version", "")
            except (OSError, http.client.HTTPException):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if not reused:
                    break
        return 0, ""


def paced(
    url: str, body: dict, rate: float, seconds: float, on_tick=None
) -> list[tuple[float, float, int, str]]:
    """Open-loop load at `rate` requests/s: (sent, latency, status, version) per request."""
    records, lock, threads = [], threading.Lock(), []
    local = threading.local()

    payload = json.dumps(body).encode()

    def one(sent: float) -> None:
        conn = getattr(local, "conn", None) or Connection(url)
        local.conn = conn
        status, version = conn.post("/invocations", payload, timeout=10)
        rec = (sent, time.monotonic() - sent, status, version)
        with lock:
            records.append(rec)

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:
        start_at = time.monotonic()
        for i in range(int(rate * seconds)):
            due = start_at + i / rate
            time.sleep(max(0.0, due - time.monotonic()))
            threads.append(pool.submit(one, time.monotonic()))
            if on_tick:
                on_tick(time.monotonic() - start_at)
    return records


def saturate(url: str, body: dict, clients: int, seconds: float) -> tuple[float, float]:
    """Closed-loop clients back to back: (requests/s, p99 ms) of the successful requests."""
    latencies, lock, stop_at = [], threading.Lock(), time.monotonic() + seconds

    payload = json.dumps(body).encode()

    def client() -> None:
        conn = Connection(url)
        while time.monotonic() < stop_at:
            t = time.monotonic()
            ok = conn.post("/invocations", payload, timeout=30)[0] == 200
            with lock:
                latencies.append(time.monotonic() - t if ok else float("nan"))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    good = np.asarray([x for x in latencies if not np.isnan(x)])
    return len(good) / seconds, float(np.percentile(good, 99) * 1000)


def flip_phase(args, client, name: str, url: str, body: dict) -> None:
    from tasks.aliases import CHAMPION, alias_target, move_alias

    first = alias_target(client, name, CHAMPION)
    mv = client.get_model_version(name, first)
    copy = str(client.create_model_version(name, mv.source, mv.run_id, tags=mv.tags).version)
    flips: list[tuple[float, str]] = []
    plan = [(args.seconds / 3, first, copy), (2 * args.seconds / 3, copy, first)]

    def tick(elapsed: float) -> None:
        if len(flips) < len(plan) and elapsed >= plan[len(flips)][0]:
            _, old, new = plan[len(flips)]
            move_alias(client, name, CHAMPION, new, old, "bench flip", "bench/serve.py")
            flips.append((time.monotonic(), new))

    records = paced(url, body, 50, args.seconds, tick)
    failed = sum(1 for r in records if r[2] != 200)
    lat = np.asarray([r[1] for r in records if r[2] == 200]) * 1000
    print(f"50 req/s for {args.seconds:.0f} s, 2 flips: {len(records)} requests, {failed} failed, "
          f"batch-1 p50 {np.percentile(lat, 50):.2f} ms, p99 {np.percentile(lat, 99):.2f} ms")  # fmt: skip
    for at, new in flips:
        answered = [r for r in records if r[3] == new and r[0] >= at]
        first_new = min(r[0] + r[1] for r in answered) if answered else float("inf")
        late_old = sum(
            1 for r in records if r[0] >= first_new and r[3] != new and r[0] < at + args.seconds / 3
        )
        print(f"  flip to v{new}: served {first_new - at:.2f} s after the flip; "
              f"old answers after the first new one: {late_old}")  # fmt: skip
    if alias_target(client, name, CHAMPION) != first:
        move_alias(client, name, CHAMPION, first, alias_target(client, name, CHAMPION), "bench done", "bench")


def batch_phase(args, client, name: str, version: str) -> None:
    import mlflow.pyfunc
    import pandas as pd

    from modelmill.batch import predict_file
    from modelmill.scoring import scorer_of
    from tasks.modelstore import load_verified

    items = pd.read_parquet(Path(args.project_dir, "data", "items.parquet"))
    rows = items.iloc[np.arange(args.rows) % len(items)].reset_index(drop=True)
    scorer = scorer_of(load_verified(client, name, version), max_batch=10_000)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp, "rows.parquet")
        rows.to_parquet(source)
        t = time.perf_counter()
        predict_file(scorer, source, Path(tmp, "out.parquet"), version, 10_000)
        ours = args.rows / (time.perf_counter() - t)
    x = scorer.preprocessor.transform(rows).numpy()
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    t = time.perf_counter()
    for i in range(0, len(x), 10_000):
        pyfunc.predict(x[i : i + 10_000])
    theirs = args.rows / (time.perf_counter() - t)
    print(f"batch {args.rows} rows: modelmill predict (read, preprocess, score, write) {ours:,.0f} rows/s; "
          f"pyfunc predict (preprocessed tensors only) {theirs:,.0f} rows/s; "
          f"ratio {ours / theirs:.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-C", "--project-dir", default=".")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--sat-seconds", type=float, default=15)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--no-flips", action="store_true", help="skip phase 1")
    args = parser.parse_args()
    from flows.env import configure

    configure(args.project_dir)
    from modelmill.config import load_project_settings
    from tasks.aliases import CHAMPION, alias_target
    from tasks.tracking import connect, tracking_uri

    settings = load_project_settings(args.project_dir)
    client, _ = connect(settings, args.project_dir)
    name = settings.registry.model_name
    version = alias_target(client, name, CHAMPION)
    body = {"inputs": np.zeros((1, 1, 8, 8)).tolist()}
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "MLFLOW_TRACKING_URI":
           tracking_uri(settings, args.project_dir),
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}  # fmt: skip
    port = free_port()
    ours = start([sys.executable, "-m", "flows.cli", "serve", "-C", args.project_dir, "--port", str(port)],
                 f"http://127.0.0.1:{port}", env)  # fmt: skip
    try:
        if not args.no_flips:
            flip_phase(args, client, name, f"http://127.0.0.1:{port}", body)
        our_rps, our_p99 = saturate(f"http://127.0.0.1:{port}", body, args.clients, args.sat_seconds)
    finally:
        stop(ours)
    mport = free_port()
    mlflow_cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{name}/{version}",
                  "--env-manager", "local", "-h", "127.0.0.1", "-p", str(mport), "-w", "1"]  # fmt: skip
    theirs = start(mlflow_cmd, f"http://127.0.0.1:{mport}", env)
    try:
        mlflow_rps, mlflow_p99 = saturate(f"http://127.0.0.1:{mport}", body, args.clients, args.sat_seconds)
    finally:
        stop(theirs)
    print(f"saturation, {args.clients} clients, {args.sat_seconds:.0f} s, 1 worker each:")
    print(f"  modelmill serve     {our_rps:8.0f} req/s   p99 {our_p99:7.2f} ms")
    print(f"  mlflow models serve {mlflow_rps:8.0f} req/s   p99 {mlflow_p99:7.2f} ms")
    print(f"  ratio               {our_rps / mlflow_rps:8.2f}x         {our_p99 / mlflow_p99:7.2f}x")
    batch_phase(args, client, name, version)


if __name__ == "__main__":
    main()
