"""fal.ai: queue submission with signed completion webhooks (``provider``), Ed25519 signatures (``signature``)."""
