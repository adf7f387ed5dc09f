"""Errors a user can cause. The CLIs turn them into a clear message and exit code 2."""


class UserError(Exception):
    """Bad input from the user (file, flag, config, missing weights): message + exit code 2."""

    exit_code = 2


class MissingWeightsError(UserError):
    """A model's weights are not on this machine."""


class CorruptFileError(UserError):
    """A file the tools read back (a run's status, checkpoint, scores...) is empty, truncated or of
    the wrong shape: the message names the file, what is wrong and what to do."""

    def __init__(self, path, problem: str, advice: str):
        super().__init__(f"{path}: {problem}; {advice}")
        self.path = str(path)


def report_error(e: Exception) -> int:
    """How every CLI answers bad input: `error: <message>` on stderr, and the exit code to return
    (a UserError's own, else 2)."""
    import sys

    print(f"error: {e}", file=sys.stderr)
    return getattr(e, "exit_code", 2)
