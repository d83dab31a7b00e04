"""Every error i2v raises, and the one JSON shape they are rendered in.

The tree (HTTP status, stable ``code``)::

    I2VError                          500 internal
      BadRequest                      400 bad_request
        InvalidField                  400 invalid_field         (details.field, details.allowed)
        ModelUnavailable              400 model_unavailable
        IdempotencyKeyMissing         400 idempotency_key_missing
        InvalidSignature              400 invalid_signature     (a webhook whose signature does not verify)
        AppStoreDataRefused           400 app_store_data_refused (Apple's library refused signed App Store data;
                                                                 details.reason: its verification status)
      Unauthorized                    401 unauthorized
      InsufficientCredits             402 insufficient_credits
        CampaignBudgetExceeded        402 campaign_budget_exceeded (details.remaining: the budget left)
      Forbidden                       403 forbidden
        AppStoreAccountMismatch       403 app_store_account_mismatch (a purchase made for another account)
        InsufficientScope             403 insufficient_scope    (details.scope: the scope the API key lacks)
      NotFound                        404 not_found
        UnknownModel                  404 unknown_model
        JobNotFound                   404 job_not_found
        ClientNotFound                404 client_not_found
        CampaignNotFound              404 campaign_not_found
        ApiKeyNotFound                404 api_key_not_found
        WebhookNotFound               404 webhook_not_found     (an endpoint or a delivery)
        UnknownCreditPack             404 unknown_credit_pack   (details.allowed)
        AppStoreTransactionNotFound   404 app_store_transaction_not_found
      MethodNotAllowed                405 method_not_allowed
      IdempotencyInFlight             409 idempotency_in_flight
      InvalidTransition               409 invalid_transition
      UploadAlreadyStored             409 upload_already_stored (an upload is written once; it never changes)
      Archived                        409 archived              (an archived client or campaign takes no new work)
      PayloadTooLarge                 413 payload_too_large
      IdempotencyKeyReused            422 idempotency_key_reused
      RateLimited                     429 rate_limited          (Retry-After and RateLimit headers; nothing charged)
      ProviderError                   502 provider_error
        ProviderJobFailed             502 provider_job_failed   (terminal: the job fails and is refunded)
        ProviderUnavailable           503 provider_unavailable  (retryable)
          ProviderRateLimited         503 provider_rate_limited
          SubmitOutcomeUnknown        503 provider_submit_unknown (never resubmitted: webhook or reconciler settles)
          MirrorError                 503 mirror_failed         (the provider's video could not be copied this time)
      ServiceUnavailable              503 service_unavailable
        NotConfigured                 503 service_unavailable   (details.setting: the variable to set; expected,
                                                                 so logged as a warning without a traceback)

Rendered as ``{"error": {"code", "message", "details", "request_id"}}``; ``details`` names the offending
field and the allowed values where there are any. No tracebacks, SQL or secrets are ever rendered.
"""

from __future__ import annotations

from typing import Any, ClassVar


class I2VError(Exception):
    """An internal error."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or (self.__doc__ or self.code).strip().splitlines()[0]
        self.details: dict[str, Any] = {k: v for k, v in details.items() if v is not None}
        self.headers: dict[str, str] = {}  # response headers the error answers with (e.g. RateLimit)
        super().__init__(self.message)

    def to_json(self, request_id: str | None = None) -> dict[str, Any]:
        """The one error shape every endpoint answers with."""
        body: dict[str, Any] = {"code": self.code, "message": self.message, "details": self.details}
        if request_id:
            body["request_id"] = request_id
        return {"error": body}


class BadRequest(I2VError):
    """The request is malformed."""

    status = 400
    code = "bad_request"


class InvalidField(BadRequest):
    """A field has a value that is not allowed."""

    code = "invalid_field"

    def __init__(self, field: str, message: str, allowed: list[Any] | None = None, **details: Any) -> None:
        super().__init__(message, field=field, allowed=allowed, **details)
        self.field = field


class ModelUnavailable(BadRequest):
    """The model exists but cannot be used right now."""

    code = "model_unavailable"


class IdempotencyKeyMissing(BadRequest):
    """This operation requires an Idempotency-Key header (1-255 printable ASCII characters)."""

    code = "idempotency_key_missing"


class InvalidSignature(BadRequest):
    """The webhook signature is missing, does not match the body, or is too old."""

    code = "invalid_signature"


class AppStoreDataRefused(BadRequest):
    """The App Store data is not signed by Apple for this app and environment."""

    code = "app_store_data_refused"


class Unauthorized(I2VError):
    """A valid bearer token is required."""

    status = 401
    code = "unauthorized"


class InsufficientCredits(I2VError):
    """Not enough credits for this request."""

    status = 402
    code = "insufficient_credits"


class CampaignBudgetExceeded(InsufficientCredits):
    """This request costs more than the campaign's remaining budget."""

    code = "campaign_budget_exceeded"


class Forbidden(I2VError):
    """This is not allowed for the caller."""

    status = 403
    code = "forbidden"


class AppStoreAccountMismatch(Forbidden):
    """This App Store purchase was made for another account (its appAccountToken is not the caller's user id)."""

    code = "app_store_account_mismatch"


class InsufficientScope(Forbidden):
    """The API key is not allowed to do this (its scopes do not include the one required)."""

    code = "insufficient_scope"


class NotFound(I2VError):
    """Not found."""

    status = 404
    code = "not_found"


class UnknownModel(NotFound):
    """No model has that id or slug."""

    code = "unknown_model"


class JobNotFound(NotFound):
    """No such job for this user."""

    code = "job_not_found"


class ClientNotFound(NotFound):
    """No such client for this user."""

    code = "client_not_found"


class CampaignNotFound(NotFound):
    """No such campaign for this user."""

    code = "campaign_not_found"


class ApiKeyNotFound(NotFound):
    """No such API key for this user."""

    code = "api_key_not_found"


class WebhookNotFound(NotFound):
    """No such webhook endpoint or delivery for this user."""

    code = "webhook_not_found"


class UnknownCreditPack(NotFound):
    """No credit pack has that id."""

    code = "unknown_credit_pack"


class AppStoreTransactionNotFound(NotFound):
    """The App Store has no transaction with that id for this app."""

    code = "app_store_transaction_not_found"


class MethodNotAllowed(I2VError):
    """This endpoint does not accept that method."""

    status = 405
    code = "method_not_allowed"


class IdempotencyInFlight(I2VError):
    """A request with this Idempotency-Key is still being processed; retry later with the same key."""

    status = 409
    code = "idempotency_in_flight"


class InvalidTransition(I2VError):
    """The job cannot make that state change."""

    status = 409
    code = "invalid_transition"


class UploadAlreadyStored(I2VError):
    """This upload is already stored; an upload is written once and never replaced."""

    status = 409
    code = "upload_already_stored"


class Archived(I2VError):
    """The client or campaign is archived and takes no new work."""

    status = 409
    code = "archived"


class EndpointDisabled(I2VError):
    """The webhook endpoint is disabled: enable it first."""

    status = 409
    code = "endpoint_disabled"


class PayloadTooLarge(I2VError):
    """The content is larger than allowed."""

    status = 413
    code = "payload_too_large"


class IdempotencyKeyReused(I2VError):
    """This Idempotency-Key was already used with a different request body."""

    status = 422
    code = "idempotency_key_reused"


class RateLimited(I2VError):
    """Too many requests; retry after the time in Retry-After (nothing was charged)."""

    status = 429
    code = "rate_limited"


class ProviderError(I2VError):
    """The video provider answered with an error."""

    status = 502
    code = "provider_error"


class ProviderJobFailed(ProviderError):
    """The provider could not generate this video."""

    code = "provider_job_failed"


class ProviderUnavailable(ProviderError):
    """The video provider cannot be reached right now."""

    status = 503
    code = "provider_unavailable"


class ProviderRateLimited(ProviderUnavailable):
    """The video provider is rate limiting us."""

    code = "provider_rate_limited"


class SubmitOutcomeUnknown(ProviderUnavailable):
    """The submission may or may not have reached the provider."""

    code = "provider_submit_unknown"


class MirrorError(ProviderUnavailable):
    """The provider's video could not be copied this time."""

    code = "mirror_failed"


class ServiceUnavailable(I2VError):
    """A service this endpoint needs is not configured or not reachable."""

    status = 503
    code = "service_unavailable"


class NotConfigured(ServiceUnavailable):
    """This deployment has not configured a feature the endpoint needs (an operator's choice, not a failure)."""

    def __init__(self, message: str, *, setting: str, **details: Any) -> None:
        super().__init__(message, setting=setting, **details)
