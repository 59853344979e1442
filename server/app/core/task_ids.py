"""Task-id aliases: the one table the catalogue and the scorers both read.

They are sibling layers that may not import each other, so the table lives below both.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

TASK_ALIASES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "cpt": "cpt-go-nogo",
        "simplert": "simple-rt",
        "nback": "n-back",
        "digitspan": "digit-span",
        "tmt": "trail-making",
        "ant": "attention-network-test",
    }
)
"""Other names of a module id, keyed in lower case without `-` or `_`. `cpt` is the alias the
scoring specification names (docs/scoring.md, task ids and scorers) and the client's file name;
the others are the client's own names for its tasks (TASK_CONFIG keys and task file names)."""

MODULE_ID_ALIASES: Final[frozenset[str]] = frozenset({"cpt"})
"""The aliases accepted wherever a module id is (the catalogue, batteries), compared exactly.
Submissions accept every alias, with case and `_`/`-` ignored (`app.scoring.canonical_task_id`)."""
