"""mirrorkit test suite."""
