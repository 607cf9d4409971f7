"""A real S3-compatible server for the tests of ``SHOP_IMAGE_STORE=s3``: moto's standalone
server (``moto_server``, from requirements-dev) in a process of its own, spoken to over HTTP by
boto3 exactly as a production bucket would be. Each test gets a bucket of its own."""

from __future__ import annotations

import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config as BotoConfig

from testkit.rawhttp import HOST, http_request
from testkit.servers import VENV_BIN, free_port

# moto accepts any credentials; boto3 in the app reads these from the environment.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "smallbatch-test",
    "AWS_SECRET_ACCESS_KEY": "smallbatch-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class S3Server:
    def __init__(self, process: subprocess.Popen, port: int, log_file) -> None:
        self.process = process
        self.port = port
        self.log_file = log_file

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def client(self):
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            config=BotoConfig(s3={"addressing_style": "path"}),
        )

    def new_bucket(self) -> str:
        name = f"smallbatch-{secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        listed = self.client().list_objects_v2(Bucket=bucket)
        return sorted(item["Key"] for item in listed.get("Contents", []))

    def settings(self, bucket: str) -> dict[str, str]:
        """The environment of a shop that keeps its images in ``bucket`` on this server."""
        return {
            **CREDENTIALS,
            "SHOP_IMAGE_STORE": "s3",
            "SHOP_S3_BUCKET": bucket,
            "SHOP_S3_ENDPOINT_URL": self.endpoint,
            "SHOP_S3_REGION": CREDENTIALS["AWS_DEFAULT_REGION"],
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log_file.close()
        Path(self.log_file.name).unlink(missing_ok=True)


def start_s3_server(timeout: float = 30.0) -> S3Server:
    port = free_port()
    log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed by S3Server.stop
        "w+", prefix="moto-", suffix=".log", delete=False
    )
    process = subprocess.Popen(  # nosec B603 - our venv's moto_server
        [str(VENV_BIN / "moto_server"), "-H", HOST, "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    server = S3Server(process, port, log_file)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            http_request((HOST, port), "GET", "/", timeout=2)
            return server
        except OSError:
            time.sleep(0.1)
    log_file.flush()
    log = Path(log_file.name).read_text(errors="replace")
    server.stop()
    raise RuntimeError(f"moto_server did not start on port {port}:\n{log}")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = start_s3_server()
    yield server
    server.stop()
