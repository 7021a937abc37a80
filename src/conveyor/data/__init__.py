"""Data policies for environments: synthetic seeding and masked clones of production (issue 8).

Pure: `masking.py` turns one value into its masked stand-in with a secret key, `fastmask.py` the
same for common text transforms in an unrolled form; `rules.py` reads the masking rules, checks
them against a schema before a clone starts, and reports what was masked; `subset.py` plans which
rows a clone keeps; `synthetic.py` generates rows for a schema; `catalog.py` holds the schema as
values. Against PostgreSQL: `catalog.read_catalog`, `copying.py` (COPY streaming), `clone.py` (the
build-aside-then-swap pipeline, ADR 0015) and `seeding.py`. `service.py` is what the API calls.
"""
