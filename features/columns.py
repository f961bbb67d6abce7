"""The raw header of a PEDE file mapped to canonical columns, by the table in ``features/columns.yaml``."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ColumnMap:
    """The declarative raw-name → canonical-name table of ``features/columns.yaml``."""

    exact: dict[str, str]
    patterns: list[tuple[str, str]]
    ignore: list[str]
    required: list[str]
    indicators: list[str]
    min_indicators: int
    id_pattern: re.Pattern[str] = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,39}$")
    redact: tuple[str, ...] = ()

    @classmethod
    def load(cls, path: Path | None = None) -> ColumnMap:
        raw = yaml.safe_load((path or _HERE / "columns.yaml").read_text(encoding="utf-8"))
        return cls(
            exact=dict(raw["exact"]),
            patterns=[(p["pattern"], p["name"]) for p in raw.get("patterns", [])],
            ignore=list(raw.get("ignore", [])),
            required=list(raw.get("required", [])),
            indicators=list(raw.get("indicators", [])),
            min_indicators=int(raw.get("min_indicators", 0)),
            id_pattern=re.compile(raw.get("id_pattern", r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,39}$")),
            redact=tuple(raw.get("redact", [])),
        )


@lru_cache(maxsize=1)
def column_map() -> ColumnMap:
    """The project's column map, read once."""
    return ColumnMap.load()


@dataclass
class MappedHeader:
    """Where each canonical column comes from in a file's header."""

    sources: dict[str, list[int]]  # canonical name -> raw column positions, in file order
    ignored: list[str]  # raw names read and deliberately dropped
    unknown: list[str]  # raw names the map does not know (reported, dropped)
    duplicates: list[str]  # raw names that occur more than once
    redacted: frozenset[int] = frozenset()  # positions whose values never reach quarantine or data quality
    id_pattern: re.Pattern[str] | None = None  # the shape of a valid RA (``None``: any)


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(pattern).replace(re.escape("{year}"), r"(\d{2}|\d{4})") + "$")


def map_header(header: Sequence[str], year: int, cmap: ColumnMap | None = None) -> MappedHeader:
    """Map a file's raw header to canonical columns for a file of ``year``.

    Year-suffixed names (``INDE 22``, ``INDE 2023``, ``Pedra 2025``) map to their canonical name
    when the suffix is the file's year (two or four digits); other years are historical copies
    and are ignored. Repeated names are all kept as sources of the same column (first
    non-empty value wins) and reported in ``duplicates``.
    """
    cmap = cmap or column_map()
    sources: dict[str, list[int]] = {}
    ignored: list[str] = []
    unknown: list[str] = []
    seen: dict[str, int] = {}
    redacted: set[int] = set()
    compiled = [(_pattern_regex(p), name) for p, name in cmap.patterns]
    for position, raw_name in enumerate(header):
        name = raw_name.strip()
        seen[name] = seen.get(name, 0) + 1
        canonical = cmap.exact.get(name)
        if canonical is None:
            for regex, target in compiled:
                match = regex.match(name)
                if match and _suffix_year(match.group(1)) == year:
                    canonical = target
                    break
        if any(fnmatch.fnmatchcase(name, glob) or canonical == glob for glob in cmap.redact):
            redacted.add(position)
        if canonical is not None:
            sources.setdefault(canonical, []).append(position)
        elif any(fnmatch.fnmatchcase(name, glob) for glob in cmap.ignore):
            ignored.append(name)
        else:
            unknown.append(name)
    # A four-digit-year column wins over a two-digit one ("INDE 2023" over "INDE 23"): order them first.
    for positions in sources.values():
        positions.sort(key=lambda p: (-len(header[p].strip()), p))
    duplicates = sorted(name for name, count in seen.items() if count > 1)
    return MappedHeader(
        sources=sources,
        ignored=ignored,
        unknown=unknown,
        duplicates=duplicates,
        redacted=frozenset(redacted),
        id_pattern=cmap.id_pattern,
    )


def _suffix_year(suffix: str) -> int:
    return int(suffix) + 2000 if len(suffix) == 2 else int(suffix)
