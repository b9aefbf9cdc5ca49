"""The Prefect flows of customer-sync and their tasks."""
