"""One-line breaks of the gate, routing, calibration and threshold code, each run against its tests.

Every mutant changes one line of a copy of the tracked tree; the tests named beside it run on that
copy. A mutant the tests do not kill is a behaviour no test guards. Not part of ``make test`` (it
runs the named tests once per mutant); ``make mutate`` runs it.

A mutant whose text is no longer in the code (the code moved) stops the run before any test, naming it.

Usage:
    python scripts/mutate.py                 # every mutant, fast tests only (tests marked slow left out)
    python scripts/mutate.py --slow          # also the tests on the real trained champion (minutes each)
    python scripts/mutate.py --only gate     # mutants whose name starts with "gate"
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

GATE_TESTS = ("tests/modeling/test_gate.py", "tests/modeling/test_release.py", "tests/flows/test_train_gate.py")
ROUTING_TESTS = ("tests/modeling/test_scoring.py", "tests/modeling/test_bundle.py", "tests/serving/test_api.py")
CALIBRATION_TESTS = ("tests/modeling/test_calibration.py", "tests/modeling/test_training.py")
THRESHOLD_TESTS = ("tests/modeling/test_threshold.py", "tests/modeling/test_training.py")
# On a real trained champion: one training on the real data per mutant.
REAL_CHAMPION_TESTS = ("tests/serving/test_real_champion.py",)


@dataclass(frozen=True)
class Mutant:
    """Replace the ``occurrence``-th ``before`` in ``path`` by ``after``; ``tests`` should then fail.

    ``tests`` name the test that pins the behaviour first (pytest stops at the first failure), then
    the files around it.
    """

    name: str
    path: str
    before: str
    after: str
    tests: tuple[str, ...]
    occurrence: int = 1
    slow_tests: tuple[str, ...] = REAL_CHAMPION_TESTS


MUTANTS = (
    # the gate: its checks (modeling/gate.py) and the policy the train flow judges with (modeling/release.py)
    Mutant(
        "gate: the ROC-AUC floor never reaches the gate",
        "modeling/release.py",
        "        min_roc_auc=policy.min_roc_auc,\n",
        "",
        ("tests/flows/test_train_gate.py::test_the_flow_applies_the_roc_auc_floor_of_the_settings", *GATE_TESTS),
    ),
    Mutant(
        "gate: the ROC-AUC floor is not the settings'",
        "modeling/release.py",
        "min_roc_auc=settings.gate_min_roc_auc,",
        "min_roc_auc=0.5,",
        GATE_TESTS,
    ),
    Mutant(
        "gate: no ROC-AUC check",
        "modeling/gate.py",
        'checks["min_roc_auc"] = _minimum_check("roc_auc", candidate["roc_auc"], min_roc_auc)',
        "pass",
        GATE_TESTS,
    ),
    Mutant(
        "gate: the precision floor is 0",
        "modeling/gate.py",
        '_minimum_check("precision", candidate["precision"], min_precision)',
        '_minimum_check("precision", candidate["precision"], 0.0)',
        GATE_TESTS,
    ),
    Mutant(
        "gate: a failed check still accepts",
        "modeling/gate.py",
        "return Verdict(accepted=not reasons,",
        "return Verdict(accepted=True,",
        GATE_TESTS,
    ),
    Mutant(
        "gate: a floor lets 0.05 below it pass",
        "modeling/gate.py",
        "passed = value >= limit - _EPS",
        "passed = value >= limit - 0.05",
        GATE_TESTS,
        occurrence=1,  # the floors (_minimum_check)
    ),
    Mutant(
        "gate: the champion comparison lets 0.05 below it pass",
        "modeling/gate.py",
        "passed = value >= limit - _EPS",
        "passed = value >= limit - 0.05",
        GATE_TESTS,
        occurrence=2,  # the champion checks (_champion_check)
    ),
    Mutant(
        "gate: the champion comparison ignores the tolerance",
        "modeling/gate.py",
        "limit = champion - tolerance",
        "limit = champion - 2 * tolerance",
        GATE_TESTS,
    ),
    Mutant(
        "gate: only recall is compared with the champion",
        "modeling/gate.py",
        'for metric in ("recall", "roc_auc"):',
        'for metric in ("recall",):',
        GATE_TESTS,
    ),
    Mutant(
        "gate: a weaker protocol is not held",
        "modeling/gate.py",
        "if mine < theirs:",
        "if mine > theirs:",
        GATE_TESTS,
    ),
    Mutant(
        "gate: an older test year is not held",
        "modeling/gate.py",
        "int(mine_year) < int(their_year)",
        "int(mine_year) > int(their_year)",
        GATE_TESTS,
    ),
    # routing: every path routes through modeling/scoring.py (ModelBundle.servable says who may answer)
    Mutant(
        "routing: a variant the gate rejected is served",
        "modeling/scoring.py",
        "if not bundle.servable or any(name not in position for name in bundle.required):",
        "if any(name not in position for name in bundle.required):",
        ("tests/modeling/test_scoring.py::test_a_variant_the_gate_rejected_never_answers", *ROUTING_TESTS),
    ),
    Mutant(
        "routing: every variant is servable",
        "modeling/bundle.py",
        'return self.variant == "full" or (isinstance(gate, dict) and gate.get("accepted") is True)',
        "return True",
        ("tests/modeling/test_bundle.py::test_only_a_variant_its_own_gate_accepted_is_servable", *ROUTING_TESTS),
    ),
    Mutant(
        "routing: the poorest variant is tried first",
        "modeling/scoring.py",
        "key=lambda b: -len(b.used or b.feature_names)",
        "key=lambda b: len(b.used or b.feature_names)",
        ROUTING_TESTS,
    ),
    Mutant(
        "routing: a request without a required field is routed",
        "modeling/scoring.py",
        "carries = known[:, columns].all(axis=1) if columns else np.ones(known.shape[0], dtype=bool)",
        "carries = np.ones(known.shape[0], dtype=bool)",
        ROUTING_TESTS,
    ),
    Mutant(
        "routing: a thin request gets 'low' instead of 'unknown' (the answer)",
        "modeling/scoring.py",
        '"risk_label": UNKNOWN,',
        '"risk_label": LOW,',
        (
            "tests/modeling/test_scoring.py::test_a_row_too_thin_for_every_variant_is_unknown_and_told_what_to_send",
            *ROUTING_TESTS,
        ),
    ),
    Mutant(
        "routing: a thin row gets 'low' instead of 'unknown' (the label: batch and risk_scores)",
        "modeling/scoring.py",
        "        return UNKNOWN\n",
        "        return LOW\n",
        (
            "tests/modeling/test_scoring.py::test_a_row_too_thin_for_every_variant_is_unknown_and_told_what_to_send",
            *ROUTING_TESTS,
        ),
    ),
    Mutant(
        "routing: a thin request is not told which fields to send",
        "modeling/scoring.py",
        '"needed": min(options, key=len) if options else [],',
        '"needed": [],',
        (
            "tests/modeling/test_scoring.py::test_a_row_too_thin_for_every_variant_is_unknown_and_told_what_to_send",
            *ROUTING_TESTS,
        ),
    ),
    Mutant(
        "routing: a field missing in 40 % of rows is still required",
        "modeling/variants.py",
        "REQUIRED_MISSING_SHARE = 0.01",
        "REQUIRED_MISSING_SHARE = 0.4",
        (
            "tests/modeling/test_scoring.py::test_only_a_field_known_in_99_of_100_training_rows_is_required",
            *ROUTING_TESTS,
        ),
    ),
    # calibration
    Mutant(
        "calibration: no Platt prior (hard targets)",
        "modeling/calibration.py",
        "hi, lo = (positives + 1.0) / (positives + 2.0), 1.0 / (negatives + 2.0)",
        "hi, lo = 1.0, 0.0",
        (
            "tests/modeling/test_calibration.py::test_platt_fits_the_prior_corrected_targets_not_zero_and_one",
            *CALIBRATION_TESTS,
        ),
    ),
    Mutant(
        "calibration: targets swapped",
        "modeling/calibration.py",
        "target = np.where(y == 1.0, hi, lo)",
        "target = np.where(y == 1.0, lo, hi)",
        CALIBRATION_TESTS,
    ),
    Mutant(
        "calibration: one class is accepted",
        "modeling/calibration.py",
        "if positives == 0 or negatives == 0:",
        "if positives == 0 and negatives == 0:",
        CALIBRATION_TESTS,
    ),
    Mutant(
        "calibration: reliability bins shifted",
        "modeling/calibration.py",
        'proba, side="right"), 0, len(edges) - 2)',
        'proba, side="left"), 0, len(edges) - 2)',
        (
            "tests/modeling/test_calibration.py::test_a_reliability_bin_holds_its_lower_edge_and_not_its_upper",
            *CALIBRATION_TESTS,
        ),
    ),
    Mutant(
        "calibration: the map ignores the intercept",
        "modeling/bundle.py",
        "platt = 1.0 / (1.0 + np.exp(-(self.a * score + self.b)))",
        "platt = 1.0 / (1.0 + np.exp(-(self.a * score)))",
        ("tests/modeling/test_calibration.py::test_the_platt_map_applies_its_intercept", *CALIBRATION_TESTS),
    ),
    # the threshold: how it is chosen (modeling/threshold.py) and how it labels (modeling/scoring.py;
    # nothing in serving/ compares a score with a threshold: the routes answer what the scoring core says)
    Mutant(
        "threshold: the operating recall aims 0.05 low",
        "modeling/threshold.py",
        "if recall_lower_bound(hits, positives, confidence) >= recall_target - 1e-12:",
        "if recall_lower_bound(hits, positives, confidence) >= recall_target - 0.05:",
        THRESHOLD_TESTS,
    ),
    Mutant(
        "threshold: the lowest cut, not the highest",
        "modeling/threshold.py",
        "return float(cuts[recall >= recall_target - 1e-12].max())",
        "return float(cuts[recall >= recall_target - 1e-12].min())",
        THRESHOLD_TESTS,
    ),
    Mutant(
        "threshold: the cut sits on the edge of the positives",
        "modeling/threshold.py",
        "cut = _from_logit((_logit(floor) + _logit(top)) / 2.0)",
        "cut = top",
        THRESHOLD_TESTS,
    ),
    Mutant(
        "threshold: false alarms counted strictly above the cut",
        "modeling/threshold.py",
        "false_alarms=int(np.sum((y == 0.0) & (proba >= cut))),",
        "false_alarms=int(np.sum((y == 0.0) & (proba > cut))),",
        (
            "tests/modeling/test_threshold.py::test_a_negative_scored_exactly_at_the_cut_is_a_false_alarm",
            *THRESHOLD_TESTS,
        ),
    ),
    Mutant(
        "threshold: the Wilson lower bound is the upper one",
        "modeling/threshold.py",
        "return (float(max(0.0, (centre - spread) / denominator)),",
        "return (float(max(0.0, (centre + spread) / denominator)),",
        THRESHOLD_TESTS,
    ),
    # The same break twice: once against the scoring core's tests, once against the HTTP test alone.
    Mutant(
        "threshold: a score at the threshold is 'low' (scoring core)",
        "modeling/scoring.py",
        "return HIGH if score >= threshold else LOW",
        "return HIGH if score > threshold else LOW",
        ("tests/modeling/test_scoring.py::test_a_score_exactly_at_its_cut_is_high_on_every_path", *ROUTING_TESTS),
    ),
    Mutant(
        "threshold: a score at the threshold is 'low' (served path, over HTTP)",
        "modeling/scoring.py",
        "return HIGH if score >= threshold else LOW",
        "return HIGH if score > threshold else LOW",
        ("tests/serving/test_api.py::test_a_score_exactly_at_the_threshold_is_high",),
    ),
)


def tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name and (ROOT / name).is_file()]


def copy_tree(target: Path) -> None:
    for name in tracked_files():
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, destination)


def run_tests(tree: Path, tests: tuple[str, ...], timeout: float, *, slow: bool) -> tuple[int, float]:
    """Run ``tests`` on ``tree`` (without ``slow``: the tests marked slow left out); (pytest's exit code, or -1
    on timeout; seconds)."""
    env = os.environ | {
        "PYTHONPATH": str(tree),
        # the copy lives elsewhere: point the tests at the data the repository's own tests read
        "PASSOS_TEST_DATA": os.environ.get("PASSOS_TEST_DATA", str(ROOT.parent / "shared" / "data")),
    }
    started = time.monotonic()
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header"]
    command += [] if slow else ["-m", "not slow"]
    try:
        done = subprocess.run([*command, *tests], cwd=tree, env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, time.monotonic() - started
    return done.returncode, time.monotonic() - started


def locate(mutant: Mutant, text: str) -> int:
    """Where the ``occurrence``-th ``before`` starts in ``text`` (-1: not there)."""
    at = -1
    for _ in range(mutant.occurrence):
        at = text.find(mutant.before, at + 1)
        if at < 0:
            return -1
    return at


def stale(mutants: list[Mutant], tree: Path) -> list[str]:
    """One line per mutant whose text is not in ``tree``: the code moved and the mutant must follow it."""
    out = []
    for mutant in mutants:
        path = tree / mutant.path
        if not path.is_file():
            out.append(f"{mutant.name}: {mutant.path} does not exist")
        elif locate(mutant, path.read_text()) < 0:
            out.append(f"{mutant.name}: {mutant.path} has no occurrence {mutant.occurrence} of {mutant.before!r}")
    return out


def baseline_suite(mutants: list[Mutant], *, slow: bool) -> tuple[str, ...]:
    """Every test any mutant runs, once: a test named by itself is left out when its file is listed."""
    named = dict.fromkeys(t for m in mutants for t in m.tests + (m.slow_tests if slow else ()))
    return tuple(t for t in named if t.split("::")[0] == t or t.split("::")[0] not in named)


def run_mutant(mutant: Mutant, tree: Path, timeout: float, *, slow: bool) -> tuple[int, float, str]:
    """Run the mutant's tests on ``tree``: (exit code, seconds, which tests ended the run).

    The tests named by node id (``file::test``, the ones that pin the behaviour) run first and
    alone: pytest runs a node id listed with its own file in the file's order, not first.
    """
    pinned = tuple(t for t in mutant.tests if "::" in t)
    rest = tuple(t for t in mutant.tests if "::" not in t) + (mutant.slow_tests if slow else ())
    spent = 0.0
    if pinned:
        code, spent = run_tests(tree, pinned, timeout, slow=slow)
        if code != 0 or not rest:
            return code, spent, "its pinned test"
    code, seconds = run_tests(tree, rest, timeout, slow=slow)
    return code, spent + seconds, "the suite"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slow", action="store_true", help="also run the tests on the real trained champion")
    parser.add_argument("--only", default="", help="run only the mutants whose name starts with this")
    parser.add_argument("--no-baseline", action="store_true", help="skip the check that the unmutated tree is green")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per test run")
    args = parser.parse_args()
    mutants = [m for m in MUTANTS if m.name.startswith(args.only)]
    if not mutants:
        print(f"no mutant's name starts with {args.only!r}", file=sys.stderr)
        return 2
    survivors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="passos-mutate-") as folder:
        tree = Path(folder)
        copy_tree(tree)
        missing = stale(mutants, tree)
        if missing:
            print("these mutants no longer apply (their text is not in the code):", file=sys.stderr)
            for line in missing:
                print(f"  {line}", file=sys.stderr)
            return 2
        if not args.no_baseline:
            suite = baseline_suite(mutants, slow=args.slow)
            code, seconds = run_tests(tree, suite, args.timeout, slow=args.slow)
            if code != 0:
                print(f"the unmutated tree fails {' '.join(suite)} (exit {code}); fix that first", file=sys.stderr)
                return 2
            print(f"baseline green in {seconds:.0f} s: {' '.join(suite)}", flush=True)
        for mutant in mutants:
            path = tree / mutant.path
            original = path.read_text()
            at = locate(mutant, original)
            path.write_text(original[:at] + mutant.after + original[at + len(mutant.before) :])
            try:
                code, seconds, by = run_mutant(mutant, tree, args.timeout, slow=args.slow)
            finally:
                path.write_text(original)
            verdict = f"killed by {by}" if code == 1 else ("SURVIVED" if code == 0 else f"error {code}")
            print(f"{verdict:<25} {mutant.name}  ({mutant.path}, {seconds:.0f} s)", flush=True)
            if code != 1:
                survivors.append(mutant.name if code == 0 else f"{mutant.name} (tests ended with exit {code})")
    print(f"\n{len(mutants) - len(survivors)} of {len(mutants)} mutants killed")
    for name in survivors:
        print(f"  not killed: {name}")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
