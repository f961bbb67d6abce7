"""`.env.example` documents every setting the project reads."""

from __future__ import annotations

from passos.settings import PROJECT_ROOT, Settings


def test_env_example_lists_every_setting() -> None:
    text = (PROJECT_ROOT / ".env.example").read_text(encoding="utf-8")
    missing = []
    for name, field in Settings.model_fields.items():
        variable = field.validation_alias if isinstance(field.validation_alias, str) else f"PASSOS_{name.upper()}"
        if variable not in text:
            missing.append(variable)
    assert missing == []
