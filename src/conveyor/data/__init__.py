"""Data policies for environments: masked clones of production (and, later, synthetic seeding).

`masking.py` turns one value into its masked stand-in with a secret key; `rules.py` reads the
masking rules, checks them against a schema before a clone starts, and reports what was masked.
Both are pure: the clone that drives them against PostgreSQL lives elsewhere.
"""
