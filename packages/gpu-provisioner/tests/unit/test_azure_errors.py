"""Error classification for every class: quota, SKU/zone, throttling (Retry-After), credentials,
in-progress conflicts, not found, and transient 5xx/network; LRO failures (status 200)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from azure.identity import CredentialUnavailableError
from kaito_gpu_provisioner.azure.errors import classify, classify_code, retry_after_seconds
from kaito_gpu_provisioner.azure.fake_agentpools import http_error
from kaito_gpu_provisioner.provisioner import (
    AuthenticationFailed,
    CloudError,
    LaunchPending,
    NodeClaimNotFound,
    QuotaExceeded,
    SkuNotAvailable,
    Throttled,
)

QUOTA_MSG = (
    "Operation could not be completed as it results in exceeding approved "
    "standardNCSv3Family Cores quota. Current Limit: 0"
)


@pytest.mark.parametrize(
    ("status", "code", "message", "expected", "reason", "retryable"),
    [
        (400, "QuotaExceeded", QUOTA_MSG, QuotaExceeded, "QuotaExceeded", False),
        (400, "OperationNotAllowed", QUOTA_MSG, QuotaExceeded, "QuotaExceeded", False),
        (400, "InsufficientVCPUQuota", "not enough vCPU", QuotaExceeded, "QuotaExceeded", False),
        (
            400,
            "SkuNotAvailable",
            "Standard_NC6s_v3 is not available",
            SkuNotAvailable,
            "SkuNotAvailable",
            False,
        ),
        (
            200,
            "ZonalAllocationFailed",
            "no capacity in zone 2",
            SkuNotAvailable,
            "SkuNotAvailable",
            False,
        ),
        (200, "AllocationFailed", "allocation failed", SkuNotAvailable, "SkuNotAvailable", False),
        (429, "TooManyRequests", "slow down", Throttled, "Throttled", True),
        (
            401,
            "InvalidAuthenticationToken",
            "token expired",
            AuthenticationFailed,
            "AuthenticationFailed",
            False,
        ),
        (
            403,
            "AuthorizationFailed",
            "no write on agentPools",
            AuthenticationFailed,
            "AuthenticationFailed",
            False,
        ),
        (
            409,
            "OperationNotAllowed",
            "Operation is not allowed because there's an in progress create node pool operation",
            LaunchPending,
            "Launching",
            True,
        ),
        (404, "NotFound", "Agent Pool not found", NodeClaimNotFound, "NotFound", True),
        (500, "InternalServerError", "oops", CloudError, "CloudError", True),
        (503, "ServiceUnavailable", "later", CloudError, "CloudError", True),
        (400, "InvalidParameter", "bad osDiskSizeGB", CloudError, "CloudError", False),
    ],
)
def test_http_errors_are_classified(
    status: int, code: str, message: str, expected: type, reason: str, retryable: bool
) -> None:
    err = classify(http_error(status, code, message), context="creating agent pool 'ws1'")
    assert type(err) is expected
    assert err.reason == reason
    assert err.retryable is retryable
    assert f"({code})" in err.message and message in err.message
    assert err.message.startswith("creating agent pool 'ws1'")


def test_throttle_honours_retry_after_seconds_and_date() -> None:
    err = classify(http_error(429, "TooManyRequests", "x", {"Retry-After": "17"}), context="c")
    assert isinstance(err, Throttled) and err.retry_after == 17
    dated = http_error(
        429, "TooManyRequests", "x", {"Retry-After": "Wed, 25 Nov 2026 07:00:30 GMT"}
    )
    now = datetime(2026, 11, 25, 7, 0, 0, tzinfo=UTC)
    assert retry_after_seconds(dated, now=now) == 30
    ms = http_error(429, "TooManyRequests", "x", {"retry-after-ms": "1500"})
    assert retry_after_seconds(ms) == 1.5


def test_credential_failures_are_authentication_failed() -> None:
    for exc in (
        ClientAuthenticationError("AADSTS700024: client assertion is not within its valid time"),
        CredentialUnavailableError("WorkloadIdentityCredential: AZURE_FEDERATED_TOKEN_FILE unset"),
    ):
        err = classify(exc, context="creating agent pool 'ws1'")
        assert isinstance(err, AuthenticationFailed)
        assert not err.retryable


def test_network_errors_are_transient() -> None:
    err = classify(ServiceRequestError("connection refused"), context="reading pool")
    assert isinstance(err, CloudError) and err.retryable


def test_lro_failure_text_without_model_is_parsed() -> None:
    # What an LRO ending Failed looks like when only the text carries the code.
    from azure.core.exceptions import HttpResponseError

    err = classify(HttpResponseError(message=f"(QuotaExceeded) {QUOTA_MSG}"), context="c")
    assert isinstance(err, QuotaExceeded)


def test_provisioning_error_codes() -> None:
    assert isinstance(classify_code("SkuNotAvailable", "m"), SkuNotAvailable)
    assert isinstance(
        classify_code("ProvisioningFailed", "quota exceeded for family"), QuotaExceeded
    )
