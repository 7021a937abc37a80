"""Applied state of conveyor.yaml: spec revisions, plans, and the environments they define."""
