"""`switchboard demo`: bundled scenarios run end to end through real workers."""
