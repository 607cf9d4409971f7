"""Fixtures for the emulator contract tests: a live emulator on a real socket, a StripeClient
(stripe-python 16.1.0) pointed at it, and a local webhook receiver. No mocks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stripe

from stripe_emulator import RunningEmulator, serve_in_thread
from tests.emulator.support import WEBHOOK_SECRET, WebhookReceiver, control, stripe_client_for


@pytest.fixture
def emulator() -> Iterator[RunningEmulator]:
    """An emulator without a webhook URL: events are stored only."""
    with serve_in_thread() as running:
        yield running


@pytest.fixture
def stripe_client(emulator: RunningEmulator) -> Iterator[stripe.StripeClient]:
    with stripe_client_for(emulator) as client:
        yield client


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def webhook_emulator(webhook_receiver: WebhookReceiver) -> Iterator[RunningEmulator]:
    """An emulator delivering to ``webhook_receiver`` with a compressed retry schedule."""
    with serve_in_thread(
        webhook_url=webhook_receiver.url, webhook_secret=WEBHOOK_SECRET
    ) as running:
        control(running, "webhooks", {"retry_seconds": 0.05, "max_attempts": 4})
        yield running


@pytest.fixture
def webhook_client(webhook_emulator: RunningEmulator) -> Iterator[stripe.StripeClient]:
    with stripe_client_for(webhook_emulator) as client:
        yield client
