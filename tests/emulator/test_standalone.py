"""``python -m stripe_emulator`` serves the same API as the in-process helper."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def test_the_command_line_server_prints_where_it_listens_and_serves():
    process = subprocess.Popen(
        [sys.executable, "-m", "stripe_emulator", "--port", "0", "--webhook-secret", "whsec_x"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = line.split("listening on ", 1)[1].split()[0]
        health = requests.get(f"{url}/_emulator/health", timeout=5)
    finally:
        process.terminate()
        process.communicate(timeout=10)

    assert line.startswith("Stripe emulator listening on http://127.0.0.1:")
    assert health.json()["ok"] is True
