"""Model variants: one model per set of fields clients actually send.

A model trained on rows where a feature was always known has never learnt what its absence
means: LightGBM sends a missing value down whichever branch the training rows' smallest values
took, so "age unknown" reads as "age 0". Instead of guessing, each variant is trained, validated
and gated for a field set, and a request is answered by the richest variant whose *required*
features (never missing in its training rows) it carries (``ModelBundle.route``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from features.featuresets import FORBIDDEN, LEGACY_PAYLOAD_FIELDS, TASKS, feature_names

# A used feature missing in at most this share of the training rows is required: the model
# has seen too few rows without it to know what its absence means.
REQUIRED_MISSING_SHARE = 0.01
# Fields that only part of the students have, or that a form rarely carries: the "core"
# variant does without them.
_NOT_CORE = frozenset({"mat", "por", "ing", "prev_defasagem", "prev_inde", "prev_ida", "anos_no_programa"})
VARIANT_ORDER = ("full", "core", "example")
DESCRIPTIONS = {
    "full": "every feature of the task",
    "core": "level, age and birth date, gender, school type and the indicators (no grades, no last year)",
    "example": "the original example payload only: " + ", ".join(LEGACY_PAYLOAD_FIELDS),
}


def variant_features(task: str, variant: str) -> tuple[str, ...]:
    """The features a variant of ``task`` sees, in the task's order.

    Raises:
        ValueError: an unknown variant.
    """
    names = feature_names(task)
    if variant == "full":
        return tuple(names)
    if variant == "core":
        return tuple(n for n in names if n not in _NOT_CORE)
    if variant == "example":
        allowed = set(LEGACY_PAYLOAD_FIELDS) - FORBIDDEN[task]
        return tuple(n for n in names if n in allowed)
    raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANT_ORDER)}")


def required_features(frame: pd.DataFrame, used: Sequence[str]) -> tuple[str, ...]:
    """The used features (almost) never missing in ``frame``: a request must carry them."""
    out = []
    for name in used:
        missing = frame[name].isna().to_numpy() if name in frame else np.ones(len(frame), dtype=bool)
        if missing.size and float(missing.mean()) <= REQUIRED_MISSING_SHARE:
            out.append(name)
    return tuple(out)


# The table in docs/api.md of the fields each task's variants read and need, between these markers.
TABLE_START, TABLE_END = "<!-- fields-by-variant -->", "<!-- /fields-by-variant -->"


def readme_fields_table(must_send: Mapping[str, Mapping[str, Sequence[str]]]) -> str:
    """The table of request fields per task and variant in docs/api.md, markers included.

    The fields each variant reads come from the code (:func:`variant_features`, derived features
    named by the request fields they come from); ``must_send`` are the request fields of the
    trained variants' required features (``required`` in a version's ``variants`` metadata,
    through ``modeling.scoring.request_fields``), which depend on the training data.
    """
    from modeling.scoring import request_fields

    lines = [
        TABLE_START,
        "| task | variant | must send | also reads |",
        "|---|---|---|---|",
    ]
    for task in TASKS:
        for variant in VARIANT_ORDER:
            needed = list(must_send.get(task, {}).get(variant, []))
            reads = [f for f in request_fields(variant_features(task, variant)) if f not in needed]
            lines.append(
                f"| {task} | {variant} | {', '.join(f'`{f}`' for f in needed) or '-'} | "
                f"{', '.join(f'`{f}`' for f in reads) or '-'} |"
            )
    return "\n".join([*lines, TABLE_END])


def required_by_task(readme: str) -> dict[str, dict[str, list[str]]]:
    """The ``must send`` column of that table, per task and variant (empty without the table)."""
    if TABLE_START not in readme:
        return {}
    block = readme.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0]
    out: dict[str, dict[str, list[str]]] = {}
    for line in block.strip().splitlines()[2:]:
        task, variant, needed, _ = (cell.strip() for cell in line.strip().strip("|").split("|"))
        out.setdefault(task, {})[variant] = [] if needed == "-" else [f.strip(" `") for f in needed.split(",")]
    return out
