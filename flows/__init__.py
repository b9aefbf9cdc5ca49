"""Prefect flows, their tasks, the report and the CLI of customer-sync."""

# Importing this package changes no environment variable: Prefect's settings are put in
# place by flows.prefect_setup.configure_prefect(), which the CLI calls (a notebook calls
# it before importing flows.sync).
import logging as _logging

# INFO from our own modules tells the story of a run (they never log payloads or secrets).
for _name in ("adapters", "transforms", "flows"):
    if _logging.getLogger(_name).level == _logging.NOTSET:
        _logging.getLogger(_name).setLevel(_logging.INFO)
