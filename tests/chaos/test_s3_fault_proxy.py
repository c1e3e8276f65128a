"""The S3 fault proxy in its HTTPS mode (for pgBackRest, which speaks nothing else):
it serves the S3 server's own certificate, passes signed requests through to the
server over HTTPS, and injects its faults there too."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.s3_fault_proxy import S3FaultProxy
from tests.support.s3_server import S3Server, available

pytestmark = pytest.mark.skipif(not available(), reason="the S3 server (moto) is not installed")


@pytest.fixture(scope="module")
def tls_s3() -> Iterator[S3Server]:
    server = S3Server(tls=True)
    server.start()
    yield server
    server.stop()


def test_the_proxy_terminates_tls_with_the_servers_names_and_injects_errors(
        tls_s3: S3Server) -> None:
    assert tls_s3.serving_tls is not None and tls_s3.ca_bundle is not None
    bucket = tls_s3.create_bucket()
    with S3FaultProxy(tls_s3.endpoint,
                      serving=(tls_s3.serving_tls.cert, tls_s3.serving_tls.key),
                      upstream_ca=tls_s3.ca_bundle) as proxy:
        assert proxy.endpoint.startswith("https://127.0.0.1:")
        # The client checks the proxy's certificate against the server's CA, and
        # signs for the proxy's address, which the server then checks.
        s3 = boto3.client(
            "s3", endpoint_url=proxy.endpoint, region_name=tls_s3.region,
            aws_access_key_id=tls_s3.credentials.access_key_id,
            aws_secret_access_key=tls_s3.credentials.secret_access_key,
            config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
            verify=str(tls_s3.ca_bundle))
        s3.put_object(Bucket=bucket, Key="through/proxy", Body=b"payload")
        assert tls_s3.client().get_object(
            Bucket=bucket, Key="through/proxy")["Body"].read() == b"payload"
        proxy.fail_all(500)
        with pytest.raises(ClientError) as refused:
            s3.get_object(Bucket=bucket, Key="through/proxy")
        assert refused.value.response["Error"]["Code"] == "InternalError"
        proxy.heal()
        assert s3.get_object(Bucket=bucket, Key="through/proxy")["Body"].read() == b"payload"
        assert proxy.failed == 1
