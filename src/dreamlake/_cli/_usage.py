"""The one error every command raises for a mistake in what the user asked for."""


class UsageError(Exception):
    """A mistake in what the user asked for: one line on stderr, exit status 2."""
