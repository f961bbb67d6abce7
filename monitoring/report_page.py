"""The top of a drift report page: verdict, reasons, what to do, the PSI legend, the champion's card.

Evidently's page (per-column detail) follows underneath; a check that compared nothing (no new
data since training) gets this part alone. Every text is escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from monitoring.drift import NO_NEW_DATA, RETRAIN, STABLE, WATCH
from monitoring.outcomes import fmt_share

NEXT_STEPS = {
    RETRAIN: (
        "Retrain: run `passos train` (or the `train/retrain-weekly` deployment now). The recall gate decides "
        "whether the new model replaces the champion. Before that, look at the features named above: a change "
        "in how they are measured (a new form, a new scale, a data-entry error) is fixed at the source, not by "
        "retraining."
    ),
    WATCH: (
        "Nothing to do now. Look at the next check: if the same signal is named again, or realised recall keeps "
        "falling, retrain."
    ),
    STABLE: "Nothing to do: the champion sees data like the data it was trained on.",
    NO_NEW_DATA: (
        "Nothing to do until there is something new: a year the champion has not seen (`passos ingest`), or "
        "enough new predictions in the API's log. The drift run checks again then."
    ),
    "ok": "An older report (before verdicts in three levels).",
}

PSI_LEGEND = (
    "PSI (population stability index) compares two distributions on the reference's bins; 0 means identical, "
    "higher means more drift: below 0.1 no real shift, 0.1 to 0.2 moderate, 0.2 and above significant. Here a "
    "signal counts only when it is at least 0.1 and above its own calibrated threshold, the largest value that "
    "years with nothing new reach (from how much the training years already differ from one another)."
)

COLOURS = {RETRAIN: "#b71c1c", WATCH: "#e65100", STABLE: "#1b5e20", NO_NEW_DATA: "#455a64", "ok": "#1b5e20"}

STYLE = """
.passos-verdict { font-family: system-ui, sans-serif; margin: 1em; padding: .8em 1.2em; border: 3px solid;
  border-radius: 6px; color: #222; background: #fff; }
.passos-verdict h1 { margin: 0 0 .4em 0; font-size: 1.6em; }
.passos-verdict table { border-collapse: collapse; margin: .5em 0; }
.passos-verdict th, .passos-verdict td { padding: .25em .7em; border-bottom: 1px solid #ddd; text-align: left; }
.passos-verdict td.num { text-align: right; font-variant-numeric: tabular-nums; }
.passos-verdict .moved { font-weight: bold; }
.passos-verdict .note { color: #555; font-size: .92em; }
"""


def _num(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}f}"


def _signals_table(signals: Sequence[Mapping[str, Any]]) -> str:
    if not signals:
        return ""
    rows = []
    ordered = sorted(signals, key=lambda s: (s["kind"] == "feature", -(s.get("importance") or 0.0)))
    for signal in ordered:
        moved = signal["psi"] >= 0.1 and signal["psi"] > signal["threshold"]
        importance = "" if signal.get("importance") is None else f"{signal['importance']:.1%}"
        rows.append(
            f'<tr class="{"moved" if moved else ""}"><td>{escape(str(signal["name"]))}</td>'
            f"<td>{escape(signal['kind'])}</td><td class='num'>{importance}</td>"
            f"<td class='num'>{_num(signal['psi'])}</td><td class='num'>{_num(signal['watch_threshold'])}</td>"
            f"<td class='num'>{_num(signal['threshold'])}</td><td>{'moved' if moved else ''}</td></tr>"
        )
    return (
        "<details><summary>Every signal (model score first, then features by importance)</summary>"
        "<table><thead><tr><th>signal</th><th>kind</th><th>importance</th><th>PSI now</th>"
        "<th>watch above</th><th>alarm above</th><th></th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></details>"
    )


def _outcomes_table(outcomes: Sequence[Mapping[str, Any]]) -> str:
    if not outcomes:
        return (
            "<h2>How earlier warnings turned out</h2><p>No scored student's outcome is known yet "
            "(`passos score` a year, then ingest the year after).</p>"
        )
    rows = []
    for item in outcomes:
        missed = list(item.get("missed") or [])
        shown = ", ".join(missed[:40]) + (f" and {len(missed) - 40} more" if len(missed) > 40 else "")
        sample = {True: "in-sample (the version was fitted on this truth)", False: "out of sample", None: "unknown"}[
            item.get("in_sample")
        ]
        rows.append(
            f"<tr><td>{escape(str(item['task']))}</td><td class='num'>{item['year']}</td>"
            f"<td>{escape(str(item['model_version']))}</td><td class='num'>{item['students']}</td>"
            f"<td class='num'>{item['behind']}</td><td class='num'>{item['warned']}</td>"
            f"<td class='num'>{fmt_share(item.get('recall'))}</td><td class='num'>{fmt_share(item.get('precision'))}</td>"
            f"<td>{escape(sample)}</td><td>{escape(shown) or '—'}</td></tr>"
        )
    return (
        "<h2>How earlier warnings turned out</h2>"
        "<p class='note'>Warnings are the students scored <code>high</code>; the truth is that year's "
        "<code>defasagem &lt; 0</code> for <code>current</code>, the next year's for <code>next_year</code>. "
        "Missed = behind without a warning (ids only). Source: the warehouse view <code>outcomes</code>, "
        "also <code>passos outcomes</code>.</p>"
        "<table><thead><tr><th>task</th><th>year scored</th><th>model version</th><th>students</th><th>behind</th>"
        "<th>warned</th><th>recall</th><th>precision</th><th>figures are</th><th>missed</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def card_link(task: str, version: str) -> str:
    """The link from a report page (``reports/drift/<run>/``) to its champion's card.

    Relative, so it resolves to ``$PASSOS_HOME/models/...`` from ``file://`` and to the API's
    read-only ``/models/<task>/<version>/card.md`` over HTTP (serving/ops_routes.py).
    """
    return f"../../../models/{task}/{version}/card.md"


def render_header(meta: Mapping[str, Any]) -> str:
    """The verdict block that opens a report page.

    Args:
        meta: The report's metadata: ``verdict``, ``reasons``, ``task``, ``model_version``,
            ``reference``, ``current``, ``card_link`` and ``card_path`` (the champion's card, relative to ``$PASSOS_HOME``: a served page names no path of the machine),
            ``check`` (``DriftCheck.as_dict()``) and ``outcomes`` (summaries as dicts).

    Returns:
        An HTML fragment (a ``<style>`` and one ``<section>``).
    """
    verdict = str(meta.get("verdict"))
    check = meta.get("check") or {}
    colour = COLOURS.get(verdict, "#222")
    reasons = "".join(f"<li>{escape(str(reason))}</li>" for reason in meta.get("reasons") or [])
    calibration = check.get("calibration") or {}
    performance = check.get("performance") or {}
    calibration_text = (
        f"Thresholds calibrated on {calibration['resamples']} resamples ({escape(str(calibration['method']))}): "
        f"an unchanged year is called <b>retrain recommended</b> with probability about "
        f"{calibration['false_alarm_rate']:.0%} and <b>watch</b> about {calibration['watch_rate']:.0%}. "
        f"A feature carrying less than {calibration['min_importance']:.0%} of the model's importance only leads "
        "to <b>watch</b>."
        if calibration
        else ""
    )
    performance_text = ""
    if performance:
        performance_text = (
            f"<p>Realised on these rows (a year the champion has <b>not</b> seen: out of sample): recall "
            f"{_num(performance.get('recall'))}, precision {_num(performance.get('precision'))} at the champion's "
            f"threshold, against its out-of-time recall {_num(check.get('champion_recall'))} from the model card.</p>"
        )
    card = ""
    if meta.get("card_link"):
        card = (
            f"<p>Champion <b>{escape(str(meta.get('model_version')))}</b>: "
            f'<a href="{escape(str(meta["card_link"]))}">model card</a> '
            f"(<code>$PASSOS_HOME/{escape(str(meta.get('card_path', '')))}</code>, or <code>passos models show "
            f"{escape(str(meta.get('model_version')))}</code>).</p>"
        )
    detail = (
        "<p class='note'>Below: Evidently's per-column detail of the same comparison. Its drift scores are "
        "p-values for K-S and chi-square (lower is more drift) and distances for Wasserstein and Jensen-Shannon "
        "(higher is more drift); the verdict above does not use them.</p>"
        if meta.get("has_detail")
        else ""
    )
    return (
        f"<style>{STYLE}</style>"
        f'<section class="passos-verdict" style="border-color:{colour}">'
        f'<h1 style="color:{colour}">{escape(verdict)}</h1>'
        f"<p><b>{escape(str(meta.get('task')))}</b>: {escape(str(meta.get('current')))} against "
        f"{escape(str(meta.get('reference')))}.</p>"
        f"<h2>Why</h2><ul>{reasons}</ul>"
        f"<h2>What to do</h2><p>{escape(NEXT_STEPS.get(verdict, ''))}</p>"
        f"{card}{performance_text}"
        f"<h2>Reading it</h2><p class='note'>{escape(PSI_LEGEND)} {calibration_text}</p>"
        f"{_signals_table(check.get('signals') or [])}"
        f"{_outcomes_table(meta.get('outcomes') or [])}"
        f"{detail}</section>"
    )


def render_page(meta: Mapping[str, Any], evidently_html: str | None) -> str:
    """The whole report page: the verdict block, then Evidently's page when there is one."""
    header = render_header(dict(meta) | {"has_detail": evidently_html is not None})
    if evidently_html is None:
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>Drift: {escape(str(meta.get('task')))} — {escape(str(meta.get('verdict')))}</title>\n"
            f"</head>\n<body>\n{header}\n</body>\n</html>\n"
        )
    head, marker, tail = evidently_html.partition("<body>")
    return f"{head}{marker}{header}{tail}" if marker else header + evidently_html
