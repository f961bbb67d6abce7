"""One-line breaks of the gate, routing, calibration and threshold code, each run against its tests.

Every mutant changes one line of a copy of the tracked tree; the tests named beside it run on that
copy. A mutant the tests do not kill is a behaviour no test guards. Not part of ``make test`` (it
runs the named tests once per mutant); ``make mutate`` runs it.

Usage:
    python scripts/mutate.py                 # every mutant, fast tests only
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

GATE_TESTS = ("tests/modeling/test_gate.py", "tests/flows/test_train_gate.py")
ROUTING_TESTS = ("tests/modeling/test_bundle.py", "tests/serving/test_api.py", "tests/serving/test_api_callers.py")
CALIBRATION_TESTS = ("tests/modeling/test_calibration.py", "tests/modeling/test_training.py")
THRESHOLD_TESTS = ("tests/modeling/test_threshold.py", "tests/modeling/test_training.py")
# On the session's real trained champion: one training on the real data per mutant.
REAL_CHAMPION_TESTS = ("tests/serving/test_real_champion.py",)


@dataclass(frozen=True)
class Mutant:
    """Replace the ``occurrence``-th ``before`` in ``path`` by ``after``; ``tests`` should then fail."""

    name: str
    path: str
    before: str
    after: str
    tests: tuple[str, ...]
    occurrence: int = 1
    slow_tests: tuple[str, ...] = REAL_CHAMPION_TESTS


MUTANTS = (
    # the gate
    Mutant(
        "gate: the ROC-AUC floor never reaches the train flow",
        "flows/train.py",
        "        min_roc_auc=settings.gate_min_roc_auc,\n",
        "",
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
    # routing
    Mutant(
        "routing: a variant the gate rejected is served",
        "modeling/bundle.py",
        "if bundle.servable and set(bundle.required) <= known:",
        "if set(bundle.required) <= known:",
        ROUTING_TESTS,
    ),
    Mutant(
        "routing: the poorest variant is tried first",
        "modeling/bundle.py",
        "key=lambda b: -len(b.used or b.feature_names)",
        "key=lambda b: len(b.used or b.feature_names)",
        ROUTING_TESTS,
    ),
    Mutant(
        "routing: a request without a required field is routed",
        "modeling/bundle.py",
        "if bundle.servable and set(bundle.required) <= known:",
        "if bundle.servable:",
        ROUTING_TESTS,
    ),
    Mutant(
        "routing: every variant is servable",
        "modeling/bundle.py",
        'return self.variant == "full" or (isinstance(gate, dict) and gate.get("accepted") is True)',
        "return True",
        ROUTING_TESTS,
    ),
    Mutant(
        "routing: a thin request gets 'low' instead of 'unknown'",
        "modeling/scoring.py",
        '"unknown" if route is None else',
        '"low" if route is None else',
        ROUTING_TESTS,
    ),
    Mutant(
        "routing: a field missing in 40 % of rows is still required",
        "modeling/variants.py",
        "REQUIRED_MISSING_SHARE = 0.01",
        "REQUIRED_MISSING_SHARE = 0.4",
        ROUTING_TESTS,
    ),
    # calibration
    Mutant(
        "calibration: no Platt prior (hard targets)",
        "modeling/calibration.py",
        "hi, lo = (positives + 1.0) / (positives + 2.0), 1.0 / (negatives + 2.0)",
        "hi, lo = 1.0, 0.0",
        CALIBRATION_TESTS,
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
        CALIBRATION_TESTS,
    ),
    Mutant(
        "calibration: the map ignores the intercept",
        "modeling/bundle.py",
        "platt = 1.0 / (1.0 + np.exp(-(self.a * score + self.b)))",
        "platt = 1.0 / (1.0 + np.exp(-(self.a * score)))",
        CALIBRATION_TESTS,
    ),
    # the threshold
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
        THRESHOLD_TESTS,
    ),
    Mutant(
        "threshold: the Wilson lower bound is the upper one",
        "modeling/threshold.py",
        "return (float(max(0.0, (centre - spread) / denominator)),",
        "return (float(max(0.0, (centre + spread) / denominator)),",
        THRESHOLD_TESTS,
    ),
    Mutant(
        "threshold: a score at the threshold is 'low' (served path)",
        "serving/app.py",
        '"risk_label": "high" if score >= route.threshold else "low",',
        '"risk_label": "high" if score > route.threshold else "low",',
        ROUTING_TESTS,
    ),
    Mutant(
        "threshold: a score at the threshold is 'low' (scoring)",
        "modeling/scoring.py",
        '("high" if score >= route.threshold else "low")',
        '("high" if score > route.threshold else "low")',
        ROUTING_TESTS,
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


def run_tests(tree: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, float]:
    """Run ``tests`` on ``tree``; (pytest's exit code, or -1 on timeout; seconds)."""
    env = os.environ | {
        "PYTHONPATH": str(tree),
        # the copy lives elsewhere: point the tests at the data the repository's own tests read
        "PASSOS_TEST_DATA": os.environ.get("PASSOS_TEST_DATA", str(ROOT.parent / "shared" / "data")),
    }
    started = time.monotonic()
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header", *tests]
    try:
        done = subprocess.run(command, cwd=tree, env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, time.monotonic() - started
    return done.returncode, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slow", action="store_true", help="also run the tests on the real trained champion")
    parser.add_argument("--only", default="", help="run only the mutants whose name starts with this")
    parser.add_argument("--no-baseline", action="store_true", help="skip the check that the unmutated tree is green")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per test run")
    args = parser.parse_args()
    mutants = [m for m in MUTANTS if m.name.startswith(args.only)]
    survivors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="passos-mutate-") as folder:
        tree = Path(folder)
        copy_tree(tree)
        suites = {m.tests + (m.slow_tests if args.slow else ()) for m in mutants}
        for tests in [] if args.no_baseline else sorted(suites):
            code, seconds = run_tests(tree, tests, args.timeout)
            if code != 0:
                print(f"the unmutated tree fails {' '.join(tests)} (exit {code}); fix that first", file=sys.stderr)
                return 2
            print(f"baseline green in {seconds:.0f} s: {' '.join(tests)}", flush=True)
        for mutant in mutants:
            path = tree / mutant.path
            original = path.read_text()
            at = -1
            for _ in range(mutant.occurrence):
                at = original.find(mutant.before, at + 1)
            if at < 0:
                print(f"NOT APPLIED  {mutant.name}: {mutant.path} no longer has {mutant.before!r}", flush=True)
                survivors.append(f"{mutant.name} (not applied: the line changed)")
                continue
            path.write_text(original[:at] + mutant.after + original[at + len(mutant.before) :])
            try:
                tests = mutant.tests + (mutant.slow_tests if args.slow else ())
                code, seconds = run_tests(tree, tests, args.timeout)
            finally:
                path.write_text(original)
            verdict = "killed  " if code == 1 else ("SURVIVED" if code == 0 else f"error {code}")
            print(f"{verdict}  {mutant.name}  ({mutant.path}, {seconds:.0f} s)", flush=True)
            if code != 1:
                survivors.append(mutant.name if code == 0 else f"{mutant.name} (tests ended with exit {code})")
    print(f"\n{len(mutants) - len(survivors)} of {len(mutants)} mutants killed")
    for name in survivors:
        print(f"  not killed: {name}")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
