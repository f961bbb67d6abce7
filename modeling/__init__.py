"""Model training, evaluation, the recall gate and the model registry (no Prefect, no FastAPI)."""
