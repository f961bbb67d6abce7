"""Print the out-of-time figures of the latest version of each task, per variant (README table).

Usage: ``PASSOS_HOME=var .venv/bin/python -m benchmarks.model_figures`` after ``make run``.
"""

from __future__ import annotations

from modeling.registry import Registry
from passos.settings import get_settings


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "n/a"


def _interval(boot: dict | None, name: str) -> str:
    pair = (boot or {}).get(name)
    return f" ({pair[0]:.3f}–{pair[1]:.3f})" if pair else ""


def main() -> None:
    registry = Registry.from_settings(get_settings())
    for task in ("current", "next_year"):
        versions = registry.list_versions(task)
        if not versions:
            continue
        version = registry.champion(task) or versions[0]["version"]
        meta = registry.metadata(task, version)
        boot = meta["metrics"]["test"].get("bootstrap_95")
        test_year = f"{meta['test_year']}→{meta['test_year'] + 1}" if task == "next_year" else meta["test_year"]
        order = ("full", "core", "example")
        for name, variant in sorted(meta["variants"].items(), key=lambda item: order.index(item[0])):
            test = variant["out_of_time"]
            extra = boot if name == "full" else None
            served = "yes" if variant["served"] else "no: " + "; ".join(variant["gate"].get("reasons", []))
            print(
                f"| `{task}` ({test_year}) | {name} | {variant['kind']} | {_fmt(test['recall'])}"
                f"{_interval(extra, 'recall')} | {_fmt(test['precision'])}{_interval(extra, 'precision')} | "
                f"{_fmt(test['roc_auc'])}{_interval(extra, 'roc_auc')} | {served} |"
            )
        check = meta.get("artifact_check") or {}
        per_year = ", ".join(f"{y}: {r['recall']:.3f}" for y, r in check.get("per_year", {}).items())
        print(
            f"<!-- {task} {version}: served artifact in-sample recall {per_year}; threshold {meta['threshold']:.3f} -->"
        )


if __name__ == "__main__":
    main()
