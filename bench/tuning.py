"""Benchmark: Optuna tuning on the default data (digits), side by side in one run.

(a) N trials with pruning (median, hyperband) vs without: wall time ratio and best value,
    over several sampler seeds. One seed says little: TPE explores differently once trials
    are pruned, and one sampled architecture (batch 32, width 32) costs 4x another, so the
    table sums the wall time over the seeds and gives the best value's mean and range.
(b) K=1 vs K=2 workers on one study: speed-up (torch threads = 1 per worker), with a
    control (two plain trainings one after the other vs at once) showing what the machine
    itself gives to a second process right now.
(c) trials on Dask through prefect-dask (tune.cluster local:1 vs local:2, each trial a
    Prefect task run) beside the built-in pool (K=1, K=2) on the same trials, with the same
    control: the Dask speed-up and its overhead per trial against the pool. Each trial runs
    the configuration's epochs cap (tune.epochs: 20 by default) unless --dask-epochs: a
    cluster's fixed costs (starting the workers, their first imports, closing) weigh on
    trials of a few seconds, and the table prints them beside the speed-up.

    python bench/tuning.py [--trials 30] [--epochs 20] [--seeds 3] [--parallel-trials 30]
                           [--dask-trials 24] [--dask-epochs N]
                           [--set tune.pruner_warmup_epochs=1 ...] [--only pruning|workers|dask]

Each configuration tunes a fresh study in its own temporary sqlite storage; the epochs cap
and pruner settings are those of params.yaml unless given. Compare the ratios.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.env import configure  # noqa: E402

# Prefect state in a temp folder, set before anything imports prefect (it reads its settings once)
_STATE = tempfile.mkdtemp(prefix="modelmill-bench-tune-state-")
atexit.register(shutil.rmtree, _STATE, ignore_errors=True)
configure(_STATE)
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "600"  # a busy machine

import yaml  # noqa: E402

import optuna  # noqa: E402
from modelmill import tuning  # noqa: E402
from modelmill.config import Settings, load_settings  # noqa: E402
from modelmill.data import bootstrap  # noqa: E402
from modelmill.kinds import image as image_kind  # noqa: E402
from modelmill.models import build_model  # noqa: E402
from modelmill.training import train  # noqa: E402


def run_study(base: Settings, workdir: Path, label: str, **overrides) -> dict:
    store = workdir / label
    store.mkdir()
    settings = base.override({"tune.storage": f"sqlite:///{store}/optuna.db", **overrides})
    started = time.perf_counter()
    if settings.tune.cluster:  # through prefect-dask: the tasks run on an ephemeral Prefect API
        from tasks.tune_dask import tune_on_cluster

        result = tune_on_cluster(settings, "bench", [], settings.tune.cluster, root=store)
    else:
        result = tuning.tune(settings, "bench", root=store)
    seconds = time.perf_counter() - started
    epochs = sum(
        len(t.user_attrs.get(tuning.HISTORY_ATTR, []))
        for t in optuna.load_study(study_name=result.study_name, storage=result.storage).trials
    )
    return {
        "label": label,
        "seconds": seconds,
        "best": result.best_value,
        "epochs": epochs,
        "complete": result.states["complete"],
        "pruned": result.states["pruned"],
    }


def print_table(title: str, rows: list[dict], reference: dict) -> None:
    print(f"\n{title}")
    print(
        f"{'configuration':<22}{'wall s':>9}{'x faster':>10}{'time saved':>12}{'best val':>10}"
        f"{'epochs':>8}{'complete':>10}{'pruned':>8}"
    )
    for row in rows:
        speedup = reference["seconds"] / row["seconds"]
        saved = 1 - row["seconds"] / reference["seconds"]
        print(
            f"{row['label']:<22}{row['seconds']:>9.1f}{speedup:>10.2f}{saved:>11.0%}"
            f"{row['best']:>10.4f}{row['epochs']:>8}{row['complete']:>10}{row['pruned']:>8}"
        )


def pruning_table(trials: int, seeds: list[int], runs: dict[str, list[dict]]) -> None:
    """Per configuration: wall time summed over the seeds, best value mean and range."""
    reference = sum(r["seconds"] for r in runs["no pruning"])
    print(f"\n(a) pruning vs none: {trials} trials x {len(seeds)} sampler seeds {seeds}")
    print(
        f"{'configuration':<22}{'wall s':>9}{'x faster':>10}{'time saved':>12}{'best mean':>11}"
        f"{'best range':>19}{'epochs':>8}{'complete':>10}{'pruned':>8}"
    )
    for label, rows in runs.items():
        wall, bests = sum(r["seconds"] for r in rows), [r["best"] for r in rows]
        print(
            f"{label:<22}{wall:>9.1f}{reference / wall:>10.2f}{1 - wall / reference:>11.0%}"
            f"{statistics.mean(bests):>11.4f}{f'{min(bests):.4f}-{max(bests):.4f}':>19}"
            f"{sum(r['epochs'] for r in rows):>8}{sum(r['complete'] for r in rows):>10}"
            f"{sum(r['pruned'] for r in rows):>8}"
        )
    for label, rows in runs.items():
        print(
            f"  {label:<20} per seed: " + ", ".join(f"{r['seconds']:.1f} s / {r['best']:.4f}" for r in rows)
        )


def control_job(data_dir: str, epochs: int) -> None:
    """One fixed training run, 1 torch thread: the unit of work of the parallelism control."""
    settings = load_settings(
        None,
        {
            "data.dir": data_dir,
            "train.device": "cpu",
            "train.epochs": epochs,
            "train.patience": epochs,
            "train.num_threads": 1,
        },
    )
    splits = tuning.load_splits(settings)
    model = build_model(splits["schema"].image_shape, len(splits["schema"].classes), settings.model)
    train(model, splits["train"], splits["val"], settings.train)


def control(data_dir: Path, epochs: int) -> tuple[float, float]:
    """The machine's own 2-process speed-up now: 2 plain training processes one after the
    other vs at once (no Optuna). Other load on the machine shows up here too."""

    def jobs(at_once: bool) -> float:
        cmd = [sys.executable, __file__, "--control-job", str(data_dir), "--epochs", str(epochs)]
        started = time.perf_counter()
        if at_once:
            procs = [subprocess.Popen(cmd) for _ in range(2)]
            assert all(p.wait() == 0 for p in procs)
        else:
            for _ in range(2):
                subprocess.run(cmd, check=True)
        return time.perf_counter() - started

    return jobs(False), jobs(True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=None, help="epochs cap per trial (tune.epochs)")
    parser.add_argument("--seeds", type=int, default=3, help="sampler seeds for (a), from tune.sampler_seed")
    parser.add_argument("--parallel-trials", type=int, default=30)
    parser.add_argument("--pruners", default="median,hyperband")
    parser.add_argument("--config", default="params.yaml")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a configuration override (YAML value), e.g. tune.pruner_warmup_epochs=1",
    )
    parser.add_argument("--dask-trials", type=int, default=24)
    parser.add_argument(
        "--dask-epochs", type=int, default=None, help="epochs per trial in (c) (default: tune.epochs)"
    )
    parser.add_argument("--only", choices=["pruning", "workers", "dask"], default=None)
    parser.add_argument("--control-job", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.control_job:
        control_job(args.control_job, args.epochs)
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = Path(args.config) if Path(args.config).exists() else None
    extra = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}

    with tempfile.TemporaryDirectory(prefix="modelmill-bench-tune-") as tmp:
        workdir = Path(tmp)
        data = bootstrap(workdir / "data", "digits")
        base = load_settings(
            config,
            {
                "data.dir": str(data),
                "train.device": "cpu",
                "tune.threads_per_worker": 1,
                "tune.epochs": args.epochs,
                "tune.timeout": None,
                "tune.warm_start": False,
                "tune.workers": 1,
                "tune.trials": args.trials,
                **extra,
            },
        )
        epochs, first_seed = base.tune.epochs, base.tune.sampler_seed
        print(
            f"digits, {args.trials} trials x <= {epochs} epochs, metric {base.tune.metric}, "
            f"median pruner: {base.tune.pruner_startup_trials} startup trials, "
            f"{base.tune.pruner_warmup_epochs} warm-up epochs; {os.cpu_count()} CPUs, "
            f"load avg {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        if args.only == "dask":
            dask_section(base, workdir, data, args.dask_trials, args.dask_epochs or base.tune.epochs)
            return
        if args.only != "workers":
            seeds = [first_seed + i for i in range(args.seeds)]
            labels = {"no pruning": "none", **{f"pruner {p}": p for p in args.pruners.split(",") if p}}
            runs: dict[str, list[dict]] = {label: [] for label in labels}
            for seed in seeds:  # interleaved: a slow spell of the machine hits every configuration
                for label, pruner in labels.items():
                    row = run_study(
                        base,
                        workdir,
                        f"{label} {seed}".replace(" ", "-"),
                        **{"tune.pruner": pruner, "tune.sampler_seed": seed},
                    )
                    runs[label].append(row)
                    print(
                        f"  seed {seed} {label}: {row['seconds']:.1f} s, best {row['best']:.4f}", flush=True
                    )
            pruning_table(args.trials, seeds, runs)
        if args.only == "pruning":
            return

        # same compute per trial, so the ratio measures parallelism, not which architectures
        # each run happened to sample
        fixed = fixed_compute(base, args.parallel_trials, epochs)
        serial = run_study(base, workdir, "1 worker", **fixed)
        parallel = run_study(base, workdir, "2 workers", **fixed, **{"tune.workers": 2})
        print_table(
            f"(b) workers, {args.parallel_trials} trials x {epochs} epochs, fixed "
            "architecture, no pruning, 1 torch thread each",
            [serial, parallel],
            serial,
        )
        one_by_one, at_once = control(data, epochs)
        print(
            f"control: 2 plain training processes ({epochs} epochs each) one after the other "
            f"{one_by_one:.1f} s, at once {at_once:.1f} s: the machine's 2-process speed-up now is "
            f"{one_by_one / at_once:.2f}x (2.0 = two idle cores)"
        )
        if args.only is None:
            dask_section(base, workdir, data, args.dask_trials, args.dask_epochs or base.tune.epochs)
        print(f"\nload avg at the end {os.getloadavg()[0]:.1f} (other processes skew the timings)")
    return


def fixed_compute(base: Settings, trials: int, epochs: int) -> dict:
    """Same compute per trial (architecture and batch fixed, no pruning, no early stopping)."""
    return {
        "tune.pruner": "none",
        "tune.trials": trials,
        "tune.epochs": epochs,
        "train.patience": epochs,
        "tune.space": {
            k: v.model_dump()
            for k, v in base.tune.space_for(image_kind.SEARCH_SPACE).items()
            if k in ("train.learning_rate", "train.weight_decay", "model.dropout")
        },
    }


def dask_section(base: Settings, workdir: Path, data: Path, trials: int, epochs: int) -> None:
    """(c) Dask 1 vs 2 workers, beside the built-in pool and the machine's own control."""
    from tasks.tune_dask import api_for_workers, task_runner

    with api_for_workers():  # the ephemeral Prefect API up before any timing
        started = time.perf_counter()
        with task_runner("local:2") as runner:
            runner.client.wait_for_workers(2)
        cluster_start = time.perf_counter() - started
        fixed = fixed_compute(base, trials, epochs)
        rows = {}
        for label, extra in (
            ("pool K=1", {"tune.workers": 1}),
            ("pool K=2", {"tune.workers": 2}),
            ("dask local:1", {"tune.cluster": "local:1"}),
            ("dask local:2", {"tune.cluster": "local:2"}),
        ):
            rows[label] = run_study(base, workdir, label.replace(" ", "-").replace(":", ""), **fixed, **extra)
            print(f"  {label}: {rows[label]['seconds']:.1f} s", flush=True)
    one_by_one, at_once = control(data, epochs)
    print_table(
        f"(c) Dask through prefect-dask vs the built-in pool, {trials} trials x {epochs} epochs, "
        "fixed architecture, no pruning, 1 torch thread per worker",
        list(rows.values()),
        rows["pool K=1"],
    )
    dask_speedup = rows["dask local:1"]["seconds"] / rows["dask local:2"]["seconds"]
    print(
        f"Dask 2 workers vs 1: {dask_speedup:.2f}x (target >= 1.7x: "
        f"{'PASS' if dask_speedup >= 1.7 else 'MISS'}); control now: 2 plain trainings one after the "
        f"other {one_by_one:.1f} s, at once {at_once:.1f} s = {one_by_one / at_once:.2f}x"
    )
    for k in (1, 2):
        extra = rows[f"dask local:{k}"]["seconds"] - rows[f"pool K={k}"]["seconds"]
        print(
            f"Dask overhead vs the pool, {k} worker(s): {extra:+.1f} s in all = {extra / trials:+.2f} s "
            f"per trial (includes starting the cluster once: {cluster_start:.1f} s for local:2)"
        )


if __name__ == "__main__":
    main()
