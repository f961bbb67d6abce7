"""Test support in one place: free ports, waiting, real servers (service, Prefect, OTLP) and a trained home."""
