"""Billing: the credit ledger, credit packs, Stripe Checkout and Stripe events, App Store purchases."""
