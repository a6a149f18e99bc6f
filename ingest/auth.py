"""API keys → tenant and project, for the ingest gateway.

A key arrives as ``authorization: Bearer <key>`` or ``x-api-key: <key>`` (gRPC metadata or HTTP
header). The gateway stamps the resolved tenant on every Kafka record (header ``orbitwatch-tenant``)
and, when the key is bound to one, the project (``orbitwatch-project``); the sink trusts only those
headers, so no span or resource attribute can move data into another tenant.

Keys file format (YAML or JSON; ``--keys FILE`` or ``ORBITWATCH_API_KEYS_FILE``)::

    keys:
      - key: ow_live_3f9c...        # the secret the client sends
        tenant: acme                 # required
        project: checkout-bot        # optional: pin every record of this key to one project

The environment variable ``ORBITWATCH_API_KEYS`` holds the same document inline (JSON or YAML), or
the short form ``key=tenant[/project],key2=tenant2``.

``Auth.disabled()`` (``--no-auth``, local development) accepts any or no key as tenant ``default``
and leaves the project to the records' ``orbitwatch.project`` resource attribute.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from orbitwatch.errors import UserError

DEFAULT_TENANT = "default"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who sent a request: the tenant every record is stamped with, and the key's project if bound."""

    tenant: str
    project: str | None = None


class AuthError(Exception):
    """The request carries no key or an unknown one (→ gRPC UNAUTHENTICATED / HTTP 401)."""


def extract_key(headers: Mapping[str, str]) -> str | None:
    """The API key from lower-cased header names: ``authorization: Bearer K`` or ``x-api-key: K``."""
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    authz = headers.get("authorization")
    if authz:
        scheme, _, value = authz.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None


class Auth:
    """Resolves API keys; immutable after construction so it is safe to share across requests."""

    def __init__(self, keys: Mapping[str, Principal], enabled: bool = True) -> None:
        if enabled and not keys:
            raise UserError("authentication is enabled but no API keys are configured "
                            "(give --keys FILE or ORBITWATCH_API_KEYS, or --no-auth for local development)")
        self.enabled = enabled
        self._keys = dict(keys)

    @classmethod
    def disabled(cls) -> "Auth":
        return cls({}, enabled=False)

    @classmethod
    def from_mapping(cls, doc: object, source: str = "keys") -> "Auth":
        """Build from a parsed ``{keys: [{key, tenant, project?}]}`` document."""
        if not isinstance(doc, Mapping) or not isinstance(doc.get("keys"), list):
            raise UserError(f"{source}: expected a mapping with a 'keys' list of {{key, tenant, project}}")
        keys: dict[str, Principal] = {}
        for i, item in enumerate(doc["keys"]):
            if not isinstance(item, Mapping):
                raise UserError(f"{source}: keys[{i}] must be a mapping")
            key, tenant, project = item.get("key"), item.get("tenant"), item.get("project")
            if not isinstance(key, str) or len(key) < 8:
                raise UserError(f"{source}: keys[{i}].key must be a string of at least 8 characters")
            if not isinstance(tenant, str) or not tenant or len(tenant) > 200:
                raise UserError(f"{source}: keys[{i}].tenant must be a non-empty string (≤ 200 characters)")
            if project is not None and (not isinstance(project, str) or not project or len(project) > 200):
                raise UserError(f"{source}: keys[{i}].project must be a non-empty string (≤ 200 characters)")
            if key in keys:
                raise UserError(f"{source}: keys[{i}]: duplicate key")
            keys[key] = Principal(tenant, project)
        return cls(keys)

    @classmethod
    def from_file(cls, path: str | Path) -> "Auth":
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as exc:
            raise UserError(f"cannot read API keys file {p}: {exc.strerror or exc}") from None
        return cls.from_mapping(_parse(text, str(p)), str(p))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Auth | None":
        """From ``ORBITWATCH_API_KEYS_FILE`` or ``ORBITWATCH_API_KEYS``; None when neither is set."""
        env = os.environ if environ is None else environ
        if env.get("ORBITWATCH_API_KEYS_FILE"):
            return cls.from_file(env["ORBITWATCH_API_KEYS_FILE"])
        text = env.get("ORBITWATCH_API_KEYS", "").strip()
        if not text:
            return None
        if text[0] in "{" or text.startswith("keys:"):
            return cls.from_mapping(_parse(text, "ORBITWATCH_API_KEYS"), "ORBITWATCH_API_KEYS")
        items = []
        for part in filter(None, (s.strip() for s in text.split(","))):
            key, sep, who = part.partition("=")
            if not sep:
                raise UserError("ORBITWATCH_API_KEYS: expected key=tenant[/project],... or a {keys: [...]} document")
            tenant, _, project = who.partition("/")
            items.append({"key": key.strip(), "tenant": tenant.strip(), "project": project.strip() or None})
        return cls.from_mapping({"keys": items}, "ORBITWATCH_API_KEYS")

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        """The principal for a request's (lower-cased) headers; raises AuthError."""
        if not self.enabled:
            return Principal(DEFAULT_TENANT)
        key = extract_key(headers)
        if not key:
            raise AuthError("missing API key: send 'authorization: Bearer <key>' or 'x-api-key: <key>'")
        principal = self._keys.get(key)
        if principal is None:  # a hash lookup: its timing does not reveal key prefixes
            raise AuthError("unknown API key")
        return principal


def _parse(text: str, source: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        import yaml
        return yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError and friends
        raise UserError(f"{source}: not valid JSON or YAML: {exc}") from None
