"""The REST API (FastAPI): one router per resource, every route guarded by a named permission."""
