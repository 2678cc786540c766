"""Settings, from flags or environment variables prefixed ``WAYFINDER_``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, HttpUrl, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WAYFINDER_", extra="ignore")

    store: str = Field(
        "var/store", description="Folder of the embedded store, ':memory:', or http(s):// URL of a SPARQL server"
    )
    host: str = "127.0.0.1"
    port: int = 8000
    ontology_dir: Path = ROOT / "ontology"
    shapes_dir: Path = ROOT / "shapes"
    queries_dir: Path = ROOT / "queries"
    demo_dir: Path = ROOT / "data" / "demo"
    models_dir: Path = Field(Path("var/models"), description="Where trained model artefacts are kept")
    vendor_dir: Path = Field(
        ROOT / "var" / "vendor",
        description="Where `make` puts the console's third-party browser files (GraphiQL, React), fetched from npm",
    )
    console_session_s: float = Field(
        8 * 3600, gt=0, le=7 * 86400, description="How long a console sign-in lasts, in seconds"
    )
    dev_mode: bool = Field(True, description="GraphiQL and introspection on (always off when API keys are set)")
    api_keys: str = Field(
        "",
        description=(
            "KEY:ROLE[:PRINCIPAL[:RATE]],... with roles client, engineer, operator, auditor, app; "
            "empty: open, loopback only"
        ),
    )
    api_keys_file: Path | None = Field(
        None,
        description=(
            "A file of KEY:ROLE[:PRINCIPAL[:RATE]] lines, read in addition to api_keys, and re-read when it changes"
        ),
    )
    api_keys_reload_s: float = Field(1.0, ge=0, description="How often the keys file is checked for changes")
    app_token_max_ttl_s: float = Field(
        86_400.0,
        gt=0,
        description=("Longest lifetime (issue to expiry) of a per-user app token that the service accepts"),
    )
    otel_exporter: str = Field("none", description="Trace exporter: none, console or otlp")
    log_format: str = Field("json", description="Log lines as json or text")
    access_log: bool = Field(
        True,
        description=(
            "One log line per request (without query strings); it holds the caller's address, which for app "
            "tokens is an end user's: turn it off where that must not be kept"
        ),
    )
    max_query_depth: int = Field(10, gt=0)
    max_aliases: int = Field(20, gt=0)
    max_tokens: int = Field(2000, gt=0)
    max_fields: int = Field(
        300, gt=0, description="Complexity cap: field selections in one operation, fragments expanded"
    )
    idempotency_ttl_s: float = Field(86_400.0, gt=0, description="How long an idempotency key of a write is honoured")
    max_events_per_request: int = Field(
        5000,
        gt=0,
        description=(
            "Most events one recordEvents call may carry; also the longest list any GraphQL variable may hold"
        ),
    )
    max_body_bytes: int = Field(
        2 << 20,
        gt=0,
        description=("Largest request body the service reads, on every path; larger ones get 413 before any parsing"),
    )
    store_timeout_s: float = Field(
        5.0,
        gt=0,
        description=(
            "Time limit of one request to a shared store (an http(s) WAYFINDER_STORE); past it the request fails "
            "with STORE_UNAVAILABLE"
        ),
    )
    store_bulk_timeout_s: float = Field(
        900.0,
        gt=0,
        description=(
            "Time limit of one bulk read of a shared store: the reads that rebuild the analytics log from the store, "
            "which a process of a shared store without WAYFINDER_ANALYTICS_DIR does at start"
        ),
    )
    health_timeout_s: float = Field(
        1.0, gt=0, description=("How long /healthz waits for its store check before it answers 503")
    )
    max_clock_skew_s: float = Field(
        300.0,
        ge=0,
        description=(
            "How far ahead of the service's clock a client-supplied time (registration or event 'at') may be; "
            "later ones are refused"
        ),
    )
    sparql_timeout_s: float = Field(10.0, gt=0, description="Time limit of one /sparql query")
    sparql_max_rows: int = Field(10_000, gt=0, description="Row cap of one /sparql answer")
    sparql_max_bytes: int = Field(
        16 << 20, gt=0, description="Byte cap of one /sparql answer (past it the answer is truncated and says so)"
    )
    sparql_max_concurrent: int = Field(4, gt=0, description="Most /sparql queries (worker processes) running at once")
    sparql_queue_wait_s: float = Field(
        2.0, ge=0, description="How long a /sparql query waits for a free slot before a 503"
    )
    sparql_max_memory_mb: int = Field(
        1024, ge=64, description="Address-space cap of one /sparql worker process, in MiB"
    )
    instance: str = Field(
        "", description="Name of this process's audit chain; default: 'main', or unique per process on a shared store"
    )
    audit_checkpoint_every: int = Field(1000, gt=0, description="Decisions between two audit checkpoints")
    approvals_required: int = Field(
        1,
        ge=1,
        le=10,
        description=(
            "With API keys: approvals from principals other than its author that a model version needs before it "
            "serves; without keys approvals are recorded, none is required"
        ),
    )
    health_window: int = Field(
        5000,
        gt=0,
        description=(
            "Model health: how many of the latest personalised decisions a version's inputs, scores and calibration "
            "are compared with its training profile over"
        ),
    )
    analytics_dir: Path | None = Field(
        None,
        description=(
            "On a shared store, the folder of analytics segments that every process of the store writes and reads "
            "(one host, or a file system with working locks); unset, each process keeps its own analytics log in "
            "memory and an experiment analysis first rebuilds it from the store"
        ),
    )
    guardrail_interval_s: float = Field(
        3_600.0,
        ge=0,
        description=(
            "Seconds between two runs of the guardrail monitor over every running experiment (the first one "
            "interval after start); 0 turns the periodic monitor off (checkGuardrails and "
            "`wayfinder experiment monitor` still run it once)"
        ),
    )
    guardrail_webhook_url: str | None = Field(
        None,
        description="A URL the guardrail monitor POSTs a JSON notice to when it rolls an arm back (optional)",
    )
    retention_interval_s: float = Field(
        86_400.0,
        ge=0,
        description=(
            "Seconds between two purges of expired records under the retention rules (the first one interval after "
            "start); 0 turns the periodic purge off"
        ),
    )
    audit_seal_after_days: float = Field(
        90.0,
        gt=0,
        description=(
            "Age in days past which decision records are sealed out of the hot store into immutable segments "
            "(`wayfinder audit seal`, or the periodic seal); keep it longer than any window serving reads decisions "
            "over (pacing, exposure)"
        ),
    )
    audit_seal_interval_s: float = Field(
        0.0,
        ge=0,
        description=(
            "Seconds between two seals of old decision records while the service runs (the first one interval after "
            "start); 0 (the default) seals only on `wayfinder audit seal`"
        ),
    )
    sealed_dir: Path | None = Field(
        None,
        description=(
            "Folder of the sealed audit segments; default beside an embedded store (STORE.sealed); a shared store "
            "is sealed only with it set"
        ),
    )
    flush_each_commit: bool = Field(
        False,
        description=(
            "Flush the embedded store after each commit: an acknowledged write then survives a power loss or kernel "
            "crash, not only the death of the process; costs about 35 to 55 ms a write (bench/durability/README.md)"
        ),
    )
    senders: dict[str, HttpUrl] = Field(
        default_factory=dict,
        description=(
            'The webhook of each channel\'s sender, as JSON, e.g. {"EMAIL": "https://mail.example/hooks/wayfinder", '
            '"MOBILE": "https://push.example/hooks/wayfinder"}; deliverNextSteps refuses a channel without one'
        ),
    )
    sender_secret: SecretStr | None = Field(
        None,
        description="The key every webhook call is signed with (HMAC-SHA256, Wayfinder-Signature); needed with senders",
    )
    delivery_interval_s: float = Field(
        1.0,
        ge=0,
        description=(
            "Seconds between two looks of the service's delivery worker for due messages, where senders are set; "
            "0: no worker in this process (run `wayfinder deliver`)"
        ),
    )
    delivery_timeout_s: float = Field(5.0, gt=0, description="Time limit of one webhook call to a sender")
    delivery_max_attempts: int = Field(
        8, ge=1, le=100, description="Attempts at one message before it is dead-lettered"
    )
    delivery_backoff_s: float = Field(
        2.0, gt=0, description="Wait after a message's first failed attempt; it doubles with each further one"
    )
    delivery_backoff_max_s: float = Field(900.0, gt=0, description="Longest wait between two attempts at a message")
    delivery_batch: int = Field(50, ge=1, le=1000, description="Most messages the worker sends in one look")

    @model_validator(mode="after")
    def _senders_need_a_secret(self) -> Settings:
        if self.senders and (self.sender_secret is None or not self.sender_secret.get_secret_value()):
            raise ValueError("sender_secret (WAYFINDER_SENDER_SECRET) must be set with senders: every call is signed")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
