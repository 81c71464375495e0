"""Image URLs from strangers: only public addresses are fetched (in every spelling), the connection goes to the
address that was checked, redirects are checked again, a download has one deadline and one byte cap, and error
messages do not tell open ports from closed ones. Real HTTP servers on loopback stand in for internal services."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.apps.gateway.app import create_app
from services.errors import FetchError, TransientFetchError
from services.images.outbound import AllowList, Downloader
from services.settings import Settings
from tests.helpers import ADMIN_KEY, AUTH, encode, photo, photo_server, wait_for_job

PHOTO = encode(photo((200, 30, 30)))
Route = Callable[[BaseHTTPRequestHandler], None]


def send_photo(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("content-type", "image/jpeg")
    handler.send_header("content-length", str(len(PHOTO)))
    handler.end_headers()
    handler.wfile.write(PHOTO)


def redirect_to(location: str) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("location", location)
        handler.end_headers()

    return route


def drip(handler: BaseHTTPRequestHandler) -> None:
    """A photo one byte at a time, every 0.2 s: each read is quick, the download never ends in time."""
    handler.send_response(200)
    handler.send_header("content-type", "image/jpeg")
    handler.end_headers()
    for byte in PHOTO[:200]:
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        time.sleep(0.2)


def endless(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("content-type", "image/jpeg")
    handler.end_headers()
    for _ in range(64):
        handler.wfile.write(b"\0" * 65536)


@contextmanager
def server(routes: dict[str, Route], host: str = "127.0.0.1") -> Iterator[tuple[int, Counter, list[str]]]:
    """A real HTTP server: yields (port, hits per path, Host headers received)."""
    hits: Counter = Counter()
    hosts: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits[self.path] += 1
            hosts.append(self.headers.get("host", ""))
            routes.get(self.path, lambda h: h.send_error(404))(self)

        def log_message(self, *_: object) -> None:
            pass

    httpd = ThreadingHTTPServer((host, 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], hits, hosts
    finally:
        httpd.shutdown()
        thread.join(5)


def downloader(*allowed: str, timeout_s: float = 5.0, max_bytes: int = 1 << 20, **kwargs: object) -> Downloader:
    return Downloader(max_bytes, timeout_s, AllowList.parse(allowed), **kwargs)  # type: ignore[arg-type]


LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "localhost",
    "0.0.0.0",
    "2130706433",  # decimal
    "0x7f000001",  # hex
    "0177.0.0.1",  # octal
    "127.1",
    "[::1]",
    "[::ffff:127.0.0.1]",  # IPv4-mapped IPv6
    "[::ffff:7f00:1]",
    "[::]",
]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_every_spelling_of_this_machine_is_refused_before_any_connection(host: str) -> None:
    with server({"/p.jpg": send_photo}) as (port, hits, _), pytest.raises(FetchError) as refused:
        downloader()(f"http://{host}:{port}/p.jpg")
    # octal dotted quads are refused already as URLs (httpx does not parse them); the rest after resolving
    message = str(refused.value)
    assert "not on the public internet" in message or (host.startswith("0177") and "not a valid URL" in message)
    assert not hits


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
        "http://10.0.0.1/p.jpg",
        "http://172.16.5.4/p.jpg",
        "http://192.168.1.1/p.jpg",
        "http://100.64.0.1/p.jpg",  # carrier-grade NAT
        "http://224.0.0.1/p.jpg",  # multicast
        "http://240.0.0.1/p.jpg",  # reserved
        "http://[fe80::1]/p.jpg",  # IPv6 link-local
        "http://[fc00::1]/p.jpg",  # IPv6 unique local
        "http://[2002:7f00:1::]/p.jpg",  # 6to4 around 127.0.0.1
        "http://[64:ff9b::a00:1]/p.jpg",  # NAT64 around 10.0.0.1
        "https://[::ffff:169.254.169.254]/p.jpg",
    ],
)
def test_private_link_local_multicast_and_wrapped_addresses_are_refused(url: str) -> None:
    with pytest.raises(FetchError, match="not on the public internet"):
        downloader()(url)


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "gopher://127.0.0.1:6379/_INFO", "dict://127.0.0.1:6379/", "ftp://example.com/a"]
)
def test_only_http_and_https_are_fetched(url: str) -> None:
    with pytest.raises(FetchError, match="only http and https"):
        downloader("127.0.0.1")(url)


def test_an_allow_listed_private_host_is_fetched_and_every_redirect_is_checked_again() -> None:
    with server({"/p.jpg": send_photo}, host="127.0.0.2") as (inner_port, inner_hits, _):
        routes = {
            "/p.jpg": send_photo,
            "/moved": redirect_to("/p.jpg"),
            "/to-inner": redirect_to(f"http://127.0.0.2:{inner_port}/p.jpg"),
            "/to-file": redirect_to("file:///etc/passwd"),
            "/loop": redirect_to("/loop"),
        }
        with server(routes) as (port, hits, _):
            fetch = downloader("127.0.0.1")  # the operator's own image host, and nothing else
            assert fetch(f"http://127.0.0.1:{port}/p.jpg") == PHOTO
            assert fetch(f"http://127.0.0.1:{port}/moved") == PHOTO
            with pytest.raises(FetchError, match="not on the public internet"):
                fetch(f"http://127.0.0.1:{port}/to-inner")
            with pytest.raises(FetchError, match=r"a redirect to file:.*/etc/passwd: only http and https"):
                fetch(f"http://127.0.0.1:{port}/to-file")
            with pytest.raises(FetchError, match="more than 5 redirects"):
                fetch(f"http://127.0.0.1:{port}/loop")
    assert not inner_hits and hits["/loop"] == 6


def test_the_allow_list_takes_host_names_and_networks() -> None:
    allow = AllowList.parse(["10.0.0.0/8", "CDN.Shop.example.", "fd00::/8"])
    assert allow.admits("anything", ipaddress.ip_address("10.1.2.3"))
    assert allow.admits("cdn.shop.example", ipaddress.ip_address("192.168.0.1"))
    assert allow.admits("other", ipaddress.ip_address("fd12::1"))
    assert not allow.admits("other", ipaddress.ip_address("192.168.0.1"))
    assert not allow.admits("cdn.shop.example", ipaddress.ip_address("0.0.0.0"))  # never "any address"
    # a name admits its private addresses, not this machine or the cloud's credential service, however spelt
    for local in ("127.0.0.1", "::1", "::ffff:127.0.0.1", "169.254.169.254", "fe80::1"):
        assert not allow.admits("cdn.shop.example", ipaddress.ip_address(local)), local
    assert AllowList.parse(["127.0.0.1"]).admits("localhost", ipaddress.ip_address("127.0.0.1"))  # named exactly


def test_the_connection_goes_to_the_checked_address_with_the_url_host_as_host_header() -> None:
    """DNS rebinding: the name is resolved once per hop and the request is sent to that answer, so a second,
    different answer is never used; every answer must pass, since an attacker chooses their order."""
    answers = iter([["127.0.0.1"], ["10.0.0.9"]])
    calls: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return next(answers)

    with server({"/p.jpg": send_photo}) as (port, hits, hosts):
        fetch = downloader("127.0.0.1/32", resolver=resolver)
        assert fetch(f"http://images.shop.test:{port}/p.jpg") == PHOTO
        assert calls == ["images.shop.test"] and hosts == [f"images.shop.test:{port}"]
        mixed = downloader("127.0.0.1/32", resolver=lambda host, port: ["127.0.0.1", "10.0.0.9"])
        with pytest.raises(FetchError, match="not on the public internet"):
            mixed(f"http://images.shop.test:{port}/p.jpg")
    assert hits["/p.jpg"] == 1


def test_a_download_has_one_deadline_and_one_byte_cap() -> None:
    with server({"/drip.jpg": drip, "/endless.jpg": endless}) as (port, _, _):
        started = time.monotonic()
        with pytest.raises(TransientFetchError, match="no image within 1 s"):
            downloader("127.0.0.1", timeout_s=1.0)(f"http://127.0.0.1:{port}/drip.jpg")
        assert time.monotonic() - started < 2.5  # one deadline for the whole body, not one per read
        with pytest.raises(FetchError, match="larger than 100000 bytes"):
            downloader("127.0.0.1", max_bytes=100_000)(f"http://127.0.0.1:{port}/endless.jpg")


def test_a_hanging_name_resolution_counts_against_the_deadline() -> None:
    def hanging(host: str, port: int) -> list[str]:
        time.sleep(5)
        return ["93.184.216.34"]

    started = time.monotonic()
    with pytest.raises(TransientFetchError, match=r"no image within 0\.5 s"):
        downloader(timeout_s=0.5, resolver=hanging)("http://images.example.com/a.jpg")
    assert time.monotonic() - started < 1.5


def test_errors_do_not_tell_an_open_port_from_a_closed_one() -> None:
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    open_port = listening.getsockname()[1]
    closing = threading.Thread(target=lambda: listening.accept()[0].close(), daemon=True)
    closing.start()  # something that is not a web server: accepts, then hangs up
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    messages = []
    for port in (open_port, closed_port):
        with pytest.raises(TransientFetchError) as caught:
            downloader("127.0.0.1")(f"http://127.0.0.1:{port}/p.jpg")
        messages.append(str(caught.value).replace(str(port), "PORT"))
    listening.close()
    assert messages[0] == messages[1] == "http://127.0.0.1:PORT/p.jpg: could not download from this host"


@pytest.fixture
def exposed(tmp_path: Path, tiny_registry: Path) -> Iterator[TestClient]:
    """The gateway as deployed: no private image hosts allowed."""
    settings = Settings(
        data_dir=tmp_path / "data",
        registry_file=tiny_registry,
        variants=["tiny"],
        device="cpu",
        fetch_timeout_s=2.0,
        api_keys=[f"{ADMIN_KEY}:admin"],
    )
    with TestClient(create_app(settings), headers=AUTH) as client:
        yield client


def test_the_api_never_fetches_from_this_machine_and_base64_is_only_base64(exposed: TestClient) -> None:
    with server({"/p.jpg": send_photo}) as (port, hits, _):
        for url in (f"http://127.0.0.1:{port}/p.jpg", f"http://2130706433:{port}/p.jpg"):
            response = exposed.post("/v1/search", json={"image_url": url})
            assert response.status_code == 422 and "not on the public internet" in response.json()["detail"]
        for inline in (f"http://127.0.0.1:{port}/p.jpg", "/etc/passwd", "data:image/png,notbase64"):
            response = exposed.post("/v1/search", json={"image_base64": inline})
            assert response.status_code == 422 and "base64" in response.json()["detail"]
        items = [{"id": "internal", "images": [f"http://localhost:{port}/p.jpg"]}]
        report = wait_for_job(exposed, exposed.post("/v1/products", json={"items": items}).json()["job_id"])
        assert report["failed"] == 1 and "not on the public internet" in report["failures"][0]["reason"]
    assert not hits


def test_catalogue_downloads_from_a_slow_host_never_make_a_shoppers_photo_address_wait() -> None:
    """Every bulk download thread busy with a slow catalogue host: a shopper's photo address is fetched at once."""
    allow = AllowList.parse(["127.0.0.1"])
    with (
        photo_server({"slow.jpg": encode(photo((1, 2, 3))), "quick.jpg": encode(photo((4, 5, 6)))}, delay_s=0) as (
            base,
            _,
        ),
        photo_server({"slow.jpg": encode(photo((1, 2, 3)))}, delay_s=3.0) as (slow_base, _),
    ):
        bulk = Downloader(10_000_000, 10.0, allow, lane="bulk")
        shopper = Downloader(10_000_000, 10.0, allow, lane="search")
        with ThreadPoolExecutor(64) as callers:
            catalogue = [callers.submit(bulk, f"{slow_base}/slow.jpg") for _ in range(64)]  # twice the bulk threads
            time.sleep(0.3)
            started = time.perf_counter()
            assert shopper(f"{base}/quick.jpg")
            waited = time.perf_counter() - started
            queued = time.perf_counter()
            assert bulk(f"{base}/quick.jpg")  # the same call on the bulk lane waits behind the slow host
            behind = time.perf_counter() - queued
            assert all(future.result() for future in catalogue)
    assert waited < 1.0 and behind > 2.0, (waited, behind)
