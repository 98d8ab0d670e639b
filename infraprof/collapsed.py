"""The one writer of collapsed stacks (Brendan Gregg's ``stackcollapse`` output, py-spy ``raw``).

One line per distinct stack: ``root;…;leaf count``, frames root first. Every frame name is
cleaned so a line always parses back: whitespace runs (newlines included) become one space,
``;`` becomes ``:``, and an empty name becomes ``?``. Equal stacks (after cleaning) are summed;
lines are sorted by stack, so the text is deterministic (flame-graph tools ignore the order).
Opens in speedscope, ``flamegraph.pl`` and ``inferno-flamegraph``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from infraprof.text_safety import printable

_SPACE = re.compile(r"\s+")


def collapsed_frame(name: str) -> str:
    """``name`` as one frame of a collapsed line (see the module docstring)."""
    return _SPACE.sub(" ", name).strip().replace(";", ":") or "?"


def collapsed_counts(stacks: Iterable[tuple[Sequence[str], int]]) -> dict[str, int]:
    """``"root;…;leaf" -> count`` of (frames root first, count) pairs, equal stacks summed."""
    counts: dict[str, int] = {}
    for frames, count in stacks:
        key = ";".join(collapsed_frame(str(frame)) for frame in frames)
        counts[key] = counts.get(key, 0) + int(count)
    return counts


def write_collapsed(stacks: Iterable[tuple[Sequence[str], int]]) -> str:
    """Collapsed text of (frames root first, count) pairs: ``stack count`` lines sorted by
    stack, each ending in a newline (empty text without stacks)."""
    counts = collapsed_counts(stacks)
    return "".join(f"{printable(key)} {counts[key]}\n" for key in sorted(counts))
