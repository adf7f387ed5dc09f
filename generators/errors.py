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
