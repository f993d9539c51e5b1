"""Arguments must travel as JSON: find the one that cannot and say which it is."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from jobbalancer.errors import InvalidJob


def _encodes(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def check_json_args(func: str, args: Iterable[Any], kwargs: Mapping[str, Any]) -> None:
    """Raise InvalidJob naming the first argument of ``func`` that JSON cannot carry.

    jobbalancer never pickles: arguments, results and meta go over the wire as JSON.
    """
    for index, value in enumerate(args):
        if not _encodes(value):
            raise InvalidJob(
                f"argument {index} of {func} ({type(value).__name__} {value!r:.60}) is not JSON-serialisable; "
                "jobbalancer passes arguments as JSON and never pickles: pass str, int, float, bool, None, list or dict"
            )
    for name, value in kwargs.items():
        if not _encodes(value):
            raise InvalidJob(
                f"keyword argument {name!r} of {func} ({type(value).__name__} {value!r:.60}) is not JSON-serialisable; "
                "jobbalancer passes arguments as JSON and never pickles: pass str, int, float, bool, None, list or dict"
            )


def check_json_value(what: str, value: Any) -> str:
    """``value`` as JSON text, or InvalidJob naming ``what`` (e.g. "meta of job 42")."""
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidJob(f"{what} is not JSON-serialisable ({exc}); jobbalancer never pickles") from None
