"""`python -m conveyor` runs the CLI (the background server is started this way)."""

from conveyor.cli.main import run

run()
