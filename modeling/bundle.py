"""The model bundle: what is pickled with joblib, loaded by the registry and served by the API.

A bundle holds a fitted scorer (a LightGBM ``Booster``, a :class:`LogisticModel` or a
:class:`RuleModel`), a monotone :class:`Calibrator` that maps its raw score to a probability of
risk, and the alert threshold on that probability. The serving path uses numpy and the Booster
only (no pandas, no scikit-learn), one thread, so one row costs microseconds, not milliseconds.

Raw scores, by kind: LightGBM log-odds; logistic log-odds; rule "years past the rule's cut"
(positive = the rule fires). Reasons are in the same units: log-odds (LightGBM exact tree SHAP,
logistic ``coef * standardised value``) or years (rule).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import joblib
import numpy as np

from modeling.folding import fold_boosters
from modeling.library_versions import library_versions, version_differences
from modeling.treeshap import PathTables, UnsupportedTreeError
from passos.errors import ModelInvalidError

logger = logging.getLogger(__name__)

Kind = Literal["lightgbm", "logistic", "rule"]
KINDS: tuple[Kind, ...] = ("lightgbm", "logistic", "rule")
DEFAULT_CHUNK_ROWS = 100_000


@dataclass(frozen=True)
class Calibrator:
    """A monotone map from raw score to probability, evaluated with numpy only.

    ``method="isotonic"``: piecewise-linear through ``(x, y)`` (scikit-learn's
    ``IsotonicRegression`` thresholds), clipped at both ends. ``method="platt"``:
    ``1 / (1 + exp(-(a * score + b)))``.

    ``tie_weight`` (isotonic only) blends in a Platt curve, ``(1 - w) * isotonic + w * platt``:
    isotonic regression is flat on whole blocks of scores (on near-separable scores it maps
    almost every row to exactly 0 or 1), which would turn a good ranking into ties and destroy
    the ROC-AUC and any threshold below the plateau. A small weight with ``a > 0`` makes the map
    strictly increasing, so the calibrated probabilities rank rows exactly as the raw score does.
    """

    method: Literal["isotonic", "platt"]
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    a: float = 1.0
    b: float = 0.0
    tie_weight: float = 0.0

    def __call__(self, score: np.ndarray) -> np.ndarray:
        """Calibrated probabilities in [0, 1] for raw scores."""
        score = np.asarray(score, dtype=np.float64)
        platt = 1.0 / (1.0 + np.exp(-(self.a * score + self.b)))
        if self.method == "isotonic":
            isotonic = np.interp(score, np.asarray(self.x), np.asarray(self.y))
            if self.tie_weight > 0.0:
                return (1.0 - self.tie_weight) * isotonic + self.tie_weight * platt
            return isotonic
        return platt


@dataclass
class LogisticModel:
    """A fitted logistic regression with its own numpy preprocessing.

    Design columns: each numeric feature (median-imputed) and its missing indicator, one
    indicator per category of each categorical feature; every design column is then
    standardised with the training mean and standard deviation, so ``coef * z`` is the
    column's push on the log-odds relative to the average training student.
    """

    numeric: list[int]
    medians: np.ndarray
    categorical: list[int]
    categories: list[np.ndarray]
    owners: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def design(self, X: np.ndarray) -> np.ndarray:
        """The standardised design matrix of ``X`` (rows x design columns)."""
        parts: list[np.ndarray] = []
        if self.numeric:
            values = X[:, self.numeric]
            missing = np.isnan(values)
            parts.append(np.where(missing, self.medians, values))
            parts.append(missing.astype(np.float64))
        for column, levels in zip(self.categorical, self.categories, strict=True):
            parts.append((X[:, [column]] == levels[np.newaxis, :]).astype(np.float64))
        raw = np.hstack(parts) if parts else np.empty((X.shape[0], 0))
        return (raw - self.mean) / self.scale

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-feature log-odds pushes (rows x features), summed over each feature's columns."""
        pushes = self.design(X) * self.coef
        owner_matrix = np.zeros((self.owners.size, X.shape[1]))
        owner_matrix[np.arange(self.owners.size), self.owners] = 1.0
        return pushes @ owner_matrix

    def raw_score(self, X: np.ndarray) -> np.ndarray:
        """Log-odds of risk."""
        return self.design(X) @ self.coef + self.intercept


@dataclass
class RuleModel:
    """A hand-written rule: the first known feature of a chain decides.

    Each link is ``(feature index, sign, cut)``; the row's score is ``sign * (x - cut)`` for the
    first link whose feature is known (0.0 when none is), so a positive score means the rule
    fires ("behind this year" for ``defasagem < 0``: index of ``defasagem``, sign -1, cut 0).
    """

    links: list[tuple[int, float, float]]
    shares: list[float] = field(default_factory=list)

    def decide(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The score of each row and the index of the link that decided it (-1 = none)."""
        score = np.zeros(X.shape[0])
        used = np.full(X.shape[0], -1, dtype=np.int64)
        for position, (column, sign, cut) in enumerate(self.links):
            free = (used < 0) & ~np.isnan(X[:, column])
            score[free] = sign * (X[free, column] - cut)
            used[free] = position
        return score, used

    def raw_score(self, X: np.ndarray) -> np.ndarray:
        """Years past the deciding link's cut (positive = the rule fires)."""
        return self.decide(X)[0]


@dataclass
class ModelBundle:
    """A fitted, calibrated risk model of one task, with its threshold.

    The scorer is an ensemble: the ``members`` are the cross-fitted models whose out-of-fold
    scores set the calibrator and the threshold, so what is served is exactly what was
    validated (``docs/modeling.md``). Its raw score is the members' mean raw score; LightGBM
    members are served folded into one booster (:func:`fold_boosters`), so a row costs one call.

    A bundle may be a *variant* trained for a smaller set of fields (``used``): the other
    columns are masked to missing before scoring, as they were in training. ``required`` are
    the used features never missing in training: a row without one of them is outside what the
    variant has seen, and must not be scored by it (:meth:`route`).

    Attributes:
        task: ``"current"`` or ``"next_year"``.
        kind: ``"lightgbm"``, ``"logistic"`` or ``"rule"``.
        feature_names: the columns ``X`` must have, in order (``features.featuresets``).
        threshold: alert when the calibrated probability is ``>= threshold``.
        members: ``lightgbm.Booster``, :class:`LogisticModel` or :class:`RuleModel` objects.
        calibrator: mean raw score -> probability.
        categories: category labels of the categorical features (codes -> labels in reasons).
        metadata: how it was trained (protocol, years, seed, params, metrics, gate, ...).
        versions: :func:`library_versions` at training time, checked by :meth:`check_versions`.
        variant: the variant's name (``"full"`` for the primary).
        used: the features this variant sees (empty: all of them).
        required: features that must be known for this variant to answer.
        reference: sorted calibrated scores of the reference year (for percentiles).
        variants: the primary's reduced siblings, servable ones only (empty on a variant).
    """

    task: str
    kind: Kind
    feature_names: list[str]
    threshold: float
    members: list[Any]
    calibrator: Calibrator
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=library_versions)
    variant: str = "full"
    used: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    reference: tuple[float, ...] = ()
    variants: list[ModelBundle] = field(default_factory=list)
    # Derived from ``members``, so never pickled: the members folded into one booster (LightGBM)
    # and its SHAP tables (built when a reason is first asked for, or on loading from disk).
    _folded: Any = field(default=None, init=False, repr=False, compare=False)
    _tables: Any = field(default=None, init=False, repr=False, compare=False)
    _reference: tuple[tuple[float, ...], np.ndarray] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("a model bundle needs at least one member")
        unknown = sorted(set(self.used) - set(self.feature_names))
        if unknown:
            raise ValueError(f"variant {self.variant!r} uses unknown features {unknown}")
        self._fold()

    def _fold(self) -> None:
        self._tables = None
        if self.kind == "lightgbm":
            self._folded = self.members[0] if len(self.members) == 1 else fold_boosters(self.members)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_folded", "_tables", "_reference")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A bundle read from disk is about to serve: fold it and build its tables now, not on the
        # first request.
        self.__dict__.update(state)
        self._folded = None
        self._reference = None
        self._fold()
        self.shap_tables()

    def shap_tables(self) -> PathTables | None:
        """The folded booster's exact SHAP tables (:mod:`modeling.treeshap`); ``None`` for other kinds.

        Also ``None`` when the trees are outside what the tables represent: ``pred_contrib`` then
        gives the same values, only slower.
        """
        if self._folded is not None and self._tables is None:
            try:
                self._tables = PathTables.from_booster(self._folded)
            except UnsupportedTreeError as exc:
                logger.info("model bundle %s/%s: SHAP by pred_contrib (%s)", self.task, self.variant, exc)
                self._tables = False
        return self._tables or None

    @property
    def folded(self) -> Any:
        """The scorer that serves: the members folded into one LightGBM booster (``None`` for other kinds).

        Its raw score and ``pred_contrib`` are the ensemble's (:func:`fold_boosters`).
        """
        return self._folded

    @property
    def estimator(self) -> Any:
        """The first member (the only one of a single-model bundle)."""
        return self.members[0]

    @property
    def masked(self) -> list[int]:
        """Positions of the columns this variant never sees."""
        if not self.used:
            return []
        used = set(self.used)
        return [j for j, name in enumerate(self.feature_names) if name not in used]

    def _matrix(self, X: np.ndarray) -> np.ndarray:
        matrix = np.asarray(X, dtype=np.float64)
        if matrix.ndim == 1:
            matrix = matrix.reshape(1, -1)
        if matrix.ndim != 2 or matrix.shape[1] != len(self.feature_names):
            raise ValueError(
                f"expected a matrix with {len(self.feature_names)} columns "
                f"({', '.join(self.feature_names)}), got shape {matrix.shape}"
            )
        masked = self.masked
        if masked:
            matrix = matrix.copy()
            matrix[:, masked] = np.nan
        return np.ascontiguousarray(matrix)

    def _member_raw(self, member: Any, matrix: np.ndarray, num_threads: int) -> np.ndarray:
        if self.kind == "lightgbm":
            return np.asarray(member.predict(matrix, raw_score=True, num_threads=num_threads))
        return np.asarray(member.raw_score(matrix))

    def raw_score(self, X: np.ndarray, *, num_threads: int = 1) -> np.ndarray:
        """The members' mean uncalibrated score (see the module docstring for its unit), shape (n,)."""
        matrix = self._matrix(X)
        if self._folded is not None:
            return self._member_raw(self._folded, matrix, num_threads)
        total = self._member_raw(self.members[0], matrix, num_threads)
        for member in self.members[1:]:
            total = total + self._member_raw(member, matrix, num_threads)
        return total / len(self.members)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Calibrated probability of risk (behind), shape (n,)."""
        return self.calibrator(self.raw_score(X))

    def predict_label(self, X: np.ndarray) -> np.ndarray:
        """``predict_proba(X) >= threshold`` as booleans, shape (n,)."""
        return self.predict_proba(X) >= self.threshold

    def predict_many(self, X: np.ndarray, *, chunk_rows: int = DEFAULT_CHUNK_ROWS, num_threads: int = 1) -> np.ndarray:
        """:meth:`predict_proba` over a large matrix (e.g. memory-mapped) in chunks of rows."""
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
        rows = X.shape[0] if X.ndim == 2 else 1
        out = np.empty(rows, dtype=np.float64)
        for start in range(0, rows, chunk_rows):
            chunk = X[start : start + chunk_rows]
            out[start : start + chunk.shape[0]] = self.calibrator(self.raw_score(chunk, num_threads=num_threads))
        return out

    def _member_contributions(self, member: Any, matrix: np.ndarray) -> np.ndarray:
        """One member's pushes, shape (n, n_features + 1): the last column is its base value."""
        if self.kind == "lightgbm":
            return np.asarray(member.predict(matrix, pred_contrib=True, num_threads=1))
        if self.kind == "logistic":
            pushes = member.contributions(matrix)
            base = member.raw_score(matrix) - pushes.sum(axis=1)
            return np.column_stack([pushes, base])
        score, used = member.decide(matrix)
        out = np.zeros((matrix.shape[0], matrix.shape[1] + 1))
        rows = np.flatnonzero(used >= 0)
        columns = np.asarray([link[0] for link in member.links], dtype=np.int64)
        out[rows, columns[used[rows]]] = score[rows]
        return out

    def _contributions_full(self, matrix: np.ndarray) -> np.ndarray:
        tables = self.shap_tables()
        if tables is not None:
            return tables.contributions(matrix)
        if self._folded is not None:
            return self._member_contributions(self._folded, matrix)
        total = self._member_contributions(self.members[0], matrix)
        for member in self.members[1:]:
            total = total + self._member_contributions(member, matrix)
        return total / len(self.members)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-feature pushes on the raw score, shape (n, n_features); positive raises the risk.

        The members' mean (SHAP values are linear in the model, so the mean of the members'
        exact tree SHAP is the exact SHAP of the ensemble). LightGBM: the exact tree SHAP of the
        folded booster (:attr:`folded`), by :mod:`modeling.treeshap`'s tables (equal to its
        ``pred_contrib``);
        logistic: ``coef * standardised value``; rule: the deciding feature gets the score.
        """
        return self._contributions_full(self._matrix(X))[:, :-1]

    def reasons(self, X: np.ndarray, top: int = 3) -> list[list[dict[str, Any]]]:
        """The top features pushing each row's risk UP, largest push first.

        Returns:
            One list per row of at most ``top`` dicts ``{"feature", "value", "contribution"}``
            with ``contribution > 0`` (raw-score units) and a known value: a feature that was
            not given is never a reason.
        """
        matrix = self._matrix(X)
        return self._reasons(matrix, self.contributions(matrix), top)

    def explain(self, X: np.ndarray, top: int = 3) -> tuple[np.ndarray, list[list[dict[str, Any]]]]:
        """:meth:`predict_proba` and :meth:`reasons` together (the API's one-row path).

        The pushes plus the base value add up to the raw score, so the score needs no second
        pass over the trees.
        """
        matrix = self._matrix(X)
        full = self._contributions_full(matrix)
        return self.calibrator(full.sum(axis=1)), self._reasons(matrix, full[:, :-1], top)

    def percentile(self, scores: np.ndarray) -> np.ndarray:
        """The share of the reference year's students (0-100) scored at or below each score."""
        if not self.reference:
            return np.full(np.shape(scores), np.nan)
        if self._reference is None or self._reference[0] is not self.reference:
            self._reference = (self.reference, np.asarray(self.reference, dtype=np.float64))
        reference = self._reference[1]
        return 100.0 * np.searchsorted(reference, np.asarray(scores, dtype=np.float64), side="right") / reference.size

    @property
    def servable(self) -> bool:
        """Whether this variant passed its own gate and check (the primary's verdict is the version's)."""
        gate = self.metadata.get("gate")
        return self.variant == "full" or (isinstance(gate, dict) and gate.get("accepted") is True)

    def route(self, known: set[str]) -> ModelBundle | None:
        """The servable variant with the most features whose required features are all ``known``."""
        family = sorted([self, *self.variants], key=lambda b: -len(b.used or b.feature_names))
        for bundle in family:
            if bundle.servable and set(bundle.required) <= known:
                return bundle
        return None

    def _reasons(self, matrix: np.ndarray, contrib: np.ndarray, top: int) -> list[list[dict[str, Any]]]:
        if matrix.shape[0] == 1:
            return [self._row_reasons(matrix[0].tolist(), contrib[0].tolist(), top)]
        # Sorting and gathering for all rows at once; Python only builds the small dicts. A
        # feature that was not given is never a reason, whatever its missing branch pushed.
        contrib = np.where(np.isnan(matrix), -np.inf, contrib)
        order = np.argsort(-contrib, axis=1, kind="stable")[:, : max(top, 0)]
        pushes = np.take_along_axis(contrib, order, axis=1).tolist()
        values = np.take_along_axis(matrix, order, axis=1).tolist()
        names = self.feature_names
        return [
            [
                {"feature": names[j], "value": self._value(j, x), "contribution": c}
                for j, x, c in zip(columns, row_values, row_pushes, strict=True)
                if c > 0.0 and x == x
            ]
            for columns, row_values, row_pushes in zip(order.tolist(), values, pushes, strict=True)
        ]

    def _row_reasons(self, values: list[float], pushes: list[float], top: int) -> list[dict[str, Any]]:
        # One row (the API's case): plain Python on 20-odd floats beats numpy's per-call cost. The
        # order is the batch path's (stable, largest push first, unknown values last).
        order = sorted(range(len(pushes)), key=lambda j: -pushes[j] if values[j] == values[j] else float("inf"))[
            : max(top, 0)
        ]
        names = self.feature_names
        return [
            {"feature": names[j], "value": self._value(j, values[j]), "contribution": pushes[j]}
            for j in order
            if pushes[j] > 0.0 and values[j] == values[j]
        ]

    def _value(self, column: int, value: float) -> float | str | None:
        if value != value:  # NaN, cheaper than np.isnan on a Python float
            return None
        labels = self.categories.get(self.feature_names[column])
        if labels is not None:
            code = int(value)
            return labels[code] if 0 <= code < len(labels) else None
        return float(value)

    def feature_importance(self) -> dict[str, float]:
        """Global importance per feature, summing to 1 (0 for all when undefined).

        LightGBM: total gain; logistic: ``|coef|`` summed per feature (columns are
        standardised, so comparable); rule: share of training rows each link decided.
        """
        weights = np.zeros(len(self.feature_names))
        for member in self.members:
            own = self._member_importance(member)
            total = float(own.sum())
            if total > 0:
                weights += own / total
        total = float(weights.sum())
        return {
            name: (float(w) / total if total > 0 else 0.0) for name, w in zip(self.feature_names, weights, strict=True)
        }

    def _member_importance(self, member: Any) -> np.ndarray:
        if self.kind == "lightgbm":
            return np.asarray(member.feature_importance(importance_type="gain"), dtype=np.float64)
        weights = np.zeros(len(self.feature_names))
        if self.kind == "logistic":
            np.add.at(weights, member.owners, np.abs(member.coef))
        else:
            for (column, _, _), share in zip(member.links, member.shares, strict=False):
                weights[column] += share
        return weights

    def check_versions(self) -> list[str]:
        """Compare the recorded library versions with this process's.

        Returns:
            Human-readable notes on minor differences (also logged as warnings).

        Raises:
            ModelInvalidError: another bundle format, or another major version of numpy or
                (for LightGBM bundles) lightgbm, which may not read the model the same way.
        """
        notes = version_differences(self.versions, kind=self.kind)
        for note in notes:
            logger.warning("model bundle %s/%s: %s", self.task, self.kind, note)
        return notes

    def save(self, path: Path) -> Path:
        """Write the bundle with joblib (parent folders created); returns ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(self, path)
        return path

    @classmethod
    def load(cls, path: Path) -> ModelBundle:
        """Read a bundle written by :meth:`save` and check its library versions.

        Raises:
            ModelInvalidError: the file is not a readable bundle or its versions do not fit.
        """
        try:
            bundle = joblib.load(path)
        except Exception as exc:  # any unpickling failure means the same thing to the caller
            raise ModelInvalidError(f"{path}: cannot be loaded as a model bundle ({exc})") from exc
        if not isinstance(bundle, cls):
            raise ModelInvalidError(f"{path}: holds {type(bundle).__name__}, not a ModelBundle")
        bundle.check_versions()
        return bundle
