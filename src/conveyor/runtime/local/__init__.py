"""The local runtime: bundles, a process supervisor, a weighted HTTP router and request metrics."""
