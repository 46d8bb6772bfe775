"""Words for output: a count with its noun in the right number, and notices said once.

    plural(1, "seed") -> "1 seed";  plural(3, "seed") -> "3 seeds";  plural(2, "hour") -> "2 hours"
    duration(750) -> "12 min"
    notice("--subset 300: ...")  prints "notice: --subset 300: ..." on stderr, once per process
"""

from __future__ import annotations

import sys

_SAID: set[str] = set()


def plural(n, noun: str, nouns: str | None = None) -> str:
    """`n` and `noun`, or `nouns` (default noun + "s") unless n is exactly 1."""
    word = noun if n == 1 else (nouns or noun + "s")
    return f"{n:,} {word}" if isinstance(n, int) and not isinstance(n, bool) else f"{n} {word}"


def duration(seconds: float) -> str:
    """A rough duration for humans: '40 s', '12 min', '3.5 h'."""
    if seconds < 90:
        return f"{max(0, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def notice(text: str, file=None) -> None:
    """Print `notice: text` on stderr the first time this process says `text`: a sweep of
    thirty runs on one --subset says it once, not thirty times."""
    if text in _SAID:
        return
    _SAID.add(text)
    print(f"notice: {text}", file=file or sys.stderr)
