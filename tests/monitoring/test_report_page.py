"""The report page opens with the verdict, its reasons, what to do, the PSI legend and the champion's card."""

from __future__ import annotations

from typing import Any

from monitoring.report_page import render_page


def meta(**extra: Any) -> dict[str, Any]:
    return {
        "task": "next_year",
        "verdict": "retrain recommended",
        "reasons": ["feature ipv moved: PSI 4.9 > 1.3 (carries 11% of the model's importance)"],
        "model_version": "v1",
        "reference": "years 2022,2023",
        "current": "year 2025",
        "card_link": "../../../models/next_year/v1/card.md",
        "card_path": "models/next_year/v1/card.md",
        "check": {
            "signals": [
                {"name": "model score", "kind": "score", "psi": 0.1, "threshold": 0.3, "watch_threshold": 0.2},
                {
                    "name": "ipv",
                    "kind": "feature",
                    "psi": 4.9,
                    "threshold": 1.3,
                    "watch_threshold": 0.9,
                    "importance": 0.11,
                },
            ],
            "calibration": {
                "method": "resampled years 2022, 2023",
                "resamples": 400,
                "false_alarm_rate": 0.01,
                "watch_rate": 0.1,
                "min_importance": 0.05,
            },
            "performance": {"recall": 0.7, "precision": 0.6},
            "champion_recall": 0.85,
        },
        "outcomes": [
            {
                "task": "next_year",
                "year": 2023,
                "model_version": "v0",
                "students": 10,
                "behind": 4,
                "warned": 3,
                "recall": 0.5,
                "precision": 0.667,
                "missed": ["RA-1", "RA-2"],
                "in_sample": False,
            }
        ],
    } | extra


def test_the_verdict_comes_first_then_reasons_steps_legend_card_and_outcomes() -> None:
    page = render_page(meta(), "<html><head></head><body><div>EVIDENTLY</div></body></html>")
    order = [
        page.index("<h1"),
        page.index("feature ipv moved"),
        page.index("What to do"),
        page.index("Retrain: run"),
        page.index("model card"),
        page.index("PSI (population stability index)"),
        page.index("How earlier warnings turned out"),
        page.index("EVIDENTLY"),
    ]
    assert order == sorted(order)
    assert 'href="../../../models/next_year/v1/card.md"' in page
    assert "RA-1, RA-2" in page and "out of sample" in page
    assert "about 1%" in page and "lower is more drift" in page
    assert "<td>moved</td>" in page  # ipv crossed its threshold


def test_a_page_without_detail_and_escaping() -> None:
    page = render_page(
        meta(verdict="no new data since training", reasons=["<script>x</script>"], check={}, outcomes=[]), None
    )
    assert page.startswith("<!DOCTYPE html>") and "<script>x" not in page and "&lt;script&gt;" in page
    assert "Nothing to do until there is something new" in page
    assert "No scored student's outcome is known yet" in page
