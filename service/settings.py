"""Settings, from flags or environment variables prefixed ``WAYFINDER_``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WAYFINDER_", extra="ignore")

    store: str = Field("var/store", description="Folder of the embedded store, ':memory:', or http(s):// URL of a SPARQL server")
    host: str = "127.0.0.1"
    port: int = 8000
    ontology_dir: Path = ROOT / "ontology"
    shapes_dir: Path = ROOT / "shapes"
    queries_dir: Path = ROOT / "queries"
    demo_dir: Path = ROOT / "data" / "demo"
    models_dir: Path = Field(Path("var/models"), description="Where trained model artefacts are kept")
    dev_mode: bool = Field(True, description="GraphiQL and introspection on")
    sparql_timeout_s: float = Field(10.0, gt=0, description="Time limit of one /sparql query")
    sparql_snapshot_max_age_s: float = Field(1.0, ge=0, description="How stale the snapshot /sparql reads may be")
    sparql_max_rows: int = Field(10_000, gt=0, description="Row cap of one /sparql answer")
    audit_checkpoint_every: int = Field(1000, gt=0, description="Decisions between two audit checkpoints")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
