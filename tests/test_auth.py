"""API keys with scopes on the real gateway: writes always need a key with the write scope, reindex the admin
scope, search a key unless the deployment leaves it open; each key (or open-search address) has a rate; browser
origins come from settings; a deployment with no key gets an admin key on first start, never in a log."""

from __future__ import annotations

import json
import logging
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from services.apps.api_keys import ADMIN_KEY_FILE, KEY_FILE, PUBLIC_KEY_FILE
from services.apps.cli.serving import served_config
from services.apps.gateway.app import create_app
from services.settings import Settings
from tests.helpers import served, served_with


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


ITEM = {"items": [{"id": "p", "images": ["https://example.com/p.jpg"]}]}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def keyed(settings: Settings) -> Settings:
    settings.api_keys = ["reader-key:search", "editor-key:write", "boss-key:admin"]
    return settings


def test_writes_need_the_write_scope_and_reindex_the_admin_scope(keyed: Settings) -> None:
    with TestClient(create_app(keyed)) as client:
        refused = client.post("/v1/products", json=ITEM)
        assert refused.status_code == 401 and "write scope" in refused.json()["detail"]
        assert client.post("/v1/products", json=ITEM, headers=bearer("guess")).status_code == 401
        narrow = client.delete("/v1/products/p", headers=bearer("reader-key"))
        assert narrow.status_code == 403 and "may not write; its scopes: search" in narrow.json()["detail"]
        assert client.post("/v1/products", json=ITEM, headers=bearer("editor-key")).status_code == 202
        reindex = {"from": "tiny", "to": "other"}
        assert client.post("/v1/reindex", json=reindex, headers=bearer("editor-key")).status_code == 403
        assert client.post("/v1/reindex", json=reindex, headers=bearer("boss-key")).status_code == 404  # passed auth


def test_an_oversized_body_is_a_413_before_anyone_reads_it(keyed: Settings) -> None:
    keyed.max_request_bytes = 10_000
    big = json.dumps({"items": [{"id": f"p{n}", "images": ["https://example.com/p.jpg"]} for n in range(500)]})
    with TestClient(create_app(keyed)) as client:
        declared = client.post("/v1/products", content=big, headers={"content-type": "application/json"})
        assert declared.status_code == 413 and "larger than 10000 bytes" in declared.json()["detail"]  # no key yet

        def chunks():  # no Content-Length: counted as it arrives
            for start in range(0, len(big), 1000):
                yield big[start : start + 1000].encode()

        for path in ("/v1/products", "/v1/search"):
            streamed = client.post(
                path, content=chunks(), headers={"content-type": "application/json", **bearer("boss-key")}
            )
            assert streamed.status_code == 413 and streamed.json()["error"] == "too_large", streamed.text
        assert client.post("/v1/products", json=ITEM, headers=bearer("editor-key")).status_code == 202  # under it


def test_a_write_key_is_checked_before_the_body_is_read_and_spends_its_rate_once(keyed: Settings) -> None:
    """FastAPI reads and parses a body before the dependencies: a stranger's 40 MB catalogue was parsed (4 s,
    200 MB) before its 401."""
    keyed.rate_limit_per_minute = 3
    with TestClient(create_app(keyed)) as client:
        unread = client.post("/v1/products", content=b"{not json", headers={"content-type": "application/json"})
        assert unread.status_code == 401, unread.text  # a 422 before: the body was parsed first
        assert client.post("/v1/catalogues", files={"file": ("c.csv", b"junk")}).status_code == 401
        patch = client.patch("/v1/products/p", content=b"[", headers={"content-type": "application/json"})
        assert patch.status_code == 401, patch.text
        answers = [client.post("/v1/products", json=ITEM, headers=bearer("editor-key")).status_code for _ in range(4)]
        assert answers == [202, 202, 202, 429]  # checked before the body and not again after: one of its rate


def test_a_body_that_stops_arriving_is_a_408_not_a_connection_held(keyed: Settings) -> None:
    """A client that declared 100 bytes and sent 14 was answered nothing for as long as it kept the connection."""
    keyed.body_idle_timeout_s = 1.0
    with served(create_app(keyed)) as url:
        host, port = url.removeprefix("http://").split(":")
        for path, key in (("/v1/search", "reader-key"), ("/v1/products", "editor-key")):
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                head = f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                sock.sendall(f"{head}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n".encode())
                sock.sendall(b'{"text": "red"')  # and no more
                started = time.monotonic()
                answer = sock.recv(65536).decode()
                while not answer.endswith("}"):  # the head and the body may come apart
                    answer += sock.recv(65536).decode()
            head, _, body = answer.partition("\r\n\r\n")
            assert head.startswith("HTTP/1.1 408") and json.loads(body)["error"] == "body_timeout", (path, answer)
            assert time.monotonic() - started < 8, path
        assert httpx.post(f"{url}/v1/search", json={"text": "red"}, headers=bearer("reader-key")).status_code == 200


def test_a_client_that_leaves_mid_body_is_no_error(keyed: Settings, caplog: pytest.LogCaptureFixture) -> None:
    """It was logged as an unhandled error with a traceback and counted as a 500."""
    with served(create_app(keyed)) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            head = "POST /v1/search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer reader-key\r\n"
            sock.sendall(f"{head}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{".encode())
        time.sleep(1)  # the gateway meets the closed connection
        metrics = httpx.get(f"{url}/metrics").text
    assert "unhandled error" not in caplog.text and "Traceback" not in caplog.text, caplog.text[-2000:]
    assert 'status="499"' in metrics and 'status="500"' not in metrics


def test_search_needs_a_key_unless_left_open(keyed: Settings) -> None:
    query = {"text": "red shirt"}
    with TestClient(create_app(keyed)) as client:
        assert client.post("/v1/search", json=query).status_code == 401
        assert client.get("/v1/models").status_code == 401
        assert client.post("/v1/search", json=query, headers=bearer("reader-key")).status_code == 200
        assert client.post("/v1/search", json=query, headers=bearer("editor-key")).status_code == 200
        assert client.get("/healthz").status_code == 200 and client.get("/").status_code == 200
    keyed.open_search = True
    with TestClient(create_app(keyed)) as client:
        assert client.post("/v1/search", json=query).status_code == 200
        assert client.post("/v1/products", json=ITEM).status_code == 401  # writes never open


def test_each_key_has_a_rate_and_429_says_when_to_retry(keyed: Settings) -> None:
    keyed.rate_limit_per_minute = 3
    keyed.open_search = True
    with TestClient(create_app(keyed)) as client:
        answers = [client.get("/v1/models", headers=bearer("reader-key")).status_code for _ in range(4)]
        assert answers == [200, 200, 200, 429]
        limited = client.get("/v1/models", headers=bearer("reader-key"))
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert "3 a minute" in limited.json()["detail"]
        assert client.get("/v1/models", headers=bearer("editor-key")).status_code == 200  # its own bucket
        anonymous = [client.get("/v1/models").status_code for _ in range(4)]
        assert anonymous == [200, 200, 200, 429]  # open search: one bucket per client address
    with TestClient(create_app(keyed)) as client:
        searched = [client.post("/v1/search", json={"text": "red"}).status_code for _ in range(4)]
        assert searched == [200, 200, 200, 429]  # checked before its body, and not spent again after
    keyed.open_search = False
    with TestClient(create_app(keyed)) as client:
        guesses = [client.delete("/v1/products/p", headers=bearer(f"guess-{n}")).status_code for n in range(4)]
        assert guesses == [401, 401, 401, 429]  # guessing keys spends the guesser's address's rate


def test_the_page_gets_a_public_search_only_key_rated_per_client_address(keyed: Settings) -> None:
    """The key the gateway hands its page may search and nothing else, and each shopper's address has its own
    rate: one busy client cannot use up the rate of a key every shopper shares."""
    with served(create_app(keyed)) as url:  # keys of its own in settings: no public key unless asked for
        assert httpx.get(f"{url}/v1/public-key").status_code == 404
    keyed.rate_limit_per_minute = 3
    keyed.public_search_key = True
    with served(create_app(keyed)) as url:
        key = httpx.get(f"{url}/v1/public-key").json()["key"]
        assert (keyed.data_dir / PUBLIC_KEY_FILE).read_text().strip() == key
        assert key not in (keyed.data_dir / KEY_FILE).read_text()  # the key file keeps digests only
        assert httpx.post(f"{url}/v1/products", json=ITEM, headers=bearer(key)).status_code == 403
        here = [httpx.get(f"{url}/v1/models", headers=bearer(key)).status_code for _ in range(4)]
        assert here == [200, 200, 200, 429]
        other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
        assert other.get(f"{url}/v1/models", headers=bearer(key)).status_code == 200  # another shopper
        assert httpx.get(f"{url}/v1/models", headers=bearer("reader-key")).status_code == 200  # a backend's key
        shown = {m["name"]: m for m in other.get(f"{url}/v1/models", headers=bearer(key)).json()}["ViT-B-16/openai"]
        private = {m["name"]: m for m in httpx.get(f"{url}/v1/models", headers=bearer("boss-key")).json()}
        assert "/" not in shown["weights"] and shown["problem"] == "its weights are not on this server"
        assert "HF_HOME" in private["ViT-B-16/openai"]["problem"]  # the operator sees what to fix
    with served(create_app(keyed)) as url:
        assert httpx.get(f"{url}/v1/public-key").json()["key"] == key  # made once, kept
    keyed.public_search_key = False
    with served(create_app(keyed)) as url:
        refused = httpx.get(f"{url}/v1/public-key")
        assert refused.status_code == 404 and "STYLEFINDER_PUBLIC_SEARCH_KEY" in refused.json()["detail"]


def test_x_forwarded_for_is_believed_only_from_the_proxies_the_settings_name(keyed: Settings) -> None:
    """Open search is rated per client address. A loopback client naming another address in X-Forwarded-For gets
    no bucket of its own, unless loopback is a proxy the settings trust."""
    keyed.open_search, keyed.rate_limit_per_minute = True, 2

    def answers(trusted: list[str]) -> list[int]:
        keyed.trusted_proxies = trusted
        with served_with(served_config(create_app(keyed), keyed, "127.0.0.1", free_port())) as url:
            return [
                httpx.get(f"{url}/v1/models", headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code
                for n in range(4)
            ]

    assert answers([]) == [200, 200, 429, 429]  # one client, whatever it claims
    assert answers(["127.0.0.1"]) == [200, 200, 200, 200]  # a trusted proxy: four shoppers


def test_cors_origins_come_from_settings(keyed: Settings) -> None:
    keyed.cors_origins = ["https://shop.example"]
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    with TestClient(create_app(keyed)) as client:
        allowed = client.options("/v1/search", headers={"Origin": "https://shop.example", **preflight})
        assert allowed.headers.get("access-control-allow-origin") == "https://shop.example"
        other = client.options("/v1/search", headers={"Origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in other.headers


def test_a_fresh_deployment_gets_an_admin_key_kept_out_of_logs(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings.api_keys = []
    with caplog.at_level(logging.INFO), TestClient(create_app(settings)) as client:
        plain = settings.data_dir / ADMIN_KEY_FILE
        key = plain.read_text().strip()
        assert stat.S_IMODE(plain.stat().st_mode) == 0o600 and len(key) >= 32
        assert client.post("/v1/reindex", json={"from": "tiny", "to": "x"}, headers=bearer(key)).status_code == 404
        assert client.post("/v1/products", json=ITEM).status_code == 401
        public = client.get("/v1/public-key").json()["key"]  # and the page's search-only key
        assert client.post("/v1/search", json={"text": "red"}, headers=bearer(public)).status_code == 200
    stored = (settings.data_dir / KEY_FILE).read_text()
    assert key not in stored and json.loads(stored)[0]["scopes"] == ["admin"]
    assert [record["scopes"] for record in json.loads(stored)] == [["admin"], ["search"]]
    assert str(plain) in caplog.text and key not in caplog.text
    with TestClient(create_app(settings)):
        assert plain.read_text().strip() == key  # made once, kept


@pytest.mark.parametrize(
    ("records", "said"),
    [
        ([{"name": "ops", "sha256": "0" * 64, "scopes": ["wirte"]}], "key 1: give name, sha256 and scopes"),
        ([{"name": "ops", "scopes": ["write"]}], "key 1: give name, sha256 and scopes"),
        ({"name": "ops"}, "a list of keys is expected"),
        ("[{", "not JSON"),
    ],
)
def test_a_hand_edited_key_file_that_cannot_be_used_stops_the_start_saying_why(
    settings: Settings, records: object, said: str
) -> None:
    """Read at the start: a scope misspelt would otherwise fail every request that sends that key with a 500."""
    file = settings.data_dir / KEY_FILE
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(records if isinstance(records, str) else json.dumps(records))
    with pytest.raises(ValueError, match=said) as refused, TestClient(create_app(settings)):
        pass
    assert str(file) in str(refused.value)


def test_the_cli_hands_work_to_the_gateway_with_this_machines_admin_key(
    settings: Settings, tiny_env: dict[str, str], catalogue_dir: Path
) -> None:
    """`stylefinder index` while `serve` owns the embedded store: the work goes through the gateway, with the
    admin key the gateway made on its first start (nothing configured on either side)."""
    settings.api_keys = []
    env = {key: value for key, value in tiny_env.items() if key not in ("STYLEFINDER_API_KEYS", "STYLEFINDER_API_KEY")}
    with served(create_app(settings)) as url:
        env["STYLEFINDER_GATEWAY_URL"] = url
        command = [sys.executable, "-m", "services.apps.cli", "index", str(catalogue_dir)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "sending the work there" in done.stderr and "12 indexed" in done.stdout


def test_buckets_of_clients_gone_quiet_are_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keyless search is limited per client address; addresses that stopped asking do not pile up."""
    from services.apps import api_keys

    clock = [1000.0]
    monkeypatch.setattr(api_keys, "MAX_BUCKETS", 3)
    monkeypatch.setattr(api_keys.time, "monotonic", lambda: clock[0])
    ring = api_keys.KeyRing([], per_minute=60)
    for n in range(4):
        ring.spend(f"address {n}")
    clock[0] += 61.0
    ring.spend("address new")
    assert set(ring._buckets) == {"address new"}
