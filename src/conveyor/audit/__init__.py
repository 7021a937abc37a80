"""The hash-chained audit log: append in the caller's transaction, list, verify, export."""
