"""Prefect flows: orchestration only (which step, in what order, with what retries)."""
