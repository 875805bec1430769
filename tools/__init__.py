"""Developer tooling that is not part of the installed spambridge package."""
