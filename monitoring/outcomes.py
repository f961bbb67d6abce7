"""How earlier warnings turned out: realised recall and precision per model version.

The rows come from the warehouse view ``outcomes`` (``warehouse/sql/outcomes.sql``): one row
per scored student whose truth is now known. A warning is ``risk_label == "high"``; a student
the model did not warn who fell behind is *missed*, whether it said ``low`` or ``unknown`` (no
warning reached anyone either way). Only ids (``ra``) are listed, never names.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from modeling.scoring import HIGH

WARNING_LABEL = HIGH  # the scoring core's label, as risk_scores holds it: the view computes none
OUTCOME_COLUMNS = ("task", "year", "ra", "model_version", "risk_label", "risk_score", "behind")


@dataclass
class OutcomeSummary:
    """The realised figures of one model version's warnings on one scored year.

    Attributes:
        task: ``current`` or ``next_year``.
        year: The year scored (the truth is that year's for ``current``, the next for ``next_year``).
        model_version: The version that issued the warnings.
        students: Scored students whose truth is known.
        behind: Of them, how many turned out behind.
        warned: How many were warned (``risk_label == "high"``).
        recall: Share of the students behind who had been warned (None without any behind).
        precision: Share of the warnings that were right (None without any warning).
        missed: Ids of the students behind who had not been warned, sorted.
        in_sample: The version was fitted on this truth, so the figures flatter it; None when
            the version's training years are unknown.
    """

    task: str
    year: int
    model_version: str
    students: int
    behind: int
    warned: int
    recall: float | None
    precision: float | None
    missed: list[str] = field(default_factory=list)
    in_sample: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def summarise(rows: pd.DataFrame, fit_years: dict[str, list[int]] | None = None) -> list[OutcomeSummary]:
    """Realised recall, precision and missed ids per (task, year scored, model version).

    Args:
        rows: Rows of the ``outcomes`` view.
        fit_years: The years each model version was fitted on (by version), to say which
            figures are in-sample; versions absent from it are marked unknown (None).

    Returns:
        One summary per group, ordered by task, year and version.

    Raises:
        ValueError: A column of the view is missing.
    """
    missing = [column for column in OUTCOME_COLUMNS if column not in rows.columns]
    if missing:
        raise ValueError(f"outcome rows lack the column(s) {missing}")
    summaries = []
    for (task, year, version), group in rows.groupby(["task", "year", "model_version"], sort=True):
        behind = group["behind"].astype(bool).to_numpy()
        warned = (group["risk_label"] == WARNING_LABEL).to_numpy()
        hits = int((behind & warned).sum())
        years = None if fit_years is None else fit_years.get(str(version))
        summaries.append(
            OutcomeSummary(
                task=str(task),
                year=int(year),
                model_version=str(version),
                students=len(group),
                behind=int(behind.sum()),
                warned=int(warned.sum()),
                recall=hits / int(behind.sum()) if behind.any() else None,
                precision=hits / int(warned.sum()) if warned.any() else None,
                missed=sorted(group.loc[behind & ~warned, "ra"].astype(str)),
                in_sample=None if years is None else int(year) in set(years),
            )
        )
    return summaries


def fmt_share(value: float | None) -> str:
    """A share with three decimals, or ``n/a``."""
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"
