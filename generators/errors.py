"""Errors a user can cause. The CLIs turn them into a clear message and exit code 2."""


class UserError(Exception):
    """Bad input from the user (file, flag, config, missing weights): message + exit code 2."""

    exit_code = 2


class MissingWeightsError(UserError):
    """A model's weights are not on this machine."""
