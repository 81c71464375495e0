"""Downloads from URLs that strangers give us, safe by construction against server-side request forgery.

Every address a host name resolves to must be public (not loopback, private, link-local, multicast, reserved
or unspecified, also when written as decimal, octal or hex, or carried inside IPv6), unless the operator's
allow-list names the host or its network. The connection then goes to the address that was checked (the URL's
host travels as the Host header and TLS server name), so a second DNS answer cannot swap in another machine.
Redirects are followed by hand, each one checked again, at most `MAX_REDIRECTS`; the whole download (name
resolution included) has one deadline and one byte cap. Error messages say what to fix, never what is
listening where.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as Late
from dataclasses import dataclass, field
from typing import Literal

import httpx

from services.errors import FetchError, TransientFetchError
from services.references import shorten

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
MAX_REDIRECTS = 5
# One message for unknown names and private addresses alike: answers must not map a private network's names.
NOT_PUBLIC = (
    "the host is not on the public internet (or has no address); an operator can allow a private image host "
    "with STYLEFINDER_FETCH_ALLOWED_HOSTS"
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Downloads run here, so a caller waits no longer than its deadline even while a resolver or a socket hangs;
# a download past its deadline stops at its next read (each read's timeout is what was left of it). Shoppers' photo
# addresses have threads of their own: catalogue photos from a slow host can fill every bulk thread, never theirs.
DownloadLane = Literal["search", "bulk"]  # shoppers' photo addresses, or catalogue work: never the same threads
_DOWNLOADS: dict[DownloadLane, ThreadPoolExecutor] = {
    "search": ThreadPoolExecutor(max_workers=16, thread_name_prefix="download-search"),
    "bulk": ThreadPoolExecutor(max_workers=32, thread_name_prefix="download-bulk"),
}


def resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host (which also reads numeric forms like 2130706433)."""
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise FetchError(f"{host}: {NOT_PUBLIC}") from None
    return list(dict.fromkeys(str(answer[4][0]) for answer in answers))


def unwrapped(address: Address) -> Address:
    """The IPv4 address carried inside an IPv6 one (mapped, 6to4, Teredo, NAT64), else the address itself."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if inner is None and address in NAT64:
            inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if inner is not None:
            return inner
    return address


def is_public(address: Address) -> bool:
    """Globally routable unicast, looking through IPv4 carried inside IPv6."""
    address = unwrapped(address)
    return address.is_global and not (address.is_multicast or address.is_reserved or address.is_unspecified)


@dataclass
class AllowList:
    """Private hosts an operator vouches for (a retailer's own CDN): networks (CIDR, a single address too) admit
    what they name; an exact host name admits its private addresses, never this machine (loopback) or a
    link-local one (where clouds serve instance credentials), whatever that name comes to resolve to."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, entries: Sequence[str]) -> AllowList:
        hosts, networks = set(), []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                hosts.add(entry.strip().lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def admits(self, host: str, address: Address) -> bool:
        if address.is_unspecified:
            return False
        if any(address in network for network in self.networks):
            return True
        inner = unwrapped(address)
        return host.lower().rstrip(".") in self.hosts and not (inner.is_loopback or inner.is_link_local)


@dataclass
class Downloader:
    """GET one URL's body, at most `max_bytes`, within `timeout_s` in all (redirects, connects and reads)."""

    max_bytes: int
    timeout_s: float
    allow: AllowList = field(default_factory=AllowList)
    resolver: Resolver = resolve
    lane: DownloadLane = "search"  # whose download threads it uses

    def __call__(self, url: str) -> bytes:
        deadline = time.monotonic() + self.timeout_s
        running = _DOWNLOADS[self.lane].submit(self._download, url, deadline)
        try:
            return running.result(timeout=self.timeout_s)
        except Late:
            running.cancel()  # not started yet (every download thread busy): it never will be
            raise TransientFetchError(f"{shorten(url)}: no image within {self.timeout_s:g} s") from None

    def _download(self, url: str, deadline: float) -> bytes:
        current = _parse(url)
        for _ in range(MAX_REDIRECTS + 1):
            # a client per hop: a pooled connection to the same address must not carry another host's TLS session
            with httpx.Client(follow_redirects=False, trust_env=False) as client:
                response = self._open(client, current, self._checked_address(current), deadline)
                try:
                    if not response.is_redirect:
                        return self._body(response, url, deadline)
                    current = _parse(str(current.join(response.headers["location"])), redirected=True)
                finally:
                    response.close()
        raise FetchError(f"{shorten(url)}: more than {MAX_REDIRECTS} redirects")

    def _checked_address(self, url: httpx.URL) -> str:
        """The first resolved address, after every resolved address passed (an attacker picks the order)."""
        host = url.host
        addresses = self.resolver(host, url.port or (443 if url.scheme == "https" else 80))
        for text in addresses:
            address = ipaddress.ip_address(text.split("%")[0])
            if not (is_public(address) or self.allow.admits(host, address)):
                raise FetchError(f"{shorten(str(url))}: {NOT_PUBLIC}")
        if not addresses:
            raise FetchError(f"{shorten(str(url))}: {NOT_PUBLIC}")
        return addresses[0]

    def _open(self, client: httpx.Client, url: httpx.URL, address: str, deadline: float) -> httpx.Response:
        """A streamed GET sent to `address`, the URL's own host name in the Host header and the TLS handshake."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TransientFetchError(f"{shorten(str(url))}: no image within {self.timeout_s:g} s")
        request = client.build_request(
            "GET",
            url.copy_with(host=address),
            headers={"Host": url.netloc.decode("ascii")},
            extensions={"sni_hostname": url.host},
            timeout=httpx.Timeout(remaining),
        )
        try:
            return client.send(request, stream=True)
        except httpx.TimeoutException:
            raise TransientFetchError(f"{shorten(str(url))}: no image within {self.timeout_s:g} s") from None
        except httpx.HTTPError:
            # one message for refused, reset, unreachable and garbled alike: the answer must not map ports
            raise TransientFetchError(f"{shorten(str(url))}: could not download from this host") from None

    def _body(self, response: httpx.Response, url: str, deadline: float) -> bytes:
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientFetchError(f"{shorten(url)}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise FetchError(f"{shorten(url)}: HTTP {response.status_code}")
        kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind and not kind.startswith("image/") and kind != "application/octet-stream":
            raise FetchError(f"{shorten(url)}: content-type {kind} is not an image")
        if int(response.headers.get("content-length") or 0) > self.max_bytes:
            raise FetchError(f"{shorten(url)}: larger than {self.max_bytes} bytes")
        chunks, size = [], 0
        try:
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > self.max_bytes:
                    raise FetchError(f"{shorten(url)}: larger than {self.max_bytes} bytes")
                if time.monotonic() > deadline:  # a slow drip: each read is quick, the whole is not
                    raise TransientFetchError(f"{shorten(url)}: no image within {self.timeout_s:g} s")
                chunks.append(chunk)
        except httpx.TimeoutException:
            raise TransientFetchError(f"{shorten(url)}: no image within {self.timeout_s:g} s") from None
        except httpx.HTTPError:  # broken off, or a body that does not decode as its Content-Encoding says
            raise TransientFetchError(f"{shorten(url)}: the download broke off") from None
        return b"".join(chunks)


def _parse(url: str, redirected: bool = False) -> httpx.URL:
    where = "a redirect to " if redirected else ""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise FetchError(f"{where}{shorten(url)}: not a valid URL") from None
    if parsed.scheme not in ("http", "https"):
        raise FetchError(f"{where}{shorten(url)}: only http and https image URLs are fetched")
    if not parsed.host:
        raise FetchError(f"{where}{shorten(url)}: the URL has no host")
    return parsed
