"""Users, tokens (stored hashed), roles and permission checks."""
