"""IRT item banks and computerized adaptive testing (docs/item-banks.md)."""
