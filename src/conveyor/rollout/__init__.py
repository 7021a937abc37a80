"""Progressive rollouts: pure planners for recreate, blue/green and canary, and the analysis judging them."""
