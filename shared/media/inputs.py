"""A job's input image: its bytes from our storage (checked against its content hash) or from the web."""

from __future__ import annotations

from shared.media import images, uploads
from shared.media.storage import get_storage
from shared.settings import get_settings


def load_image(image_url: str) -> bytes:
    """The bytes of a job's input image, from our storage or (bounded, checked) from the web."""
    settings = get_settings()
    storage = get_storage()
    key = storage.key_for_url(image_url)
    if key is not None:
        data = storage.read(key, settings.max_image_bytes)
        uploads.check_content(key, data)
        return data
    return images.fetch(image_url, settings, max_bytes=settings.max_image_bytes)
