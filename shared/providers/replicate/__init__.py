"""Replicate: official-model predictions with signed webhooks (``provider``), Standard Webhooks signatures
(``signature``)."""
