"""Direct deployments (the recreate path development environments use) and runtime views."""
