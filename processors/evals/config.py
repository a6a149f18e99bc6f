"""Settings of the eval processor, from the environment (``ORBITWATCH_EVAL_*``, ``ORBITWATCH_JUDGE_*``).

They are kept here rather than in the shared Settings because only this processor reads them.
A wrong value raises :class:`orbitwatch.config.ConfigError` naming the variable.
"""
from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orbitwatch.config import ConfigError

_ENV = {
    "rules_path": "ORBITWATCH_EVAL_RULES",
    "default_rule": "ORBITWATCH_EVAL_DEFAULT",
    "join_wait_s": "ORBITWATCH_EVAL_JOIN_WAIT_S",
    "context_ttl_s": "ORBITWATCH_EVAL_CONTEXT_TTL_S",
    "max_pending": "ORBITWATCH_EVAL_MAX_PENDING",
    "judge_concurrency": "ORBITWATCH_EVAL_JUDGE_CONCURRENCY",
    "rules_refresh_s": "ORBITWATCH_EVAL_RULES_REFRESH_S",
    "judge_base_url": "ORBITWATCH_JUDGE_BASE_URL",
    "judge_model": "ORBITWATCH_JUDGE_MODEL",
    "judge_api_key": "ORBITWATCH_JUDGE_API_KEY",
    "judge_timeout_s": "ORBITWATCH_JUDGE_TIMEOUT_S",
    "judge_max_retries": "ORBITWATCH_JUDGE_MAX_RETRIES",
    "judge_breaker_failures": "ORBITWATCH_JUDGE_BREAKER_FAILURES",
    "judge_breaker_cooldown_s": "ORBITWATCH_JUDGE_BREAKER_COOLDOWN_S",
}


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules_path: str = ""
    default_rule: bool = True  # score every LLM span with the local RAG metrics when no rules file
    join_wait_s: float = Field(default=2.0, ge=0)
    context_ttl_s: float = Field(default=300.0, gt=0)
    max_pending: int = Field(default=10_000, ge=1)
    judge_concurrency: int = Field(default=4, ge=1, le=256)
    rules_refresh_s: float = Field(default=10.0, ge=0)  # reload of rules stored through the API
    judge_base_url: str = ""
    judge_model: str = ""
    judge_api_key: str = ""
    judge_timeout_s: float = Field(default=10.0, gt=0)
    judge_max_retries: int = Field(default=2, ge=0, le=10)
    judge_breaker_failures: int = Field(default=5, ge=1)
    judge_breaker_cooldown_s: float = Field(default=30.0, ge=0)

    @classmethod
    def from_env(cls, **overrides: object) -> "EvalConfig":
        values: dict[str, object] = {}
        for field, env in _ENV.items():
            raw = os.environ.get(env)
            if raw is None or raw == "":
                continue
            if field == "default_rule":
                values[field] = raw.strip().lower() not in ("0", "off", "false", "no")
            else:
                values[field] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = str(err["loc"][0]) if err["loc"] else "eval settings"
            raise ConfigError(f"invalid {_ENV.get(field, field)}: {err['msg']}") from None

    def judge_client(self):
        """A JudgeClient when a judge endpoint is configured, else None."""
        if not self.judge_base_url:
            return None
        if not self.judge_model:
            raise ConfigError("ORBITWATCH_JUDGE_MODEL must be set when ORBITWATCH_JUDGE_BASE_URL is")
        from orbitwatch.processors.evals.judge_client import JudgeClient, JudgeConfig
        return JudgeClient(JudgeConfig(
            base_url=self.judge_base_url, model=self.judge_model, api_key=self.judge_api_key,
            timeout_s=self.judge_timeout_s, max_retries=self.judge_max_retries,
            breaker_failures=self.judge_breaker_failures, breaker_cooldown_s=self.judge_breaker_cooldown_s))
