"""A real S3 API for the object storage tests: moto's standalone server, started once per run as
a process on 127.0.0.1 (port METRICIS_TEST_S3_PORT, default a free one, so test runs side by
side do not share it) and stopped at the end.

`s3_bucket` gives a test a bucket of its own; `s3_settings(settings, bucket)` the settings that
put the test's files there. When the server cannot start the tests that need it are skipped, or
fail under METRICIS_REQUIRE_SERVICES=1, like the other services.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from app.config import Settings, StorageBackend

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


S3_PORT = int(os.environ.get("METRICIS_TEST_S3_PORT") or _free_port())
S3_ENDPOINT = f"http://127.0.0.1:{S3_PORT}"
START_SECONDS = 60
# Any value: moto accepts every key, and signs and checks with what it is given.
ACCESS_KEY_ID = "metricis-test"
SECRET_ACCESS_KEY = "metricis-test-secret-0123456789"
# S3's smallest part, so a file of a few MiB is uploaded in several.
MULTIPART_BYTES = 5 * 1024 * 1024


def admin_client() -> S3Client:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=S3_ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        config=BotoConfig(
            connect_timeout=1,
            read_timeout=10,
            retries={"max_attempts": 1},
            s3={"addressing_style": "path"},
        ),
    )


def _unavailable(reason: str) -> None:
    if os.environ.get("METRICIS_REQUIRE_SERVICES") == "1":
        pytest.fail(f"the S3 API server is required: {reason}")
    pytest.skip(f"no S3 API server: {reason}")


def _answers(client: S3Client) -> bool:
    try:
        client.list_buckets()
    except (BotoCoreError, ClientError):
        return False
    return True


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The endpoint of moto's S3 server, running for the whole test run."""
    log = tmp_path_factory.mktemp("s3") / "moto.log"
    client = admin_client()
    if _answers(client):
        _unavailable(f"port {S3_PORT} is taken by another server; set METRICIS_TEST_S3_PORT")
    moto_server = Path(sys.executable).with_name("moto_server")
    with log.open("wb") as output:
        try:
            process = subprocess.Popen(
                [str(moto_server), "-H", "127.0.0.1", "-p", str(S3_PORT)],
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            _unavailable(f"{moto_server} does not start ({exc})")
    try:
        deadline = time.monotonic() + START_SECONDS
        while not _answers(client):
            if process.poll() is not None:
                _unavailable(f"moto_server exited: {log.read_text(errors='replace')[-500:]}")
            if time.monotonic() > deadline:
                _unavailable(f"moto_server did not answer within {START_SECONDS} s")
            time.sleep(0.2)
        yield S3_ENDPOINT
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture
def s3_bucket(s3_server: str) -> Iterator[str]:
    """A new empty bucket for one test, removed with what it holds afterwards."""
    name = f"metricis-test-{uuid.uuid4().hex[:12]}"
    client = admin_client()
    client.create_bucket(Bucket=name)
    yield name
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=item["Key"])
    client.delete_bucket(Bucket=name)


def s3_settings(settings: Settings, bucket: str, **overrides: object) -> Settings:
    """`settings` with the files in `bucket` of the test server, under a prefix."""
    values = {
        **settings.model_dump(),
        "STORAGE_BACKEND": StorageBackend.S3,
        "S3_BUCKET": bucket,
        "S3_ENDPOINT_URL": S3_ENDPOINT,
        "S3_REGION": "us-east-1",
        "S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "S3_PREFIX": "deployment/",
        "S3_MULTIPART_BYTES": MULTIPART_BYTES,
        **overrides,
    }
    return Settings.model_validate(values)


def object_keys(bucket: str, prefix: str = "") -> list[str]:
    pages = admin_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]
