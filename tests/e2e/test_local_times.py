"""Customers read times in their own zone, named; the maker's console keeps the maker's zone."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from shop.extensions import db
from shop.models import Drop

pytestmark = pytest.mark.e2e


def test_a_customer_in_tokyo_sees_the_opening_time_in_tokyo_time(demo_shop, chromium):
    opens_at = demo_shop.run(
        lambda: db.session.scalar(select(Drop.opens_at).where(Drop.slug == "spring-release"))
    )
    in_tokyo = opens_at + timedelta(hours=9)
    context = chromium.new_context(timezone_id="Asia/Tokyo")
    try:
        page = context.new_page()
        page.goto(f"{demo_shop.url}/drops/spring-release")

        opening = page.locator(".notice time[data-local]")
        expect(opening).to_have_text(
            f"{in_tokyo.day} {in_tokyo:%b %Y, %H:%M} GMT+9"  # Chromium's short name for JST
        )
        expect(opening).to_have_attribute("title", "In your time zone, Asia/Tokyo")
        expect(page.locator("[data-local-zone]")).to_have_text(
            "Times are shown in your time zone, Asia/Tokyo."
        )
    finally:
        context.close()


def test_without_scripts_the_time_reads_in_utc_and_says_so(demo_shop, chromium):
    context = chromium.new_context(java_script_enabled=False, timezone_id="Asia/Tokyo")
    try:
        page = context.new_page()
        page.goto(f"{demo_shop.url}/drops/spring-release")

        expect(page.locator(".notice time[data-local]")).to_have_text(re.compile(r" UTC$"))
        expect(page.locator("[data-local-zone]")).to_be_hidden()
    finally:
        context.close()
