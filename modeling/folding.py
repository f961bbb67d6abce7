"""Folding cross-fitted LightGBM members into one booster, so a served row costs one call."""

from __future__ import annotations

from typing import Any


def fold_boosters(members: list[Any]) -> Any:
    """One LightGBM booster whose trees are all the members' trees, leaf values divided by their number.

    Its raw score is the members' mean raw score, and its exact tree SHAP (``pred_contrib``) is
    the mean of theirs (SHAP is linear in the leaf values, and the cover counts that weight it
    are unchanged), each up to float rounding: one call over the folded trees replaces one call
    per member. The members must share their header (features, objective, one tree per round).

    Raises:
        ValueError: the members do not share a header, or a tree is linear (``leaf_coeff``).
    """
    import lightgbm as lgb

    count = len(members)
    header: str | None = None
    trailer = ""
    first: list[str] = []
    trees: list[str] = []
    for member in members:
        text = member.model_to_string()
        head, _, rest = text.partition("\nTree=")
        body, _, tail = ("Tree=" + rest).partition("end of trees")
        # Tree sizes change with the leaf values; the value ranges seen in training are informative
        # only and differ per fold (the first member's are kept).
        own = [line for line in head.splitlines() if not line.startswith("tree_sizes=")]
        shared = [line for line in own if not line.startswith("feature_infos=")]
        if header is None:
            header, trailer, first = "\n".join(own), tail, shared
        elif shared != first:
            raise ValueError("cannot fold LightGBM members with different headers (features, objective)")
        for block in body.split("Tree=")[1:]:
            trees.append(_scaled_tree(block, count))
    numbered = "".join(f"Tree={i}{block[block.index(chr(10)) :]}" for i, block in enumerate(trees))
    return lgb.Booster(model_str=f"{header}\n\n{numbered}end of trees{trailer}")


def _scaled_tree(block: str, count: int) -> str:
    """One tree of a model string with its leaf (and internal) values divided by ``count``."""
    lines = block.split("\n")
    for i, line in enumerate(lines):
        key, _, values = line.partition("=")
        if key in ("leaf_value", "internal_value"):
            lines[i] = f"{key}=" + " ".join(repr(float(v) / count) for v in values.split())
        elif key == "is_linear" and values.strip() != "0":
            raise ValueError("cannot fold linear LightGBM trees")
    return "\n".join(lines)
