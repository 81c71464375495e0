"""API keys with scopes, and a per-key rate limit.

Scopes: `search` (search, product photos, models), `write` (catalogue changes and their jobs; includes
search), `admin` (everything, reindex too). Keys come from settings (`STYLEFINDER_API_KEYS`, `key:scope+scope`)
and from `$STYLEFINDER_DATA_DIR/api-keys.json`, which holds only their SHA-256 digests. A fresh deployment
with no key at all gets an admin key on first start, written to `$STYLEFINDER_DATA_DIR/admin-api-key` (owner
read-only), so the two README commands work without setup and the key never appears in a log.

Like a hosted search engine's, the shop's page needs a key it may show to anyone: the public search key
(`$STYLEFINDER_DATA_DIR/search-api-key`, scope search only), which the gateway hands to its page. Keys that may
only search are rate-limited per client address, so one busy shopper cannot use up a shop's whole rate.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.errors import Forbidden, RateLimited, Unauthorised
from services.settings import Settings

SCOPES = ("search", "write", "admin")
IMPLIED = {"search": {"search"}, "write": {"search", "write"}, "admin": set(SCOPES)}
KEY_FILE = "api-keys.json"
ADMIN_KEY_FILE = "admin-api-key"
PUBLIC_KEY_FILE = "search-api-key"
PUBLIC_KEY_NAME = "public search"
MAX_BUCKETS = 10_000  # rate-limit buckets kept before full ones are dropped


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    name: str
    digest: str
    scopes: frozenset[str]

    @property
    def search_only(self) -> bool:
        """A key that may only search, such as the page's public one: its rate is counted per client address."""
        return self.scopes == {"search"}


@dataclass
class KeyRing:
    keys: list[ApiKey]
    per_minute: int = 600

    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # who -> (tokens, last refill)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        """The configured keys and the key file's (a hand-edited record with a scope that does not exist, or
        without its digest, is refused here: the gateway reads the keys as it starts)."""
        keys = [_configured(entry, n) for n, entry in enumerate(settings.api_keys)]
        stored = settings.data_dir / KEY_FILE
        for n, record in enumerate(_stored_records(settings)):
            granted = frozenset(record.get("scopes", ()))
            if not granted or not granted <= set(SCOPES) or not {"name", "sha256"} <= set(record):
                raise ValueError(f"{stored}, key {n + 1}: give name, sha256 and scopes, of {', '.join(SCOPES)}")
            keys.append(ApiKey(record["name"], record["sha256"], granted))
        return cls(keys, settings.rate_limit_per_minute)

    def check(self, presented: str | None, scope: str) -> ApiKey:
        """The key, allowed `scope`; Unauthorised (no or unknown key) or Forbidden (too narrow)."""
        if not presented:
            raise Unauthorised(f"this needs an API key with the {scope} scope: send `Authorization: Bearer <key>`")
        wanted = digest(presented)
        key = next((k for k in self.keys if hmac.compare_digest(k.digest, wanted)), None)
        if key is None:
            raise Unauthorised("unknown API key")
        if not any(scope in IMPLIED[granted] for granted in key.scopes):
            raise Forbidden(f"key {key.name!r} may not {scope}; its scopes: {', '.join(sorted(key.scopes))}")
        return key

    def spend(self, who: str) -> None:
        """One request of `who` (a key's name, or a client address where search is open): a token bucket
        refilled at `per_minute`, as deep as one minute's worth; empty answers 429 with when to retry."""
        rate = self.per_minute / 60.0
        now = time.monotonic()
        with self._lock:
            if len(self._buckets) > MAX_BUCKETS:  # many clients: forget those whose bucket has refilled
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 60.0}
            tokens, last = self._buckets.get(who, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - last) * rate)
            if tokens < 1.0:
                self._buckets[who] = (tokens, now)
                wait = math.ceil((1.0 - tokens) / rate)
                raise RateLimited(f"too many requests: {self.per_minute} a minute; retry in {wait} s", wait)
            self._buckets[who] = (tokens - 1.0, now)


def ensure_admin_key(settings: Settings) -> Path | None:
    """On a deployment with no key anywhere, create an admin key; returns where its plain text was written
    (None when keys already exist). The key file keeps only the digest."""
    records = _stored_records(settings)
    if settings.api_keys or any(record["name"] != PUBLIC_KEY_NAME for record in records):
        return None
    plain = settings.data_dir / ADMIN_KEY_FILE
    key = _write_new_key(plain, 0o600)
    _store_records(settings, [{"name": "admin", "sha256": digest(key), "scopes": ["admin"]}, *records])
    return plain


def public_search_key(settings: Settings) -> str | None:
    """The search-only key the page uses, made on first call (None where settings turn it off, or leave it unset
    and configure keys of their own). It is public by design: it can search and nothing else, and its rate is
    counted per client address."""
    wanted = settings.public_search_key if settings.public_search_key is not None else not settings.api_keys
    if not wanted:
        return None
    plain = settings.data_dir / PUBLIC_KEY_FILE
    records = _stored_records(settings)
    if plain.is_file() and any(record["name"] == PUBLIC_KEY_NAME for record in records):
        return plain.read_text().strip()
    key = _write_new_key(plain, 0o644)
    others = [record for record in records if record["name"] != PUBLIC_KEY_NAME]
    _store_records(settings, [*others, {"name": PUBLIC_KEY_NAME, "sha256": digest(key), "scopes": ["search"]}])
    return key


def _stored_records(settings: Settings) -> list[dict]:
    stored = settings.data_dir / KEY_FILE
    try:
        records = json.loads(stored.read_text()) if stored.is_file() else []
    except ValueError as error:
        raise ValueError(f"{stored}: not JSON ({error}); a list of keys is expected") from None
    if not isinstance(records, list) or not all(isinstance(record, dict) for record in records):
        raise ValueError(f"{stored}: a list of keys is expected, each an object of name, sha256 and scopes")
    return records


def _store_records(settings: Settings, records: list[dict]) -> None:
    """Replace the key file at once (a reader never sees half of it)."""
    stored = settings.data_dir / KEY_FILE
    partial = stored.with_suffix(".partial")
    partial.write_text(json.dumps(records, indent=2) + "\n")
    partial.replace(stored)


def _write_new_key(plain: Path, mode: int) -> str:
    key = secrets.token_urlsafe(32)
    plain.parent.mkdir(parents=True, exist_ok=True)
    plain.unlink(missing_ok=True)  # a leftover of an interrupted first start; never write through a link
    descriptor = os.open(plain, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key + "\n")
    os.chmod(plain, mode)  # the umask may have narrowed it
    return key


def local_admin_key(settings: Settings) -> str | None:
    """The key the CLI sends to a gateway: STYLEFINDER_API_KEY, else this machine's admin key file."""
    if settings.api_key:
        return settings.api_key
    plain = settings.data_dir / ADMIN_KEY_FILE
    return plain.read_text().strip() if plain.is_file() else None


def _configured(entry: str, index: int) -> ApiKey:
    key, _, scopes = entry.rpartition(":")
    granted = frozenset(scope.strip() for scope in scopes.split("+") if scope.strip())
    if not key or not granted or not granted <= set(SCOPES):
        raise ValueError(f"STYLEFINDER_API_KEYS entry {index + 1}: write <key>:<scope>[+<scope>], scopes {SCOPES}")
    return ApiKey(f"key {index + 1}", digest(key), granted)
