"""Classify Azure SDK failures into the provisioner's typed errors.

Why: gpu-provisioner retries every cloud error blindly and leaves ``Launched=Unknown/LaunchFailed``
forever. We map each failure to a class the controller can act on and a user can read:

=====================  =========================================  ==============================
class                  recognised by                              behaviour
=====================  =========================================  ==============================
QuotaExceeded          codes like QuotaExceeded, InsufficientVCPU  Launched=False, slow retry
                       Quota, or any code whose message mentions
                       quota (AKS wraps compute errors)
SkuNotAvailable        SkuNotAvailable, ZonalAllocationFailed,     Launched=False, slow retry
                       AllocationFailed, Overconstrained*, ...
Throttled              HTTP 429 or TooManyRequests/Throttled       Launched=Unknown, retry after
                                                                   the cloud's Retry-After
AuthenticationFailed   ClientAuthenticationError (token), HTTP     Launched=False, slow retry
                       401/403, Authentication/Authorization codes
LaunchPending          409 "in progress ... operation"             not a failure: poll again
NodeClaimNotFound      HTTP 404 / ResourceNotFoundError            caller decides
CloudError             5xx, network, anything else                 Launched=Unknown, backoff
=====================  =========================================  ==============================

The cloud's own code and message are kept in the error message, which becomes the condition
message. Long-running operations that end ``Failed`` raise ``HttpResponseError`` with the poll's
status (200) and the operation's error code; a failed pool's ``status.provisioningError`` goes
through `classify_code` the same way.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from kaito_gpu_provisioner.provisioner import (
    AuthenticationFailed,
    CloudError,
    LaunchPending,
    NodeClaimNotFound,
    ProvisionerError,
    QuotaExceeded,
    SkuNotAvailable,
    Throttled,
)

QUOTA_CODES = frozenset(
    c.lower()
    for c in (
        "QuotaExceeded",
        "InsufficientVCPUQuota",
        "ErrCode_InsufficientVCPUQuota",
        "SubscriptionQuotaExceeded",
        "ResourceQuotaExceeded",
        "OperationNotAllowedQuotaExceeded",
    )
)
SKU_CODES = frozenset(
    c.lower()
    for c in (
        "SkuNotAvailable",
        "SKUNotAvailable",
        "ZonalAllocationFailed",
        "AllocationFailed",
        "OverconstrainedAllocationRequest",
        "OverconstrainedZonalAllocationRequest",
        "VMSizeNotSupported",
        "ErrCode_VMSizeNotSupported",
        "SkuNotSupportedInZone",
    )
)
AUTH_CODES = frozenset(
    c.lower()
    for c in (
        "AuthenticationFailed",
        "AuthorizationFailed",
        "InvalidAuthenticationToken",
        "InvalidAuthenticationTokenTenant",
        "ExpiredAuthenticationToken",
        "LinkedAuthorizationFailed",
        "Unauthorized",
        "Forbidden",
    )
)
THROTTLE_CODES = frozenset(c.lower() for c in ("TooManyRequests", "Throttled", "Throttling"))
_IN_PROGRESS = re.compile(r"in progress .*operation|operation .*in progress", re.IGNORECASE)
_CODE_IN_TEXT = re.compile(r"^\((?P<code>[A-Za-z0-9_]+)\)")


def classify_code(
    code: str | None, message: str, *, status: int | None = None, context: str = ""
) -> ProvisionerError:
    """Map an ARM error code (and HTTP status, when known) to a typed provisioner error."""
    key = (code or "").lower()
    text = f"{context}: ({code}) {message}" if context else f"({code}) {message}"
    if status == 429 or key in THROTTLE_CODES:
        return Throttled(text)
    if status in (401, 403) or key in AUTH_CODES:
        return AuthenticationFailed(text)
    lowered = message.lower()
    # AKS often wraps the compute error (e.g. ReconcileVMSSAgentPoolFailed) and keeps the real
    # cause only in the message, so the message is checked too.
    if key in QUOTA_CODES or "quota" in lowered:
        return QuotaExceeded(text)
    if key in SKU_CODES or "skunotavailable" in lowered or "not available in location" in lowered:
        return SkuNotAvailable(text)
    if status == 404 or key in ("notfound", "resourcenotfound"):
        return NodeClaimNotFound(text)
    if status == 409 and _IN_PROGRESS.search(message):
        return LaunchPending(text)
    retryable = status is None or status >= 500 or status in (408, 409)
    return CloudError(text, retryable=retryable)


def classify(err: BaseException, *, context: str) -> ProvisionerError:
    """Map an exception from the SDK (or the credential) to a typed provisioner error."""
    if isinstance(err, ProvisionerError):
        return err
    if isinstance(err, ClientAuthenticationError):
        return AuthenticationFailed(f"{context}: {_first_line(err)}")
    if isinstance(err, ResourceNotFoundError):
        return NodeClaimNotFound(f"{context}: {_first_line(err)}")
    if isinstance(err, ServiceRequestError | ServiceResponseError):
        return CloudError(f"{context}: {_first_line(err)}")
    if isinstance(err, HttpResponseError):
        code, message = _code_and_message(err)
        status = err.status_code if err.status_code and err.status_code >= 300 else None
        classified = classify_code(code, message, status=status, context=context)
        if isinstance(classified, Throttled):
            classified.retry_after = retry_after_seconds(err)
        return classified
    return CloudError(f"{context}: {err}")


def retry_after_seconds(err: HttpResponseError, *, now: datetime | None = None) -> float | None:
    """The response's Retry-After (seconds or HTTP date, or retry-after-ms), if any."""
    response = err.response
    if response is None:
        return None
    headers: Any = getattr(response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 1000.0), ("x-ms-retry-after-ms", 1000.0)):
        raw = headers.get(name)
        if raw:
            try:
                return max(float(raw) / scale, 0.0)
            except ValueError:
                pass
    raw = headers.get("Retry-After")
    if not raw:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def _code_and_message(err: HttpResponseError) -> tuple[str | None, str]:
    detail = err.error
    if detail is not None and getattr(detail, "code", None):
        return str(detail.code), str(getattr(detail, "message", "") or "")
    text = _first_line(err)
    match = _CODE_IN_TEXT.match(text)
    if match:
        return match.group("code"), text[match.end() :].strip()
    return None, text


def _first_line(err: BaseException) -> str:
    text = str(getattr(err, "message", None) or err)
    return " ".join(text.split())
