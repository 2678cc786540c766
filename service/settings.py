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
    dev_mode: bool = Field(True, description="GraphiQL and introspection on (always off when API keys are set)")
    api_keys: str = Field("", description="KEY:ROLE,... with roles client, engineer, operator, auditor; empty: open, loopback only")
    api_keys_file: Path | None = Field(None, description="A file of KEY:ROLE lines, read in addition to api_keys")
    otel_exporter: str = Field("none", description="Trace exporter: none, console or otlp")
    log_format: str = Field("json", description="Log lines as json or text")
    max_query_depth: int = Field(10, gt=0)
    max_aliases: int = Field(20, gt=0)
    max_tokens: int = Field(2000, gt=0)
    max_fields: int = Field(300, gt=0, description="Complexity cap: field selections in one operation, fragments expanded")
    max_events_per_request: int = Field(5000, gt=0, description="Most events one recordEvents call may carry")
    sparql_timeout_s: float = Field(10.0, gt=0, description="Time limit of one /sparql query")
    sparql_snapshot_max_age_s: float = Field(1.0, ge=0, description="How stale the snapshot /sparql reads may be")
    sparql_max_rows: int = Field(10_000, gt=0, description="Row cap of one /sparql answer")
    instance: str = Field("", description="Name of this process's audit chain; default: 'main', or unique per process on a shared store")
    audit_checkpoint_every: int = Field(1000, gt=0, description="Decisions between two audit checkpoints")
    flush_each_commit: bool = Field(False, description=(
        "Flush the embedded store after each commit: an acknowledged write then survives a power loss or kernel "
        "crash, not only the death of the process; costs about 35 to 55 ms a write (bench/durability/README.md)"))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
