"""pandera, imported without touching the environment.

pandera's import sets ``SPARK_LOCAL_IP`` and ``PYARROW_IGNORE_TIMEZONE`` when they are unset
(``pandera/external_config.py``, for pyspark, which customer-sync does not use). Importing
a module of ours must leave ``os.environ`` as it was, so every use of pandera imports it
from here, which takes those two back.
"""

from __future__ import annotations

import os
from typing import Final

_SET_BY_PANDERA: Final = ("SPARK_LOCAL_IP", "PYARROW_IGNORE_TIMEZONE")
_before = {name: os.environ.get(name) for name in _SET_BY_PANDERA}
try:
    import pandera.pandas as pandera_pandas
    from pandera.engines import pandas_engine
    from pandera.typing import Series
finally:
    for _name, _value in _before.items():
        if _value is None:
            os.environ.pop(_name, None)
        else:
            os.environ[_name] = _value

__all__ = ["Series", "pandas_engine", "pandera_pandas"]
