"""Column contracts of the warehouse tables and views; a test checks the SQL against them."""

from __future__ import annotations

from features.featuresets import feature_names
from features.harmonise import STUDENT_COLUMNS

CONTRACTS: dict[str, tuple[str, ...]] = {
    "students": (*STUDENT_COLUMNS, "source"),
    "ingest_runs": (
        "run_id",
        "source",
        "sha256",
        "year",
        "status",
        "rows_read",
        "rows_loaded",
        "rows_quarantined",
        "dq_issues",
        "note",
        "started_at",
        "finished_at",
    ),
    "quarantine": ("run_id", "source", "year", "line", "reason", "raw"),
    "data_quality": ("run_id", "source", "year", "line", "column", "raw", "problem"),
    "model_registry": (
        "version",
        "task",
        "created_at",
        "kind",
        "accepted",
        "is_champion",
        "test_recall",
        "test_precision",
        "test_roc_auc",
        "protocol",
        "training_data_sha256",
        "code_version",
    ),
    "risk_scores": (
        "ra",
        "year",
        "task",
        "model_version",
        "risk_score",
        "risk_label",
        "rank",
        "reasons",
        "scored_at",
    ),
    "features_current": ("ra", "year", *feature_names("current"), "target"),
    "features_next_year": ("ra", "year", *feature_names("next_year"), "target"),
}
