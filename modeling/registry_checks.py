"""Checked loading: a model is the one saved, with the features, hashes and check score it was saved with.

The same checks run on a candidate before it is saved and on the unpickled copy when it is
loaded; :func:`unpickle_checked` hashes the very bytes it unpickles.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
from typing import Any

import joblib
import numpy as np

from modeling.registry_errors import PromotionRefusedError
from modeling.registry_files import dumps
from passos.errors import ModelInvalidError

logger = logging.getLogger(__name__)

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
CHECK_TOLERANCE = 1e-9


def accepted(meta: dict[str, Any]) -> bool | None:
    gate = meta.get("gate")
    if not isinstance(gate, dict) or not isinstance(gate.get("accepted"), bool):
        return None
    return gate["accepted"]


def test_metrics(meta: dict[str, Any]) -> dict[str, Any] | None:
    metrics = meta.get("metrics")
    test = metrics.get("test") if isinstance(metrics, dict) else None
    return test if isinstance(test, dict) else None


def float_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def feature_contract(meta: dict[str, Any], where: str) -> list[str]:
    features = meta.get("features")
    if not isinstance(features, list) or not all(isinstance(f, dict) and "name" in f for f in features):
        raise ModelInvalidError(f"{where}: metadata 'features' must be a list of objects with a 'name'")
    return [str(f["name"]) for f in features]


def verify_model(model: Any, meta: dict[str, Any], *, where: str, at_save: bool = False) -> float | None:
    """Check a model against its metadata; returns the check row's score (None without one).

    At save time a missing ``check_score`` is computed; at load time it must be there.
    """
    expected = feature_contract(meta, where)
    names: Any = getattr(model, "feature_names", None)
    try:
        actual = [str(name) for name in names]
    except TypeError:
        raise ModelInvalidError(f"{where}: model has no feature_names list (got {names!r})") from None
    if actual != expected:
        missing = [n for n in expected if n not in actual]
        extra = [n for n in actual if n not in expected]
        raise ModelInvalidError(
            f"{where}: model features {actual} do not match the metadata's {expected} "
            f"(missing {missing}, unexpected {extra}, or a different order)"
        )
    if not callable(getattr(model, "predict_proba", None)):
        raise ModelInvalidError(f"{where}: model has no predict_proba method")

    check_input = meta.get("check_input")
    if check_input is None:
        if meta.get("check_score") is not None:
            raise ModelInvalidError(f"{where}: metadata has check_score but no check_input")
        return None
    try:
        row = np.array([check_input], dtype=float)  # None (stored NaN) becomes NaN again
    except (TypeError, ValueError) as exc:
        raise ModelInvalidError(f"{where}: check_input is not a row of numbers: {exc}") from exc
    if row.shape != (1, len(expected)):
        raise ModelInvalidError(f"{where}: check_input has {row.size} values for {len(expected)} features")
    try:
        scores = np.asarray(model.predict_proba(row), dtype=float)
    except Exception as exc:  # the model's own code: any error means it is unusable
        raise ModelInvalidError(f"{where}: predict_proba fails on the check row: {exc!r}") from exc
    if scores.shape != (1,):
        raise ModelInvalidError(f"{where}: predict_proba must return one score per row, got shape {scores.shape}")
    score = float(scores[0])
    if not math.isfinite(score):
        raise ModelInvalidError(f"{where}: predict_proba scores the check row as {score!r}")
    expected_score = meta.get("check_score")
    if expected_score is None and at_save:
        return score
    expected_value = float_or_none(expected_score)
    if expected_value is None or not abs(score - expected_value) <= CHECK_TOLERANCE:
        raise ModelInvalidError(
            f"{where}: check row scores {score!r}, but {expected_score!r} was recorded at save time "
            f"(tolerance {CHECK_TOLERANCE})"
        )
    return expected_value


def metadata_digest(meta: dict[str, Any]) -> str:
    """The sha256 of a version's metadata (gate verdict and ``model_sha256`` included), itself left out."""
    content = {k: v for k, v in meta.items() if k != "metadata_sha256"}
    return hashlib.sha256(dumps(json.loads(dumps(content)))).hexdigest()


def check_pointer(pointer: dict[str, Any] | None, version: str, meta: dict[str, Any]) -> None:
    """Refuse a champion pointer that promote or rollback did not write for this version.

    A pointer edited by hand to name another version (a candidate held for review, say) still
    carries the hash of the version it was written for.

    Raises:
        PromotionRefusedError: The pointer's ``metadata_sha256`` is not this version's.
    """
    recorded = (pointer or {}).get("metadata_sha256")
    if "metadata_sha256" in meta and recorded != meta["metadata_sha256"]:
        raise PromotionRefusedError(
            f"the champion pointer names {version} but was not written for it by `passos models promote` "
            f"or rollback (edited by hand?); promote it with `passos models promote`"
        )


def unpickle_checked(data: bytes, meta: dict[str, Any], *, where: str) -> Any:
    """Unpickle a model's bytes after proving they and ``meta`` are what was saved; then verify the model.

    Checks, in order: the bytes' sha256 against ``meta["model_sha256"]`` (before unpickling),
    the metadata's own hash, that the bytes unpickle, and :func:`verify_model`.

    Raises:
        ModelInvalidError: Any failed check, or an unpicklable model.
    """
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta.get("model_sha256"):
        raise ModelInvalidError(
            f"{where}: {MODEL_FILE} sha256 {digest[:12]}… does not match the recorded "
            f"{str(meta.get('model_sha256'))[:12]}… (file corrupted or replaced)"
        )
    if "metadata_sha256" in meta:
        if meta["metadata_sha256"] != metadata_digest(meta):
            raise ModelInvalidError(
                f"{where}: {METADATA_FILE} was changed after it was saved (its gate verdict, metrics "
                "and model hash are hashed together): retrain rather than edit it"
            )
    else:
        logger.warning("%s: %s predates metadata hashing; its gate verdict is not checked", where, METADATA_FILE)
    try:
        model = joblib.load(io.BytesIO(data))
    except Exception as exc:  # unpickling raises anything: EOFError, AttributeError, ...
        raise ModelInvalidError(f"{where}: cannot unpickle: {type(exc).__name__}: {exc}") from exc
    verify_model(model, meta, where=where)
    return model
