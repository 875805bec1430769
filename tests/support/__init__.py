"""Test helpers shared by scenario, e2e and bench code."""
