"""Prefect flows, their tasks, the report and the CLI of customer-sync."""

import os

# Settings that must be in place before Prefect is imported anywhere in this package:
# our own modules log through the standard logging tree, and Prefect attaches those
# loggers to the run's log; analytics off avoids a "database is locked" seen on a fresh
# PREFECT_HOME.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "adapters,transforms,flows")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import logging as _logging

# INFO from our own modules tells the story of a run (they never log payloads or secrets).
for _name in ("adapters", "transforms", "flows"):
    if _logging.getLogger(_name).level == _logging.NOTSET:
        _logging.getLogger(_name).setLevel(_logging.INFO)
