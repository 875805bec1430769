"""Robustness: fuzzing, connection storms, security properties and the soak run."""
