"""Typed errors. Library code raises these; the CLI turns each into one line and a non-zero exit."""


class CodesignError(Exception):
    """A user-facing error: the message is one line that names the problem (file, key, value)."""

    exit_code = 2


class ConfigError(CodesignError):
    """A hardware config, recipe or model config is invalid."""


class TraceError(CodesignError):
    """A trace store is missing, corrupt, truncated or does not match what was asked of it."""


class ModelError(CodesignError):
    """A checkpoint cannot be loaded, upcycled or saved as asked."""


class OutputExistsError(CodesignError):
    """An output path exists and --force was not given: nothing is overwritten silently."""

    def __init__(self, path):
        super().__init__(f"{path} already exists (pass --force to overwrite)")
        self.path = path
