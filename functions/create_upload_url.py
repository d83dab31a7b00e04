"""POST /functions/v1/create-upload-url: where to PUT an image, or the stored copy of the same content."""

from __future__ import annotations

from fastapi import APIRouter

from shared import uploads
from shared.models import CreateUploadRequest, CreateUploadResponse
from shared.web import CurrentUser, lambda_handler

router = APIRouter()


@router.post(
    "/functions/v1/create-upload-url",
    response_model=CreateUploadResponse,
    response_model_exclude_none=True,
    tags=["uploads"],
)
def create_upload_url(body: CreateUploadRequest, user: CurrentUser) -> CreateUploadResponse:
    """Return a signed PUT target for the image, or its URL when this user already stored that content."""
    return uploads.create_upload(user, body)


handler = lambda_handler(router)
