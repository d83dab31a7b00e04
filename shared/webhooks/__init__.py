"""Signed outgoing webhooks (Standard Webhooks): destinations, signatures, endpoints and delivery."""
