"""The one validator of named choices and numbers: a bad value gets one line naming it and the
values allowed, with a "did you mean" when a near match exists. No TensorFlow, no Keras.

Every module that accepts a choice (config fields, constructor arguments, evaluation options,
data sets) checks it here, so the wording is the same everywhere.
"""

from __future__ import annotations

import difflib
import reprlib
from typing import Iterable, Optional

# A value quoted in a message is cut to this: a config file can hold a list of a million items,
# and formatting it whole would fill the terminal (or, for shared YAML aliases, the memory).
_SHORT = reprlib.Repr()
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 8
_SHORT.maxlevel = 3
_SHORT.maxstring = _SHORT.maxother = 80
_SHORT.maxlong = 40


def short(value) -> str:
    """`repr(value)`, cut to a few dozen characters (`[1, 2, 3, ...]`) for an error message."""
    return _SHORT.repr(value)


def closest(value, allowed: Iterable) -> Optional[str]:
    """The string in `allowed` nearest to `value` (difflib, or equal but for case), else None."""
    if not isinstance(value, str):
        return None
    names = [a for a in allowed if isinstance(a, str)]
    close = difflib.get_close_matches(value, names, n=1, cutoff=0.6)
    if not close:  # case slips: "a" for "A"
        close = [a for a in names if a.lower() == value.lower()][:1]
    return close[0] if close else None


def suggest(value, allowed: Iterable) -> str:
    """`"; did you mean 'x'?"` for the string in `allowed` nearest to `value`, else ``""``."""
    near = closest(value, allowed)
    return f"; did you mean {near!r}?" if near else ""


def check_choice(name: str, value, allowed: Iterable, error: type = ValueError) -> None:
    """Raises `error` unless `value` is one of `allowed` (a bool never passes for 1 or 0).

    Args:
        name: What is chosen, e.g. "shortcut"; it starts the message.
        value: The value received.
        allowed: The values allowed (a dict's keys count).
        error: The exception type raised (e.g. `config.ConfigError`).

    Raises:
        error: "{name} {value!r} is not one of 'A', 'B', 'C'" (+ "; did you mean ...?").
    """
    allowed = tuple(allowed)
    if isinstance(value, bool) or value not in allowed:
        raise error(f"{name} {short(value)} is not one of {', '.join(map(repr, allowed))}"
                    + suggest(value, allowed))


def check_number(name: str, value, low: Optional[float] = None, high: Optional[float] = None,
                 error: type = ValueError) -> None:
    """Raises `error` unless `value` is an int or float (not a bool) in [low, high)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and low is not None:
        ok = value >= low
    if ok and high is not None:
        ok = value < high
    if not ok:
        bounds = f" in [{low}, {high})" if high is not None else (
            f" >= {low}" if low is not None else "")
        raise error(f"{name} must be a number{bounds}; got {short(value)}")
