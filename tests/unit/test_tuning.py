"""Tuning core on a real sqlite Optuna storage and the real digits data (tiny budgets)."""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import TrialState

import optuna
from modelmill import tuning
from modelmill.config import Settings, load_settings
from modelmill.data import bootstrap
from modelmill.errors import ConfigError, TuningError

TINY_SPACE = {
    "train.learning_rate": {"type": "float", "low": 1e-4, "high": 5e-2, "log": True},
    "train.optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
    "model.width": {"type": "categorical", "choices": [4, 8]},
    "model.depth": {"type": "int", "low": 1, "high": 2},
    "model.dropout": {"type": "float", "low": 0.0, "high": 0.3},
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return bootstrap(tmp_path_factory.mktemp("tune-data") / "data", "digits")


@pytest.fixture
def settings(data_dir, tmp_path):
    return load_settings(
        None,
        {
            "data.dir": str(data_dir),
            "tune.storage": f"sqlite:///{tmp_path}/optuna/optuna.db",
            "tune.trials": 3,
            "tune.epochs": 2,
            "tune.space": TINY_SPACE,
            "tune.pruner": "none",
            "tune.sampler_startup_trials": 2,
            "tune.heartbeat_interval": 1,
            "tune.grace_period": 2,
            "train.batch_size": 128,
            "train.device": "cpu",
        },
    )


def _study(result: tuning.TuneResult) -> optuna.Study:
    return optuna.load_study(study_name=result.study_name, storage=result.storage)


def test_space_errors_name_the_key():
    bad_spaces = {
        "train.lr": {"train.lr": {"type": "float", "low": 0.1, "high": 1}},
        "model.depth": {"model.depth": {"type": "int", "low": 1, "high": 9}},
        "train.optimizer": {"train.optimizer": {"type": "categorical", "choices": ["adam", "lbfgs"]}},
        "model.dropout": {"model.dropout": {"type": "float", "low": 0.3}},
        "train.learning_rate": {"train.learning_rate": {"type": "float", "low": 0, "high": 1, "log": True}},
    }
    for key, space in bad_spaces.items():
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_settings(None, {"tune.space": space})


def test_study_name_follows_data_version_and_space(settings):
    cfg = settings.tune
    name = tuning.study_name(cfg, "0123456789abcdef.dir")
    assert name == tuning.study_name(cfg, "0123456789abcdef.dir")
    assert name != tuning.study_name(cfg, "fedcba9876543210.dir")
    wider = settings.override(
        {"tune.space": {**TINY_SPACE, "model.width": {"type": "categorical", "choices": [4, 8, 16]}}}
    ).tune
    assert name != tuning.study_name(wider, "0123456789abcdef.dir")


def test_tune_stores_trials_and_resumes_to_more(settings, tmp_path):
    result = tuning.tune(settings, "v1", root=tmp_path)
    assert result.states["complete"] == 3 and result.best_value is not None
    assert set(result.best_overrides) == set(TINY_SPACE)
    assert 1e-4 <= result.best_params["train.learning_rate"] <= 5e-2
    first = {t.number: t.value for t in _study(result).trials}
    history = _study(result).best_trial.user_attrs[tuning.HISTORY_ATTR]
    assert [e["epoch"] for e in history] == [1, 2]

    again = tuning.tune(settings.override({"tune.trials": 5}), "v1", root=tmp_path)
    trials = _study(again).trials
    assert again.study_name == result.study_name and again.states["complete"] == 5
    assert {t.number: t.value for t in trials if t.number in first} == first
    final = settings.override(again.best_overrides)  # best params apply to the final model
    assert final.train.learning_rate == again.best_params["train.learning_rate"]


def test_median_pruner_prunes_unpromising_trials(settings, tmp_path):
    pruned = settings.override(
        {  # a hopeless learning rate beside a good one (seeded: bad, good, bad..)
            "tune.trials": 4,
            "tune.epochs": 3,
            "tune.pruner": "median",
            "tune.sampler_startup_trials": 4,
            "tune.pruner_startup_trials": 1,
            "tune.pruner_warmup_epochs": 0,
            "tune.space": {
                "train.learning_rate": {"type": "categorical", "choices": [0.02, 1e-6]},
                "model.width": {"type": "categorical", "choices": [4, 8]},
            },
        }
    )
    result = tuning.tune(pruned, "v1", root=tmp_path)
    assert result.states["pruned"] >= 1
    assert result.states["complete"] + result.states["pruned"] >= 4
    trial = next(t for t in _study(result).trials if t.state == TrialState.PRUNED)
    assert len(trial.user_attrs[tuning.HISTORY_ATTR]) < 3  # stopped before the epochs cap


def test_default_hyperband_pruner_prunes_unpromising_trials(settings, tmp_path):
    default = Settings().tune.pruner
    assert default == "hyperband"
    cfg = settings.override(
        {  # a hopeless learning rate beside a good one; random sampling throughout
            "tune.trials": 6,
            "tune.epochs": 4,  # hyperband rungs at epochs 1 and 3 (reduction factor 3)
            "tune.pruner": default,
            "tune.sampler_startup_trials": 6,
            "tune.space": {
                "train.learning_rate": {"type": "categorical", "choices": [0.02, 1e-6]},
                "model.width": {"type": "categorical", "choices": [4, 8]},
            },
        }
    )
    assert isinstance(tuning.make_pruner(cfg.tune), optuna.pruners.HyperbandPruner)
    result = tuning.tune(cfg, "v1", root=tmp_path)
    trials = _study(result).trials
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and result.states["complete"] + result.states["pruned"] == 6
    best = min(t.value for t in trials if t.state == TrialState.COMPLETE)
    for trial in pruned:  # stopped before the cap, behind the best trial when it stopped
        assert len(trial.user_attrs[tuning.HISTORY_ATTR]) < 4
        assert trial.intermediate_values[max(trial.intermediate_values)] > best


def test_new_data_version_warm_starts_from_previous_best(settings, tmp_path):
    old = tuning.tune(settings.override({"tune.trials": 2}), "v1", root=tmp_path)
    new = tuning.tune(settings.override({"tune.trials": 1}), "v2", root=tmp_path)
    assert new.study_name != old.study_name
    first = _study(new).trials[0]
    assert first.user_attrs.get("warm_start") is True and first.params == old.best_params


def test_unreachable_storage_is_one_clear_error(settings, tmp_path):
    broken = settings.override({"tune.storage": "postgresql://nobody@127.0.0.1:1/none"})
    with pytest.raises(TuningError, match="tune.storage"):
        tuning.tune(broken, "v1", root=tmp_path)


def test_two_worker_processes_share_one_study(settings, tmp_path):
    result = tuning.tune(settings.override({"tune.trials": 4, "tune.workers": 2}), "v1", root=tmp_path)
    numbers = [t.number for t in _study(result).trials]
    assert len(numbers) == len(set(numbers))
    # no worker starts a trial once the finished + running ones make the total (a race of
    # two workers checking in the same instant can add one: K-1 at most)
    assert 4 <= result.states["complete"] <= 5


def test_a_dead_workers_trial_is_failed_and_retried_not_counted(settings, tmp_path):
    """Killed with 2 trials complete and the 3rd running: the same run resumes to 3 complete."""
    import time

    first = tuning.tune(settings.override({"tune.trials": 2}), "v1", root=tmp_path)
    study = _study(first)
    orphan = study.ask()  # the trial a killed process left RUNNING, its heartbeat going stale
    study._storage.record_heartbeat(orphan._trial_id)
    time.sleep(settings.tune.grace_period + 1)
    result = tuning.tune(settings, "v1", root=tmp_path)
    trials = _study(result).trials
    assert trials[orphan.number].state == TrialState.FAIL
    assert result.states["complete"] == 3 and result.states["running"] == 0
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == orphan.number]
    assert retry and retry[0].state == TrialState.COMPLETE
