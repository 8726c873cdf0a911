"""Prefect tasks: thin adapters that call the core, log to MLflow and touch DVC."""
