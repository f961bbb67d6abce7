"""Tests of the drift report index: rendering, escaping and rebuilding from disk."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from monitoring.report_index import ReportEntry, render_index, scan_entries, write_index

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _entry(run_id: str, hours: int, **kwargs: object) -> ReportEntry:
    fields: dict[str, object] = {
        "run_id": run_id,
        "created_at": T0 + timedelta(hours=hours),
        "task": "current",
        "verdict": "ok",
        "share_drifted": 0.1,
        "score_psi": 0.05,
    }
    fields |= kwargs
    return ReportEntry(**fields)  # type: ignore[arg-type]


def _links(page: str) -> list[str]:
    """The links of the table of every run (the verdicts and the trend above it link too)."""
    return re.findall(r'<a href="([^"]+)"', page.split("Every run")[-1])


def test_index_lists_newest_first_with_links(tmp_path: Path) -> None:
    entries = [_entry("run-a", 0), _entry("run-c", 2, verdict="retrain recommended"), _entry("run-b", 1)]
    path = write_index(tmp_path / "reports", entries)
    assert path == tmp_path / "reports" / "index.html"
    page = path.read_text(encoding="utf-8")
    assert _links(page) == ["drift/run-c/report.html", "drift/run-b/report.html", "drift/run-a/report.html"]
    assert "retrain recommended" in page
    assert "10.0%" in page
    assert "0.050" in page
    assert "2025-03-01T14:00:00+00:00" in page


def test_text_is_escaped(tmp_path: Path) -> None:
    entries = [_entry('r"1&', 0, task="<script>alert(1)</script>")]
    page = write_index(tmp_path, entries).read_text(encoding="utf-8")
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert _links(page) == ["drift/r%221%26/report.html"]
    assert "r&quot;1&amp;" in page


def test_mixed_naive_and_aware_times_sort(tmp_path: Path) -> None:
    later_elsewhere = datetime(2025, 3, 1, 10, 0, tzinfo=timezone(timedelta(hours=-3)))  # 13:00 UTC
    naive_utc = datetime(2025, 3, 1, 12, 30)
    page = render_index([_entry("naive", 0, created_at=naive_utc), _entry("aware", 0, created_at=later_elsewhere)])
    assert _links(page) == ["drift/aware/report.html", "drift/naive/report.html"]


def test_missing_psi_and_empty_index() -> None:
    assert "—" in render_index([_entry("r", 0, score_psi=None)])
    assert "No drift report yet" in render_index([])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"verdict": "maybe"}, "verdict"), ({"run_id": "a/b"}, "run_id"), ({"run_id": ".."}, "run_id")],
)
def test_entry_validation(kwargs: dict[str, str], message: str) -> None:
    run_id = kwargs.pop("run_id", "r")
    with pytest.raises(ValueError, match=message):
        _entry(run_id, 0, **kwargs)


def test_the_page_opens_with_the_latest_verdicts_then_legend_and_trend() -> None:
    entries = [
        _entry("r1", 0, task="next_year", verdict="stable", score_psi=0.02, current="year 2024"),
        _entry(
            "r2",
            1,
            task="next_year",
            verdict="retrain recommended",
            score_psi=0.4,
            current="year 2025",
            reasons=("feature ipv moved",),
        ),
        _entry("r3", 2, task="current", verdict="no new data since training", score_psi=None, share_drifted=None),
    ]
    page = render_index(entries)
    assert page.index("Latest verdicts") < page.index("feature ipv moved") < page.index("<b>PSI</b>")
    assert page.index("<b>PSI</b>") < page.index("<svg") < page.index("Every run")
    assert page.count("<circle") == 2  # the run that compared nothing has no PSI to plot
    assert "no new data since training" in page


def test_prune_keeps_recent_reports_and_the_newest_per_task(tmp_path: Path) -> None:
    from monitoring.report_index import last_fingerprints, prune

    now = datetime(2025, 12, 1, tzinfo=UTC)
    for i, days in enumerate([400, 300, 200, 10]):
        created = (now - timedelta(days=days)).isoformat()
        _write_report_json(
            tmp_path,
            f"c{i}",
            _document(f"c{i}", created, task="current", fingerprint={"comparison": "year", "rows_sha": str(i)}),
        )
    _write_report_json(tmp_path, "n0", _document("n0", (now - timedelta(days=500)).isoformat()))
    removed = prune(tmp_path, retention_days=180, keep=2, now=now)
    assert sorted(removed) == ["c0", "c1"]  # c2 is old but among the newest two of its task; n0 is its task's only
    assert sorted(p.name for p in (tmp_path / "drift").iterdir()) == ["c2", "c3", "n0"]
    assert last_fingerprints(tmp_path)[("current", "year")]["rows_sha"] == "3"


def _write_report_json(reports_dir: Path, run_id: str, document: dict[str, object] | str) -> None:
    directory = reports_dir / "drift" / run_id
    directory.mkdir(parents=True)
    text = document if isinstance(document, str) else json.dumps(document)
    (directory / "report.json").write_text(text, encoding="utf-8")


def _document(run_id: str, created_at: str, **kwargs: object) -> dict[str, object]:
    document: dict[str, object] = {
        "run_id": run_id,
        "created_at": created_at,
        "task": "next_year",
        "verdict": "ok",
        "score_psi": 0.3,
        "summary": {"share_drifted": 0.25, "drifted_columns": ["ida"]},
        "evidently": {"metrics": [], "tests": []},
    }
    document |= kwargs
    return document


def test_scan_rebuilds_entries_from_disk(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _write_report_json(tmp_path, "old", _document("old", "2025-01-01T00:00:00+00:00"))
    _write_report_json(tmp_path, "new", _document("new", "2025-02-01T00:00:00+00:00", score_psi=None))
    _write_report_json(tmp_path, "renamed", _document("other-id", "2025-01-15T00:00:00"))
    _write_report_json(tmp_path, "broken", "{not json")
    _write_report_json(tmp_path, "incomplete", {"run_id": "incomplete", "summary": {}})
    _write_report_json(tmp_path, "bad-verdict", _document("bad-verdict", "2025-01-02T00:00:00", verdict="?"))
    (tmp_path / "drift" / "no-json").mkdir()

    with caplog.at_level(logging.WARNING, logger="monitoring.report_index"):
        entries = scan_entries(tmp_path)

    assert [entry.run_id for entry in entries] == ["new", "renamed", "old"]
    assert entries[0].score_psi is None
    assert entries[2] == ReportEntry(
        run_id="old",
        created_at=datetime(2025, 1, 1, tzinfo=UTC),
        task="next_year",
        verdict="ok",
        share_drifted=0.25,
        score_psi=0.3,
    )
    skipped = " ".join(record.getMessage() for record in caplog.records)
    for name in ("broken", "incomplete", "bad-verdict"):
        assert f"{name}/report.json" in skipped
    assert "differs from its directory" in skipped

    page = write_index(tmp_path, entries).read_text(encoding="utf-8")
    assert _links(page) == ["drift/new/report.html", "drift/renamed/report.html", "drift/old/report.html"]


def test_scan_of_an_empty_directory(tmp_path: Path) -> None:
    assert scan_entries(tmp_path / "nothing-here") == []


def test_round_trip_with_the_adapter(tmp_path: Path) -> None:
    """write_report's meta is what scan_entries reads back."""
    pd = pytest.importorskip("pandas")
    from monitoring.evidently_adapter import run_drift, write_report

    frame = pd.DataFrame({"x": [float(i % 7) for i in range(60)]})
    result = run_drift(frame, frame, numeric=["x"], categorical=[])
    created = datetime(2025, 5, 5, 5, 5, tzinfo=UTC)
    meta = {"run_id": "rt", "created_at": created, "task": "current", "verdict": "ok", "score_psi": 0.01}
    write_report(result, tmp_path / "drift" / "rt", meta=meta)
    assert scan_entries(tmp_path) == [
        ReportEntry(run_id="rt", created_at=created, task="current", verdict="ok", share_drifted=0.0, score_psi=0.01)
    ]
