"""Jobs: the generation service (validate, price, debit, submit), provider updates, mirroring, reconciliation,
listing and the catalog as the API shows it."""
