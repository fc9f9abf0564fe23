"""The one exception type for problems a user can fix (bad input, bad params, failed gate)."""


class PipelineError(Exception):
    """Raised with a one-line message naming the file or key and what is wrong."""


class LabelsNeeded(Exception):
    """Not an error: the build stops for a person to label frames. Carries the screen that says
    what is needed and the command to run; the stage exits with EXIT_LABELS_NEEDED."""

    def __init__(self, screen: str):
        super().__init__(screen)
        self.screen = screen


EXIT_LABELS_NEEDED = 3
