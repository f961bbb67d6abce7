"""Exact tree SHAP of a LightGBM booster by table look-up (the "v2" idea of FastTreeSHAP, in numpy).

LightGBM's ``pred_contrib`` runs the path-dependent TreeSHAP recursion, O(leaves x depth^2) per
tree and row. The same values follow from a closed form: a leaf whose root path splits on the
distinct features ``P`` (``d`` of them) adds, to feature ``i`` in ``P``,

    v * (o_i - z_i) * sum over S in P - {i} of |S|! (d - |S| - 1)! / d! * prod_{j in S} o_j * prod_{j not in S} z_j

where ``v`` is the leaf value, ``z_j`` the product of the cover ratios (``child count / node
count``) of the path's splits on ``j``, and ``o_j`` is 1 when the row goes the path's way at every
split on ``j`` and 0 otherwise. A row enters only through the bits ``o``, so each leaf's ``2^d``
possible answers are computed once (:meth:`PathTables.from_booster`) and a row costs one pass
over the split decisions and one gather per leaf (:meth:`PathTables.contributions`). The paths
here have at most a handful of distinct features, so the tables stay small.

The split decisions follow LightGBM's own (``tree.h``): inputs with ``|x| <= 1e-35`` are zero; a
numerical split sends a missing value its default way when its missing type is ``NaN`` (or a
zero when it is ``Zero``), and compares ``x <= threshold`` otherwise (a missing value counting as
zero); a categorical split sends missing and negative codes right and a code left when it is in
the split's bitset. The result equals ``pred_contrib`` up to float rounding (checked in tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import factorial
from typing import Any

import numpy as np

_ZERO = 1e-35  # LightGBM's kZeroThreshold
_MISSING_NONE, _MISSING_ZERO = 0, 1  # LightGBM's missing types (2 is NaN)
# Above this many distinct features on one path the table (2^d rows) would be too large.
MAX_PATH_FEATURES = 16
_BITS = np.uint16  # one bit per distinct feature of a path
CHUNK_ROWS = 64


class UnsupportedTreeError(ValueError):
    """A booster these tables cannot represent (linear trees, several trees per round, very deep paths)."""


@dataclass
class _Tree:
    split_feature: list[int]
    threshold: list[float]
    decision_type: list[int]
    left_child: list[int]
    right_child: list[int]
    leaf_value: list[float]
    leaf_count: list[float]
    internal_count: list[float]
    cat_boundaries: list[int]
    cat_threshold: list[int]


def _parse(model: str) -> tuple[int, list[_Tree]]:
    """The number of features and the trees of a LightGBM model string."""
    head, _, rest = model.partition("\nTree=")
    values = dict(line.split("=", 1) for line in head.splitlines() if "=" in line)
    if values.get("num_tree_per_iteration", "1") != "1":
        raise UnsupportedTreeError("one tree per round is supported (binary or regression objectives)")
    n_features = int(values["max_feature_idx"]) + 1
    body = ("Tree=" + rest).partition("end of trees")[0]
    trees = []
    for block in body.split("Tree=")[1:]:
        kv = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if kv.get("is_linear", "0") != "0":
            raise UnsupportedTreeError("linear trees are not supported")

        def ints(key: str, kv: dict[str, str] = kv) -> list[int]:
            return [int(v) for v in kv.get(key, "").split()]

        def floats(key: str, kv: dict[str, str] = kv) -> list[float]:
            return [float(v) for v in kv.get(key, "").split()]

        trees.append(
            _Tree(
                split_feature=ints("split_feature"),
                threshold=floats("threshold"),
                decision_type=ints("decision_type"),
                left_child=ints("left_child"),
                right_child=ints("right_child"),
                leaf_value=floats("leaf_value"),
                leaf_count=floats("leaf_count"),
                internal_count=floats("internal_count"),
                cat_boundaries=ints("cat_boundaries"),
                cat_threshold=ints("cat_threshold"),
            )
        )
    return n_features, trees


# A leaf: its path entries (global node, went left, slot of its feature), the distinct features
# of the path (one slot each), their cover products z, and the leaf value.
_Leaf = tuple[list[tuple[int, bool, int]], list[int], list[float], float]


def _leaf(tree: _Tree, offset: int, path: list[tuple[int, bool, float]], value: float) -> _Leaf:
    features: list[int] = []
    zeros: list[float] = []
    entries: list[tuple[int, bool, int]] = []
    for node, left, ratio in path:
        feature = tree.split_feature[node]
        if feature not in features:
            features.append(feature)
            zeros.append(1.0)
        slot = features.index(feature)
        zeros[slot] *= ratio
        entries.append((offset + node, left, slot))
    if len(features) > MAX_PATH_FEATURES:
        raise UnsupportedTreeError(f"a path splits on {len(features)} distinct features")
    return entries, features, zeros, value


def _weights(d: int) -> np.ndarray:
    """Shapley weights ``k! (d - k - 1)! / d!`` for coalitions of ``k = 0 .. d-1`` other features."""
    return np.array([factorial(k) * factorial(d - k - 1) / factorial(d) for k in range(d)])


def _leaf_tables(values: np.ndarray, zeros: np.ndarray) -> np.ndarray:
    """For leaves with ``d`` distinct path features: shape (leaves, 2^d, d), per mask of ``o`` bits."""
    n, d = zeros.shape
    masks = np.arange(2**d)
    ones = ((masks[:, None] >> np.arange(d)[None, :]) & 1).astype(np.float64)  # (2^d, d)
    weights = _weights(d)
    out = np.empty((n, 2**d, d))
    for i in range(d):
        # Coefficients of prod_{j != i} (z_j + o_j t), for every leaf and mask at once.
        poly = np.zeros((n, 2**d, d))
        poly[:, :, 0] = 1.0
        for j in range(d):
            if j == i:
                continue
            shifted = np.zeros_like(poly)
            shifted[:, :, 1:] = poly[:, :, :-1]
            poly = poly * zeros[:, j, None, None] + shifted * ones[None, :, j, None]
        out[:, :, i] = values[:, None] * (ones[None, :, i] - zeros[:, i, None]) * (poly @ weights)
    return out


@dataclass
class PathTables:
    """Every leaf's SHAP answers per pattern of satisfied path features, and how to find a row's pattern."""

    n_features: int
    base: float
    # split nodes (all trees)
    node_feature: np.ndarray
    node_threshold: np.ndarray
    node_missing_left: np.ndarray
    node_zero_left: np.ndarray
    zero_matters: bool
    categorical_nodes: np.ndarray
    categorical_left: np.ndarray
    # path entries, grouped by leaf
    entry_node: np.ndarray
    entry_fail_left: np.ndarray
    entry_fail_right: np.ndarray
    leaf_entry_start: np.ndarray
    leaf_full: np.ndarray
    leaf_start: np.ndarray
    leaf_width: np.ndarray
    # one slot per (leaf, distinct path feature), sorted by feature
    slot_leaf: np.ndarray
    slot_offset: np.ndarray
    feature_start: np.ndarray
    features_used: np.ndarray
    table: np.ndarray

    @classmethod
    def from_booster(cls, booster: Any) -> PathTables:
        """Build the tables of a LightGBM ``Booster`` (cost: milliseconds per hundred trees).

        Raises:
            UnsupportedTreeError: linear trees, several trees per round, or a path with more than
                :data:`MAX_PATH_FEATURES` distinct features.
        """
        n_features, trees = _parse(booster.model_to_string())
        base = 0.0
        node_feature: list[int] = []
        node_threshold: list[float] = []
        node_decision: list[int] = []
        categorical_sets: dict[int, set[int]] = {}
        leaves: list[_Leaf] = []
        for tree in trees:
            offset = len(node_feature)
            if not tree.split_feature:  # a single leaf: only the base value
                base += tree.leaf_value[0]
                continue
            root = tree.internal_count[0]
            base += sum(v * c / root for v, c in zip(tree.leaf_value, tree.leaf_count, strict=True))
            node_feature.extend(tree.split_feature)
            node_threshold.extend(tree.threshold)
            node_decision.extend(tree.decision_type)
            for node, decision in enumerate(tree.decision_type):
                if decision & 1:
                    cat = int(tree.threshold[node])
                    words = tree.cat_threshold[tree.cat_boundaries[cat] : tree.cat_boundaries[cat + 1]]
                    categorical_sets[offset + node] = {
                        32 * w + b for w, word in enumerate(words) for b in range(32) if word >> b & 1
                    }
            stack: list[tuple[int, list[tuple[int, bool, float]]]] = [(0, [])]
            while stack:
                node, path = stack.pop()
                count = tree.internal_count[node]
                for child, went_left in ((tree.left_child[node], True), (tree.right_child[node], False)):
                    child_count = tree.leaf_count[~child] if child < 0 else tree.internal_count[child]
                    step = [*path, (node, went_left, child_count / count)]
                    if child >= 0:
                        stack.append((child, step))
                    else:
                        leaves.append(_leaf(tree, offset, step, tree.leaf_value[~child]))
        return cls._assemble(n_features, base, node_feature, node_threshold, node_decision, categorical_sets, leaves)

    @classmethod
    def _assemble(
        cls,
        n_features: int,
        base: float,
        node_feature: list[int],
        node_threshold: list[float],
        node_decision: list[int],
        categorical_sets: dict[int, set[int]],
        leaves: list[_Leaf],
    ) -> PathTables:
        decision = np.asarray(node_decision, dtype=np.int64)
        categorical_nodes = np.asarray(sorted(categorical_sets), dtype=np.int64)
        width = 1 + max((max(s) for s in categorical_sets.values() if s), default=0)
        categorical_left = np.zeros((len(categorical_nodes), width), dtype=bool)
        for row, node in enumerate(categorical_nodes.tolist()):
            categorical_left[row, sorted(categorical_sets[node])] = True
        # Tables, grouped by path width so each group is built with whole-array operations.
        widths = np.asarray([len(leaf[1]) for leaf in leaves], dtype=np.int64)
        sizes = (2**widths) * widths
        leaf_start = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        table = np.empty(int(sizes.sum()))
        for d in np.unique(widths).tolist():
            members = np.flatnonzero(widths == d)
            values = np.asarray([leaves[i][3] for i in members])
            zeros = np.asarray([leaves[i][2] for i in members])
            block = _leaf_tables(values, zeros).reshape(len(members), -1)
            table[(leaf_start[members][:, None] + np.arange(block.shape[1])[None, :]).ravel()] = block.ravel()
        entry_node, entry_left, entry_bit, entry_counts = [], [], [], []
        for entries, _, _, _ in leaves:
            entry_counts.append(len(entries))
            for node, left, slot in entries:
                entry_node.append(node)
                entry_left.append(left)
                entry_bit.append(1 << slot)
        went_left = np.asarray(entry_left, dtype=bool)
        bit = np.asarray(entry_bit, dtype=_BITS)
        # What a row's decision at a path entry fails: its feature's bit when it goes the other way.
        fail_left, fail_right = np.where(went_left, 0, bit).astype(_BITS), np.where(went_left, bit, 0).astype(_BITS)
        threshold = np.asarray(node_threshold, dtype=np.float64)
        missing_type = (decision >> 2) & 3
        default_left = (decision & 2).astype(bool)
        zero_left = threshold >= 0.0  # a zero compared: 0 <= threshold
        slot_leaf = np.repeat(np.arange(len(leaves)), widths)
        slot_offset = np.concatenate([np.arange(d) for d in widths.tolist()]) if len(leaves) else np.empty(0)
        slot_feature = np.asarray([f for leaf in leaves for f in leaf[1]], dtype=np.int64)
        order = np.argsort(slot_feature, kind="stable")
        features_used, feature_start = np.unique(slot_feature[order], return_index=True)
        return cls(
            n_features=n_features,
            base=float(base),
            node_feature=np.asarray(node_feature, dtype=np.int64),
            node_threshold=threshold,
            # Missing type None: a missing value is a zero, compared. Zero: missing values and zeros
            # go the default way. NaN: missing values go the default way, zeros are compared.
            node_missing_left=np.where(missing_type == _MISSING_NONE, zero_left, default_left),
            node_zero_left=np.where(missing_type == _MISSING_ZERO, default_left, zero_left),
            # Whether treating |x| <= 1e-35 as zero can change a decision: only where zeros go the
            # default way or a threshold lies in that band (else ``x <= threshold`` already agrees).
            zero_matters=bool(
                np.any(missing_type == _MISSING_ZERO)
                or np.any((np.abs(threshold) < _ZERO) & ~(decision & 1).astype(bool))
            ),
            categorical_nodes=categorical_nodes,
            categorical_left=categorical_left,
            entry_node=np.asarray(entry_node, dtype=np.int64),
            entry_fail_left=fail_left,
            entry_fail_right=fail_right,
            leaf_entry_start=np.concatenate([[0], np.cumsum(entry_counts)[:-1]]).astype(np.int64),
            leaf_full=(2**widths - 1).astype(_BITS),
            leaf_start=leaf_start,
            leaf_width=widths,
            slot_leaf=slot_leaf[order],
            slot_offset=np.asarray(slot_offset, dtype=np.int64)[order],
            feature_start=feature_start.astype(np.int64),
            features_used=features_used.astype(np.int64),
            table=table,
        )

    def goes_left(self, X: np.ndarray) -> np.ndarray:
        """Each row's decision at every split node (rows x nodes), as LightGBM decides it."""
        values = np.take(X, self.node_feature, axis=1)
        with np.errstate(invalid="ignore"):
            compared = values <= self.node_threshold
            if self.zero_matters:
                compared = np.where(np.abs(values) <= _ZERO, self.node_zero_left, compared)
            left = np.where(np.isnan(values), self.node_missing_left, compared)
        if self.categorical_nodes.size:
            codes = values[:, self.categorical_nodes]
            with np.errstate(invalid="ignore"):
                valid = ~np.isnan(codes) & (np.trunc(codes) >= 0) & (codes < self.categorical_left.shape[1])
            index = np.where(valid, codes, 0).astype(np.int64)
            rows = np.arange(len(self.categorical_nodes))[None, :]
            left[:, self.categorical_nodes] = valid & self.categorical_left[rows, index]
        return left

    def contributions(self, X: np.ndarray, *, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
        """Exact SHAP values like ``pred_contrib``: shape (n, n_features + 1), the last column the base value.

        Rows are taken ``chunk_rows`` at a time, so the intermediate arrays (rows x path entries)
        stay in cache.
        """
        X = np.asarray(X, dtype=np.float64)
        n = X.shape[0]
        out = np.empty((n, self.n_features + 1))
        for start in range(0, n, chunk_rows):
            out[start : start + chunk_rows] = self._chunk(X[start : start + chunk_rows])
        return out

    def _chunk(self, X: np.ndarray) -> np.ndarray:
        out = np.zeros((X.shape[0], self.n_features + 1))
        out[:, -1] = self.base
        if self.leaf_width.size == 0:
            return out
        left = self.goes_left(X)
        failed = np.where(np.take(left, self.entry_node, axis=1), self.entry_fail_left, self.entry_fail_right)
        masks = self.leaf_full & ~np.bitwise_or.reduceat(failed, self.leaf_entry_start, axis=1)
        rows = self.leaf_start + masks * self.leaf_width  # (n, leaves)
        pushes = self.table.take(np.take(rows, self.slot_leaf, axis=1) + self.slot_offset)  # (n, slots), by feature
        out[:, self.features_used] = np.add.reduceat(pushes, self.feature_start, axis=1)
        return out
