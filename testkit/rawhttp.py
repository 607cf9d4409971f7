"""HTTP/1.1 over raw sockets: requests built byte for byte (so a burst can hold back the last
byte), responses parsed, and a logged-in browser-like client (:func:`login`). With ``tls`` (an
``ssl.SSLContext``) the same bytes go over TLS, e.g. to nginx in front of the shop."""

from __future__ import annotations

import http.client
import re
import secrets
import socket
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

from testkit.factories import PASSWORD

HOST = "127.0.0.1"
Address = tuple[str, int]


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    cookies: dict[str, str]
    body: bytes
    finished_at: float = 0.0  # time.monotonic() when the response was complete
    truncated: bool = False  # the connection closed before the whole body came (truncated_ok)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    @property
    def location(self) -> str | None:
        return self.headers.get("location")


class _Source:
    """http.client's parser reads a response from a byte string as if from a socket."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, *_args: object, **_kwargs: object):
        import io

        return io.BytesIO(self._data)


def parse_response(raw: bytes, *, finished_at: float = 0.0, truncated_ok: bool = False) -> Response:
    """A complete HTTP/1.1 response (read until the server closed) as a :class:`Response`.
    With ``truncated_ok`` a body cut short (a server that died while answering) is kept as it
    came, marked ``truncated``, instead of raising ``http.client.IncompleteRead``."""
    parsed = http.client.HTTPResponse(_Source(raw))  # type: ignore[arg-type]
    truncated = False
    try:
        parsed.begin()
        try:
            body = parsed.read()
        except http.client.IncompleteRead as cut:
            if not truncated_ok:
                raise
            body, truncated = cut.partial, True
    finally:
        parsed.close()
    cookies: dict[str, str] = {}
    for header in parsed.msg.get_all("Set-Cookie") or []:
        name, _, rest = header.partition("=")
        value = rest.split(";", 1)[0]
        cookies[name.strip()] = value
    headers = {name.lower(): value for name, value in parsed.getheaders()}
    return Response(parsed.status, headers, cookies, body, finished_at, truncated)


def build_request(
    address: Address,
    method: str,
    path: str,
    *,
    fields: dict[str, object] | None = None,
    cookies: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> bytes:
    """The bytes of one HTTP/1.1 request that asks the server to close the connection after:
    ``fields`` as a form, or ``body`` as it is (its Content-Type among ``headers``)."""
    if body is None:
        body = urlencode(fields, doseq=True).encode() if fields is not None else b""
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {address[0]}:{address[1]}",
        "Connection: close",
        "Accept: text/html",
        "User-Agent: smallbatch-tests",
    ]
    if cookies:
        lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in cookies.items()))
    if fields is not None:
        lines.append("Content-Type: application/x-www-form-urlencoded")
    if method not in ("GET", "HEAD"):
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def connect(
    address: Address, *, timeout: float = 10.0, tls: ssl.SSLContext | None = None
) -> socket.socket:
    """A connected socket to ``address``; with ``tls``, after the TLS handshake."""
    sock = socket.create_connection(address, timeout=timeout)
    if tls is None:
        return sock
    try:
        return tls.wrap_socket(sock, server_hostname=address[0])
    except BaseException:
        sock.close()
        raise


def send_raw(
    address: Address,
    request: bytes,
    *,
    timeout: float = 10.0,
    tls: ssl.SSLContext | None = None,
    truncated_ok: bool = False,
) -> Response:
    with connect(address, timeout=timeout, tls=tls) as sock:
        sock.sendall(request)
        raw = _read_all(sock)
    return parse_response(raw, finished_at=time.monotonic(), truncated_ok=truncated_ok)


def http_request(
    address: Address,
    method: str,
    path: str,
    *,
    fields: dict[str, object] | None = None,
    cookies: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
    tls: ssl.SSLContext | None = None,
) -> Response:
    """One request on its own connection."""
    request = build_request(address, method, path, fields=fields, cookies=cookies, headers=headers)
    return send_raw(address, request, timeout=timeout, tls=tls)


_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*name="csrf_token"')


def csrf_token_in(html: str) -> str | None:
    found = _CSRF.search(html)
    return (found.group(1) or found.group(2)) if found else None


@dataclass
class ShopSession:
    """A browser-like client: its cookies and the CSRF token of the last page it read (over
    TLS with ``tls``)."""

    address: Address
    cookies: dict[str, str] = field(default_factory=dict)
    csrf_token: str | None = None
    tls: ssl.SSLContext | None = None
    timeout: float = 10.0  # seconds each request may take

    def request(
        self,
        method: str,
        path: str,
        fields: dict[str, object] | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> Response:
        response = self.send(
            build_request(
                self.address,
                method,
                path,
                fields=fields,
                cookies=self.cookies,
                headers=self._browser_headers(headers),
            )
        )
        self.cookies.update(response.cookies)
        token = csrf_token_in(response.text) if response.status == 200 else None
        if token:
            self.csrf_token = token
        return response

    def _browser_headers(self, headers: dict[str, str] | None) -> dict[str, str] | None:
        """Over TLS a browser says which page a form came from: Flask-WTF requires it there."""
        if self.tls is None:
            return headers
        return {"Referer": f"https://{self.address[0]}:{self.address[1]}/", **(headers or {})}

    def send(self, request: bytes, *, truncated_ok: bool = False) -> Response:
        """Raw request bytes (from one of the ``*_request`` methods) on a connection of their
        own, as this client connects; cookies are not updated."""
        return send_raw(
            self.address, request, timeout=self.timeout, tls=self.tls, truncated_ok=truncated_ok
        )

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def post(self, path: str, fields: dict[str, object] | None = None) -> Response:
        """A form POST carrying this session's CSRF token."""
        return self.request("POST", path, {"csrf_token": self.csrf_token or "", **(fields or {})})

    def form_request(
        self, path: str, fields: dict[str, object], *, headers: dict[str, str] | None = None
    ) -> bytes:
        """The raw bytes of a form POST with this session's cookies and CSRF token."""
        return build_request(
            self.address,
            "POST",
            path,
            fields={"csrf_token": self.csrf_token or "", **fields},
            cookies=self.cookies,
            headers=self._browser_headers(headers),
        )

    def get_request(self, path: str, *, headers: dict[str, str] | None = None) -> bytes:
        """The raw bytes of a GET of ``path`` with this session's cookies."""
        return build_request(self.address, "GET", path, cookies=self.cookies, headers=headers)

    def buy_request(
        self, batch_id: int, quantity: int = 1, *, headers: dict[str, str] | None = None
    ) -> bytes:
        """Raw bytes of ``POST /checkout/batches/<id>`` (the buy button)."""
        return self.form_request(
            f"/checkout/batches/{batch_id}", {"quantity": quantity}, headers=headers
        )

    def buy(self, batch_id: int, quantity: int = 1) -> Response:
        return self.send(self.buy_request(batch_id, quantity))

    def image_upload_request(
        self,
        batch_id: int,
        picture: bytes,
        *,
        alt: str = "The bottle on the bench",
        headers: dict[str, str] | None = None,
    ) -> bytes:
        """The raw bytes of the console's picture upload for a batch (multipart/form-data, as
        a browser sends it), with this session's cookies and CSRF token."""
        boundary = secrets.token_hex(12)
        fields = {"csrf_token": self.csrf_token or "", "alt": alt}
        body = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
            f"{value}\r\n".encode()
            for name, value in fields.items()
        )
        body += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="b.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        body += picture + f"\r\n--{boundary}--\r\n".encode()
        return build_request(
            self.address,
            "POST",
            f"/maker/batches/{batch_id}/images",
            cookies=self.cookies,
            headers=self._browser_headers(
                {"Content-Type": f"multipart/form-data; boundary={boundary}", **(headers or {})}
            ),
            body=body,
        )

    def upload_image(self, batch_id: int, picture: bytes, **kwargs: str) -> Response:
        return self.send(self.image_upload_request(batch_id, picture, **kwargs))


def login(
    address: Address,
    email: str,
    password: str = PASSWORD,
    *,
    page: str = "/account/",
    tls: ssl.SSLContext | None = None,
    timeout: float = 10.0,
) -> ShopSession:
    """Log in through the real form, then read ``page`` for a CSRF token of the new session."""
    session = ShopSession(address, tls=tls, timeout=timeout)
    session.get("/account/login")
    answer = session.post("/account/login", {"email": email, "password": password})
    if answer.status != 303:
        raise AssertionError(f"login as {email} answered {answer.status}: {answer.text[:300]}")
    session.csrf_token = None
    page_answer = session.get(page)
    if session.csrf_token is None:
        raise AssertionError(f"no csrf_token on {page} ({page_answer.status}) after login")
    return session
