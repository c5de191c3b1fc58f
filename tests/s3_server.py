"""An S3-protocol server of a test run's own on loopback: moto's server mode, started as a child
process on a fixed port so that it can be killed (an outage) and brought back on the same address.
It keeps objects in memory: a restarted server is an empty store."""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

from common.processes import free_port, popen_child, stop_process

START_TIMEOUT_SECONDS = 30.0
# moto accepts any credentials; these only have to be present and signed with.
ACCESS_KEY_ID = "test-access-key"
SECRET_ACCESS_KEY = "test-secret-key"
REGION = "us-east-1"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


class S3Server:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.proc = popen_child(argv, pipe_output=False)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not _answers(self.url):
            assert time.monotonic() < deadline and self.proc.poll() is None, "moto's S3 server did not start"
            time.sleep(0.1)

    def kill(self) -> None:
        """Gone at once, as after a crash (its objects with it)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace=3.0)
            self.proc = None

    def settings(self, bucket: str | None = None) -> dict[str, Any]:
        """image_service settings for this store, with a bucket of the caller's own (the service
        creates it)."""
        return {
            "image_storage": "s3",
            "s3_endpoint_url": self.url,
            "s3_bucket": bucket or f"test-{uuid.uuid4().hex[:12]}",
            "s3_access_key_id": ACCESS_KEY_ID,
            "s3_secret_access_key": SECRET_ACCESS_KEY,
            "s3_region": REGION,
        }

    def env(self, bucket: str | None = None) -> dict[str, str]:
        """The same as environment variables, for a service process."""
        return {key.upper(): str(value) for key, value in self.settings(bucket).items()}

    def client(self) -> Any:
        """A plain boto3 client, to look into the store as an operator would."""
        import boto3  # a dev dependency (moto brings it)

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )

    @staticmethod
    def client_for(settings: Any) -> Any:
        """The same for the store an image_service's settings name."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=settings.s3_secret_access_key.get_secret_value(),
        )
