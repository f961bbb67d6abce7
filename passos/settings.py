"""The one typed settings object. Nothing else in the project reads ``os.environ``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TASKS = ("current", "next_year")


class Settings(BaseSettings):
    """Settings read from ``PASSOS_*`` environment variables (and ``.env``)."""

    model_config = SettingsConfigDict(env_prefix="PASSOS_", env_file=".env", extra="ignore")

    home: Path = Field(default=PROJECT_ROOT / "var", description="State root: everything the system writes.")
    data_dir: Path | None = Field(default=None, description="Where input files are read from.")

    # training and the recall gate
    gate_min_recall: float = Field(default=0.90, ge=0.0, le=1.0)
    gate_min_precision: float = Field(default=0.50, ge=0.0, le=1.0)
    gate_min_roc_auc: float = Field(
        default=0.70, ge=0.0, le=1.0, description="A model must rank students better than this out of time."
    )
    gate_tolerance: float = Field(default=0.02, ge=0.0, le=1.0, description="Allowed drop vs champion.")
    recall_target: float = Field(default=0.90, ge=0.0, le=1.0, description="Recall the threshold aims for.")
    audit_max_auc: float = Field(default=0.98, ge=0.5, le=1.0, description="Single-feature AUC that flags a leak.")
    seed: int = 42
    refit_on_all: bool = True

    # serving
    api_key: SecretStr | None = None
    reload_interval_s: float = Field(default=0.5, gt=0.0)
    batch_max: int = Field(default=1000, ge=1)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    id_salt: SecretStr = SecretStr("passos-magicos")
    predictions_rotate_bytes: int = Field(default=10_000_000, ge=1024)
    rate_limit_per_s: float = Field(default=0.0, ge=0.0, description="Requests per second per client IP; 0 = off.")
    rate_limit_burst: int = Field(default=200, ge=1)

    # tracing (Langfuse). The SDK's own variable names, so its docs apply unchanged.
    langfuse_public_key: str | None = Field(default=None, validation_alias="LANGFUSE_PUBLIC_KEY")
    langfuse_secret_key: SecretStr | None = Field(default=None, validation_alias="LANGFUSE_SECRET_KEY")
    langfuse_base_url: str = Field(default="https://cloud.langfuse.com", validation_alias="LANGFUSE_BASE_URL")
    langfuse_tracing_enabled: bool = Field(default=True, validation_alias="LANGFUSE_TRACING_ENABLED")
    langfuse_timeout_s: float = Field(default=2.0, gt=0.0, validation_alias="LANGFUSE_TIMEOUT")

    # drift
    drift_share_threshold: float = Field(default=0.30, ge=0.0, le=1.0)
    drift_psi_threshold: float = Field(default=0.20, ge=0.0)
    drift_recall_drop: float = Field(default=0.05, ge=0.0, le=1.0)
    drift_trigger_retrain: bool = False

    # scale-out
    dask_address: str | None = None

    # input files: a bound on every source, checked before it is parsed (README "Security")
    source_max_bytes: int = Field(
        default=100_000_000, ge=1024, description="Largest input file; for a workbook also its unpacked size."
    )
    source_max_columns: int = Field(default=500, ge=10, description="Widest header an input table may have.")
    source_max_cells: int = Field(default=10_000_000, ge=1000, description="Cells read from one CSV or sheet.")

    # warehouse access
    warehouse_lock_retries: int = Field(default=5, ge=0)
    warehouse_lock_wait_s: float = Field(default=1.0, ge=0.0)

    # batch scoring at scale and the Prefect deployments
    batch_partition_rows: int = Field(default=100_000, ge=1, description="Target rows per scoring partition.")
    batch_workers: int | None = Field(default=None, ge=1, description="Local scoring threads (default: CPU count).")
    schedule_timezone: str = Field(default="America/Sao_Paulo", description="IANA zone of the deployment schedules.")
    serve_limit: int = Field(default=2, ge=1, description="Flow runs the serve process runs at once.")

    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def analytics_path(self) -> Path:
        """The analysts' copy of the warehouse, replaced after every flow that writes (never locked by them)."""
        return self.home / "analytics.duckdb"

    @property
    def parquet_dir(self) -> Path:
        return self.home / "parquet"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def predictions_dir(self) -> Path:
        return self.home / "predictions"

    def ensure_writable(self) -> None:
        """Create the state folders and prove each is writable, or raise a clear ``PermissionError``."""
        import tempfile

        for folder in (self.home, self.parquet_dir, self.models_dir, self.reports_dir, self.predictions_dir):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
                    pass
            except OSError as error:
                raise PermissionError(
                    f"PASSOS_HOME folder {folder} is not writable ({error.strerror or error}); "
                    "set PASSOS_HOME to a folder this user can write"
                ) from error

    def resolved_data_dir(self) -> Path:
        """``PASSOS_DATA_DIR``, else ``data/raw`` when it holds files, else ``../shared/data``."""
        if self.data_dir is not None:
            return self.data_dir
        raw = PROJECT_ROOT / "data" / "raw"
        if raw.is_dir() and any(raw.iterdir()):
            return raw
        return PROJECT_ROOT.parent / "shared" / "data"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
