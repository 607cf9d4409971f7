"""nginx in front of the shop, with the site config from deploy/ adapted only in ports and
paths: TLS ends at nginx, static files come from disk, anonymous drop pages and stock numbers
are micro-cached as the shop's Cache-Control allows, signed-in visitors always reach the app,
and an oversized upload gets the shop's own answer. Debian's nginx, gunicorn, PostgreSQL."""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit import databases, seed, servers
from tests.support import nginx

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[dict]:
    nginx.require_nginx()
    with databases.migrated_postgres_database("smallbatch_cluster") as url:
        app = databases.make_app(url)
        drop = seed.seed_live_drop(app, edition_size=50, limit=2)
        https_port = servers.free_port()
        with (
            servers.start_gunicorn(
                url,
                workers=2,
                threads=2,
                extra_env={
                    "SHOP_BASE_URL": f"https://127.0.0.1:{https_port}",
                    "SHOP_PROXY_COUNT": "1",
                },
            ) as app_server,
            nginx.running(
                tmp_path_factory.mktemp("nginx"),
                app_ports=[app_server.port],
                https_port=https_port,
            ) as proxy,
        ):
            yield {
                "https": proxy.https,
                "http": proxy.http,
                "ca": proxy.ca,
                "slug": drop.slug,
                "app": app_server,
            }
        with app.app_context():
            from shop.extensions import db

            db.engine.dispose()


def _get(port: int, ca: Path, path: str, *, method: str = "GET", body=None, headers=None):
    context = ssl.create_default_context(cafile=str(ca))
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_plain_http_is_sent_to_https(cluster):
    connection = http.client.HTTPConnection("127.0.0.1", cluster["http"], timeout=10)
    connection.request("GET", "/drops/x", headers={"Host": "127.0.0.1"})
    response = connection.getresponse()
    response.read()
    connection.close()

    assert response.status == 301
    assert response.getheader("Location") == "https://127.0.0.1/drops/x"


def test_pages_come_from_the_app_over_tls_with_a_request_id(cluster):
    status, headers, body = _get(cluster["https"], cluster["ca"], "/")

    assert status == 200 and b"Small Batch" in body
    assert len(headers["x-request-id"]) >= 16


def test_static_files_are_served_by_nginx_with_long_caching(cluster):
    status, headers, body = _get(cluster["https"], cluster["ca"], "/static/css/shop.css")

    assert status == 200 and b".certificate" in body
    assert headers["cache-control"] == "public, max-age=604800"


def test_anonymous_stock_numbers_are_micro_cached_and_signed_in_visitors_bypass(cluster):
    path = f"/api/drops/{cluster['slug']}/stock"

    first = _get(cluster["https"], cluster["ca"], path)
    second = _get(cluster["https"], cluster["ca"], path)
    signed_in = _get(
        cluster["https"], cluster["ca"], path, headers={"Cookie": "smallbatch_session=x"}
    )

    assert first[0] == second[0] == 200
    assert first[1]["x-cache-status"] in ("MISS", "EXPIRED")
    assert second[1]["x-cache-status"] == "HIT"
    assert signed_in[1]["x-cache-status"] == "BYPASS"


def test_the_anonymous_drop_page_is_micro_cached_and_revalidated_by_its_etag(cluster):
    path = f"/drops/{cluster['slug']}"

    first = _get(cluster["https"], cluster["ca"], path)
    second = _get(cluster["https"], cluster["ca"], path)
    again = _get(cluster["https"], cluster["ca"], path, headers={"If-None-Match": first[1]["etag"]})
    signed_in = _get(
        cluster["https"], cluster["ca"], path, headers={"Cookie": "smallbatch_session=x"}
    )

    assert first[0] == second[0] == 200 and b"Log in to buy" in second[2]
    assert second[1]["x-cache-status"] == "HIT"
    assert "set-cookie" not in first[1] and "set-cookie" not in second[1]
    assert again[0] == 304
    assert signed_in[1]["x-cache-status"] == "BYPASS"


def test_readiness_is_answered_through_nginx(cluster):
    status, _headers, body = _get(cluster["https"], cluster["ca"], "/readyz")

    assert status == 200, body


def test_an_oversized_upload_gets_the_shops_own_answer_and_a_huge_one_nginxs(cluster):
    just_over = b"x" * (16 * 1024 * 1024 + 1024)
    status, _headers, body = _get(
        cluster["https"],
        cluster["ca"],
        "/account/login",
        method="POST",
        body=just_over,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 413 and b"Small Batch" in body  # the shop's page, not nginx's

    huge = b"x" * (18 * 1024 * 1024)
    status, _headers, body = _get(
        cluster["https"],
        cluster["ca"],
        "/account/login",
        method="POST",
        body=huge,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 413
