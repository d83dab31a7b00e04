"""Billing: the credit ledger, credit packs and Stripe Checkout, Stripe events."""
