"""Settings shared by the SDK, the CLI and the server parts.

Every setting has an environment variable (``ORBITWATCH_*``) and the same name as a CLI flag;
flags win over the environment. Values are validated with pydantic and a wrong one raises
:class:`ConfigError` with a one-line message naming the setting.
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENV_PREFIX = "ORBITWATCH_"
# CLI flag of each setting (where it is not simply --field-name).
FLAGS = {"clickhouse_url": "--clickhouse", "kafka_bootstrap": "--kafka", "api_url": "--url"}


class ConfigError(ValueError):
    """A setting has a value we cannot use; the message names the setting and says why."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    data_dir: Path = Field(default=Path("~/.orbitwatch"), validate_default=True)
    clickhouse_url: str = ""  # empty: chdb://<data_dir>/clickhouse
    kafka_bootstrap: str = "127.0.0.1:9092"
    endpoint: str = "http://127.0.0.1:4317"
    api_key: str = ""
    project: str = "default"
    api_url: str = "http://127.0.0.1:8080"
    alert_webhook: str = ""
    alert_rules: str = ""  # path of an alert rules YAML file (processors/alerts/rules.py); empty: built-ins
    topic_prefix: str = ""

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return Path(os.path.expanduser(str(v)))

    @field_validator("clickhouse_url")
    @classmethod
    def _dsn(cls, v: str) -> str:
        if v:
            validate_clickhouse_dsn(v)
        return v

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap(cls, v: str) -> str:
        for part in v.split(","):
            host, sep, port = part.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected HOST:PORT[,HOST:PORT...], got {v!r}")
        return v

    @field_validator("endpoint", "api_url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v if "://" in v else f"http://{v}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected http(s)://host:port, got {v!r}")
        try:
            parts.port
        except ValueError:
            raise ValueError(f"bad port in {v!r}") from None
        return v if "://" in v else f"http://{v}"

    @field_validator("alert_webhook")
    @classmethod
    def _webhook(cls, v: str) -> str:
        if v and urlsplit(v).scheme not in ("http", "https"):
            raise ValueError(f"expected an http(s) URL, got {v!r}")
        return v

    @field_validator("project")
    @classmethod
    def _project(cls, v: str) -> str:
        if not v or len(v) > 200:
            raise ValueError("must be 1-200 characters")
        return v

    @model_validator(mode="after")
    def _default_dsn(self) -> "Settings":
        if not self.clickhouse_url:
            object.__setattr__(self, "clickhouse_url", f"chdb://{self.data_dir / 'clickhouse'}")
        return self


def validate_clickhouse_dsn(dsn: str) -> None:
    """Raise ValueError unless ``dsn`` is ``chdb://<dir>`` or ``http(s)://[user:pass@]host[:port][/db]``."""
    parts = urlsplit(dsn)
    if parts.scheme == "chdb":
        if not (parts.netloc + parts.path).strip("/") and parts.path != "/":
            raise ValueError(f"chdb DSN needs a directory, e.g. chdb:///var/lib/orbitwatch/clickhouse; got {dsn!r}")
        return
    if parts.scheme not in ("http", "https", "clickhouse"):
        raise ValueError(f"expected chdb:///dir or http(s)://host:8123/db, got {dsn!r}")
    if not parts.hostname:
        raise ValueError(f"no host in {dsn!r}")
    try:
        parts.port
    except ValueError:
        raise ValueError(f"bad port in {dsn!r}") from None


def load_settings(**overrides: object) -> Settings:
    """Environment first, then non-None ``overrides`` (CLI flags). Raises ConfigError."""
    values: dict[str, object] = {}
    for name in Settings.model_fields:
        env = os.environ.get(ENV_PREFIX + name.upper())
        if env is not None and env != "":
            values[name] = env
    if "endpoint" not in values and os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        values["endpoint"] = os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"]
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "settings"
        msg = err["msg"].removeprefix("Value error, ")
        flag = FLAGS.get(field, "--" + field.replace("_", "-"))
        raise ConfigError(f"invalid {field} ({flag} / {ENV_PREFIX}{field.upper()}): {msg}") from None
