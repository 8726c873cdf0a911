"""Prefect flows (the DAGs) and the modelmill CLI."""
