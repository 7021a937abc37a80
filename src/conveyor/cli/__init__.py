"""The `conveyor` command line: thin Typer commands over the API client, with readable errors."""
