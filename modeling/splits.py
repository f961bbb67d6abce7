"""Out-of-time splits: train on the earlier labelled years, test on the latest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

Protocol = Literal["out_of_time", "grouped_cv"]


@dataclass(frozen=True)
class Split:
    """Training and test rows (labelled only) and the protocol that produced them."""

    protocol: Protocol
    train: pd.DataFrame
    test: pd.DataFrame | None
    train_years: tuple[int, ...]
    test_year: int | None


def split_out_of_time(frame: pd.DataFrame) -> Split:
    """Split labelled rows by year: test = the latest year, train = all earlier years.

    With a single labelled year there is no later year to test on: ``protocol="grouped_cv"``,
    all rows train, and the evaluation uses out-of-fold predictions (GroupKFold by ``ra``).

    Raises:
        ValueError: no row has a known target.
    """
    labelled = frame.loc[frame["target"].notna()].reset_index(drop=True)
    if labelled.empty:
        raise ValueError("no row has a known target")
    years = sorted(int(y) for y in labelled["year"].unique())
    if len(years) == 1:
        return Split("grouped_cv", labelled, None, (years[0],), None)
    test_year = years[-1]
    is_test = labelled["year"] == test_year
    return Split(
        "out_of_time",
        labelled.loc[~is_test].reset_index(drop=True),
        labelled.loc[is_test].reset_index(drop=True),
        tuple(years[:-1]),
        test_year,
    )
