"""The sections of a model card beyond its metrics: the served artifact, its reliability, the baselines.

Also the small Markdown helpers every section uses (:func:`fmt`, :func:`markdown_table`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def fmt(value: object, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def interval(row: Mapping[str, Any]) -> str:
    low, high = row.get("recall_ci_low"), row.get("recall_ci_high")
    return "n/a" if low is None or high is None else f"{low:.3f}-{high:.3f}"


def reliability_lines(rows: Sequence[Mapping[str, Any]] | None) -> list[str]:
    """A reliability table: what each band of ``risk_score`` turned out to mean."""
    if not rows:
        return ["No reliability table (no held-out rows)."]
    return markdown_table(
        ["risk_score", "students", "mean score", "observed share behind", "95 % interval"],
        [
            [
                f"{r['low']:.1f}-{r['high']:.1f}",
                r["n"],
                r["mean_score"],
                r["observed_rate"],
                f"{r['ci_low']:.3f}-{r['ci_high']:.3f}",
            ]
            for r in rows
        ],
    )


def served_sections(metadata: Mapping[str, Any]) -> list[str]:
    """Markdown about the artifact that is served: variants, its own check, reliability, threshold gap."""
    lines = ["## The served artifact", ""]
    served_model = metadata.get("served_model")
    lines.append(
        f"Served: the chosen procedure re-run on the years {', '.join(str(y) for y in metadata.get('fit_years', []))} "
        f"({served_model}): an ensemble of {metadata.get('members', 'n/a')} cross-fitted members "
        f"({metadata.get('fold_scheme', 'n/a')}), calibrated and thresholded on their own out-of-fold scores. "
        "The held-out figures above are those of the same procedure run without the test year."
    )
    gap = metadata.get("threshold_gap") or {}
    if gap:
        lines += [
            "",
            f"Threshold **{fmt(metadata.get('threshold'))}**, the middle of a gap of {fmt(gap.get('gap_logit'), 2)} "
            f"log-odds ({fmt(gap.get('lowest'))} to {fmt(gap.get('highest'))}) that adds no out-of-fold false alarm."
            + (
                " The gap is wide: the classes look separable, which suggests a rule being recomputed."
                if gap.get("wide")
                else ""
            ),
        ]
    check = metadata.get("artifact_check") or {}
    if check:
        lines += ["", "### Check of the served artifact (in-sample, at its own threshold)", ""]
        lines += markdown_table(
            ["year", "students", "behind", "recall", "precision", "ROC-AUC"],
            [
                [year, r["n"], r["positives"], r["recall"], r["precision"], r["roc_auc"]]
                for year, r in check.get("per_year", {}).items()
            ],
        )
        low, high = (check.get("score_range") or [None, None])[:2]
        verdict = "**passed**" if check.get("passed") else "**failed**: " + "; ".join(check.get("problems", []))
        lines += ["", f"Scores range from {fmt(low)} to {fmt(high)}. Check {verdict}."]
    reliability = metadata.get("reliability") or {}
    lines += ["", "### Reliability on the test year (out of time)", ""]
    lines += reliability_lines(reliability.get("test_year"))
    lines += ["", "### Reliability of the served model's out-of-fold scores (all labelled years)", ""]
    lines += reliability_lines(reliability.get("served_oof"))
    variants = metadata.get("variants") or {}
    if variants:
        lines += ["", "## Variants (one model per field set clients send)", ""]
        lines += markdown_table(
            [
                "variant",
                "fields",
                "must send",
                "model",
                "test recall",
                "test precision",
                "test ROC-AUC",
                "served",
                "why not",
            ],
            [
                [
                    name,
                    v.get("description"),
                    ", ".join(v.get("required", [])) or "-",
                    v.get("kind"),
                    v["out_of_time"].get("recall"),
                    v["out_of_time"].get("precision"),
                    v["out_of_time"].get("roc_auc"),
                    "yes" if v.get("served") else "no",
                    "; ".join(v["gate"].get("reasons", []) + ((v.get("artifact_check") or {}).get("problems") or []))
                    or "-",
                ]
                for name, v in variants.items()
            ],
        )
        lines += [
            "",
            "A request is answered by the richest served variant whose required fields it carries; "
            'one too thin for any of them gets `risk_label: "unknown"`.',
        ]
    return lines


BASELINE_READING = {
    "current": (
        "`current` is nearly determined by age and level: the target compares the level with the level "
        "ideal for the school year, and the age says the school year. A rule that reads only the level and "
        "the age does about as well as any model here; `next_year` is where a model adds value."
    ),
    "next_year": (
        "Persistence finds the students already behind and, by definition, none of the on-track students "
        "who fall behind; the on-track rows are where the model must add value."
    ),
}


def baseline_sections(metadata: Mapping[str, Any]) -> list[str]:
    """Markdown: the one-line rules beside the model on the test year, and the verdict's flags."""
    baselines = (metadata.get("metrics") or {}).get("baselines") or metadata.get("baselines")
    if not baselines:
        return []
    task = str(metadata.get("task", ""))
    lines = ["## Baselines: one-line rules on the same test year", ""]
    lines += [BASELINE_READING.get(task, ""), ""]
    lines += [f"- `{name}`: {says}." for name, says in (baselines.get("rules") or {}).items()]
    lines.append("")
    rows: list[list[object]] = []
    for segment, table in (baselines.get("segments") or {}).items():
        model = table["model"]
        rows.append(
            [
                segment,
                "**model** (its threshold)",
                model["n"],
                model["positives"],
                model["flagged"],
                model["caught"],
                model["recall"],
                model["precision"],
                model["flag_rate"],
                "-",
                "-",
            ]
        )
        for name, row in (table.get("rules") or {}).items():
            beaten = row.get("beaten")
            rows.append(
                [
                    segment,
                    name,
                    row["n"],
                    row["positives"],
                    row["flagged"],
                    row["caught"],
                    row["recall"],
                    row["precision"],
                    row["flag_rate"],
                    row.get("model_recall_at_rule_precision"),
                    "n/a" if beaten is None else ("yes" if beaten else "**no**"),
                ]
            )
    lines += markdown_table(
        [
            "students",
            "who flags",
            "n",
            "behind",
            "flagged",
            "caught",
            "recall",
            "precision",
            "flag rate",
            "model recall at the rule's precision",
            "model beats it",
        ],
        rows,
    )
    flags = list((metadata.get("gate") or {}).get("flags") or [])
    lines += [
        "",
        "The model beats a rule when, at a precision at least the rule's, its precision-recall curve reaches "
        "a higher recall. A model that does not is flagged in the gate's verdict (a flag, not a rejection).",
        "",
    ]
    lines += [f"- **Flagged**: {flag}." for flag in flags] or ["- Not flagged: the model beats every rule."]
    return lines


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(cell) for cell in row) + " |" for row in rows]
    return lines
