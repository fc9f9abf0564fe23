"""The one exception type for problems a user can fix (bad input, bad params, failed gate)."""


class PipelineError(Exception):
    """Raised with a one-line message naming the file or key and what is wrong."""
