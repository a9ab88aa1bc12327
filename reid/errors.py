"""The one exception type for expected failures (bad input, missing files, failed downloads)."""


class ReidError(Exception):
    """An expected failure: scripts print its message and exit non-zero, without a traceback."""
