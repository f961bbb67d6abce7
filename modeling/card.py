"""The model card: ``card.md`` and its plots, written beside each registered model version."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modeling.card_sections import baseline_sections, fmt, interval, markdown_table, served_sections
from modeling.evaluation import MIN_GROUP_POSITIVES, evaluate

__all__ = ["baseline_sections", "served_sections", "write_card"]

logger = logging.getLogger(__name__)

TARGETS = {
    "current": (
        "**Behind this year**: the student's `defasagem` (level minus the level ideal for the "
        "school year) is negative in the year of the features. It is predicted without this "
        "year's IAN, INDE, `fase ideal` or `defasagem`, which contain the answer."
    ),
    "next_year": (
        "**Behind next year**: the student's `defasagem` in the following year's evaluation is "
        "negative, predicted from this year's measurements (this year's setback included)."
    ),
}

LIMITATIONS = (
    "Three yearly surveys of one NGO: a few thousand rows, so every figure carries a sampling "
    "error of a few points; small groups (a single `fase`, a rare school type) more so.",
    "The share of students behind fell from 70% (2022) to 46% (2024): a model trained on "
    "earlier years meets a different base rate in the next, and its calibration can drift.",
    "The threshold aims at a recall on the training years; the test-year recall shows how far "
    "that aim carries to a new year. Precision is the price paid for it.",
    "Reasons are contributions to the model's score (exact tree SHAP for LightGBM), not causes: "
    "they say what moved this score, not what would move the student.",
    "Students appear in several years; the test year holds students also seen in training "
    "(earlier records of them). That mirrors use, where the model scores returning students.",
)


def write_card(
    directory: Path,
    *,
    task: str,
    version: str,
    metadata: Mapping[str, Any],
    y_true: np.ndarray,
    y_score: np.ndarray,
    threshold: float,
    feature_importance: Mapping[str, float],
    groups: Mapping[str, np.ndarray] | None = None,
    extra_sections: Sequence[str] = (),
) -> Path:
    """Write ``card.md`` and ``plots/{roc,pr,calibration,importance}.png`` into ``directory``.

    Args:
        directory: the folder of the model version (created when missing).
        task: ``"current"`` or ``"next_year"``.
        version: the model version label.
        metadata: facts of the run, as :meth:`modeling.training.TrainingResult.card_metadata`
            returns them (``protocol``, ``train_years``, ``test_year``, ``chosen``,
            ``candidates``, ``threshold_rule``, ``feature_aucs``, ...); missing keys print "n/a".
        y_true: held-out labels of the chosen model (test year, or OOF under grouped CV).
        y_score: its calibrated probabilities on those rows.
        threshold: its alert threshold.
        feature_importance: feature -> importance (e.g. ``ModelBundle.feature_importance()``).
        groups: optional group labels of the held-out rows for the per-group recall table.
        extra_sections: markdown appended before the plots (e.g. :func:`served_sections`).

    Returns:
        The path of ``card.md``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    plots = directory / "plots"
    plots.mkdir(exist_ok=True)
    y = np.asarray(y_true, dtype=np.float64)
    score = np.asarray(y_score, dtype=np.float64)
    metrics = evaluate(y, score, threshold, groups=groups)
    _plot_all(plots, y, score, threshold, feature_importance)
    card = directory / "card.md"
    text = _markdown(task, version, metadata, metrics, feature_importance)
    if extra_sections:
        head, plots_part = text.split("## Plots", 1)
        text = head + "\n".join(extra_sections) + "\n\n## Plots" + plots_part
    card.write_text(text, encoding="utf-8")
    logger.info("wrote the model card of %s %s to %s", task, version, card)
    return card


# --------------------------------------------------------------------------------------------
# Markdown


def _bootstrap_line(metadata: Mapping[str, Any]) -> str:
    chosen = metadata.get("chosen")
    boot = (metadata.get("candidates", {}).get(chosen, {}).get("test") or {}).get("bootstrap_95")
    if not boot:
        return "No bootstrap interval (no held-out year)."
    parts = [f"{name} {v[0]:.3f}-{v[1]:.3f}" for name, v in boot.items() if v]
    return (
        "95 % bootstrap intervals of the chosen model on the held-out rows (1,000 resamples): " + ", ".join(parts) + "."
    )


def _markdown(
    task: str,
    version: str,
    metadata: Mapping[str, Any],
    metrics: Mapping[str, Any],
    importance: Mapping[str, float],
) -> str:
    protocol = metadata.get("protocol", "n/a")
    chosen = metadata.get("chosen", "n/a")
    train_years = ", ".join(str(y) for y in metadata.get("train_years", [])) or "n/a"
    held_out = (
        f"test year **{metadata.get('test_year')}** (never used to choose anything)"
        if protocol == "out_of_time"
        else "out-of-fold predictions of 5-fold GroupKFold by student (one labelled year only)"
    )
    lines = [
        f"# Model card: `{task}`, version `{version}`",
        "",
        *[f"> **Warning**: {note}.\n" for note in metadata.get("warnings", [])],
        "## What the model predicts",
        "",
        TARGETS.get(task, f"Task `{task}`."),
        "The score is a calibrated probability of being behind; an alert is raised at or above the threshold.",
        "",
        "## Data and protocol",
        "",
        f"- Protocol: **{protocol}**; trained on {train_years}; evaluated on {held_out}.",
        f"- Held-out rows: {metrics['n']}, of which {metrics['positives']} behind ({fmt(metrics['prevalence'])}).",
        f"- Chosen model: **{chosen}** ({metadata.get('selection_rule', 'n/a')}).",
        f"- Seed: {metadata.get('seed', 'n/a')}.",
        "",
        "## Held-out figures",
        "",
    ]
    candidates: Mapping[str, Any] = metadata.get("candidates", {})
    keys = ("recall", "precision", "f2", "roc_auc", "pr_auc", "brier", "threshold")
    rows = [
        [f"**{kind}** (chosen)" if kind == chosen else kind, *[facts.get("test", {}).get(k) for k in keys]]
        for kind, facts in candidates.items()
    ]
    if not rows:
        rows = [["this model", *[metrics.get(k) for k in keys]]]
    lines += markdown_table(["model", "recall", "precision", "F2", "ROC-AUC", "PR-AUC", "Brier", "threshold"], rows)
    lines += [
        "",
        f"Brier score of always predicting the base rate: {fmt(metrics['brier_base_rate'])}.",
        "",
        _bootstrap_line(metadata),
        "",
        "Alerting a fixed share of students, highest scores first:",
        "",
    ]
    lines += markdown_table(
        ["alerts", "recall", "precision"],
        [
            [f"top {round(b['share'] * 100)}% ({b['alerts']})", b["recall"], b["precision"]]
            for b in metrics["at_budget"].values()
        ],
    )
    lines += [
        "",
        "## Threshold",
        "",
        f"Alert when the probability is at least **{fmt(metrics['threshold'])}**: "
        f"{metadata.get('threshold_rule', 'n/a')}. Recall comes first because a missed student "
        "gets no help, while a false alarm costs a conversation.",
        "",
        f"On the held-out rows: {metrics['tp']} behind students alerted, {metrics['fn']} missed, "
        f"{metrics['fp']} false alarms, {metrics['tn']} correctly left alone "
        f"(recall {fmt(metrics['recall'])}, precision {fmt(metrics['precision'])}).",
        "",
        "## Recall by group",
        "",
    ]
    group_rows = [
        [
            name,
            value,
            row["n"],
            row["positives"],
            row["recall"] if row["judgeable"] else "too small to judge",
            interval(row) if row["judgeable"] else "n/a",
            row["false_negative_rate"] if row["judgeable"] else "n/a",
        ]
        for name, table in metrics["by_group"].items()
        for value, row in table.items()
    ]
    if group_rows:
        lines.append(
            f"Recall with its 95 % Wilson interval; groups with fewer than {MIN_GROUP_POSITIVES} students behind "
            "are too small to judge."
        )
        lines.append("")
        lines += markdown_table(
            ["group", "value", "n", "behind", "recall", "95 % interval", "false-negative rate"], group_rows
        )
    else:
        lines.append("No group labels were given.")
    lines += ["", "## Leakage policy", ""]
    forbidden = metadata.get("forbidden")
    if forbidden:
        lines.append(f"Columns this task may never use: {', '.join(f'`{c}`' for c in forbidden)}.")
    lines.append(
        "IAN is a function of the setback itself, INDE and Pedra contain IAN, rankings and "
        "recommendations are written in the same evaluation (see `features/featuresets.py`)."
    )
    aucs = {k: v for k, v in metadata.get("feature_aucs", {}).items() if v is not None}
    if aucs:
        strongest = sorted(aucs.items(), key=lambda item: -item[1])[:5]
        listed = ", ".join(f"`{name}` {auc:.3f}" for name, auc in strongest)
        lines.append(
            f"Audit: no feature alone may reach a ROC-AUC above {fmt(metadata.get('audit_max_auc'), 2)} "
            f"on the training rows. Strongest single features: {listed}."
        )
    lines += ["", "## Most important features", ""]
    top = sorted(importance.items(), key=lambda item: -item[1])[:10]
    lines += markdown_table(["feature", "importance"], [[name, float(value)] for name, value in top])
    lines += ["", "## Limitations", ""]
    lines += [f"- {text}" for text in LIMITATIONS]
    if protocol == "grouped_cv":
        lines.append(
            "- Only one labelled year: the figures are cross-validated within that year, and the "
            "threshold was chosen on the same predictions, so recall is optimistic."
        )
    lines += [
        "",
        "## Plots",
        "",
        "![ROC](plots/roc.png) ![Precision-recall](plots/pr.png)",
        "![Calibration](plots/calibration.png) ![Importance](plots/importance.png)",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Plots


def _plot_all(plots: Path, y: np.ndarray, score: np.ndarray, threshold: float, importance: Mapping[str, float]) -> None:
    # The Agg canvas is bound to each figure, never through pyplot: no global backend switch,
    # no figure registry, safe from any thread and whatever backend the process chose.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.metrics import precision_recall_curve, roc_curve

    both = 0 < y.sum() < y.size

    def figure(title: str, xlabel: str, ylabel: str) -> tuple[Figure, Any]:
        fig = Figure(figsize=(5, 4), dpi=100, layout="tight")
        FigureCanvasAgg(fig)
        axes = fig.add_subplot()
        axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
        return fig, axes

    def undefined(axes: Any) -> None:
        axes.text(0.5, 0.5, "undefined: one class only", ha="center", va="center", transform=axes.transAxes)

    alert = score >= threshold
    fig, axes = figure("ROC", "false-positive rate", "recall")
    if both:
        fpr, tpr, _ = roc_curve(y, score)
        axes.plot(fpr, tpr, label="model")
        axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
        axes.plot([alert[y == 0].mean()], [alert[y == 1].mean()], "o", color="crimson", label="threshold")
        axes.legend(loc="lower right")
    else:
        undefined(axes)
    fig.savefig(plots / "roc.png")

    fig, axes = figure("Precision-recall", "recall", "precision")
    if both:
        precision, recall, _ = precision_recall_curve(y, score)
        axes.plot(recall, precision, label="model")
        axes.axhline(y.mean(), linestyle="--", color="grey", label="base rate")
        if alert.any():
            axes.plot([alert[y == 1].mean()], [y[alert].mean()], "o", color="crimson", label="threshold")
        axes.legend(loc="lower left")
    else:
        undefined(axes)
    fig.savefig(plots / "pr.png")

    fig, axes = figure("Calibration", "mean predicted probability", "observed share behind")
    if y.size:
        bins = np.unique(np.quantile(score, np.linspace(0, 1, 11)))
        index = np.clip(np.searchsorted(bins, score, side="right") - 1, 0, max(len(bins) - 2, 0))
        present = [i for i in range(max(len(bins) - 1, 1)) if np.any(index == i)]
        axes.plot(
            [score[index == i].mean() for i in present], [y[index == i].mean() for i in present], "o-", label="model"
        )
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    axes.legend(loc="upper left")
    fig.savefig(plots / "calibration.png")

    top = sorted(importance.items(), key=lambda item: item[1])[-15:]
    fig, axes = figure("Feature importance", "share of importance", "")
    axes.barh([name for name, _ in top], [float(value) for _, value in top])
    fig.savefig(plots / "importance.png")
