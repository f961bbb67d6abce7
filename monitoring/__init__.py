"""Drift monitoring: the Evidently adapter, PSI and the report index."""
