"""The exceptions tfinetune raises. The CLI turns each into a `click.ClickException`."""


class TfinetuneError(Exception):
    """Base class of every error tfinetune raises on purpose."""


class ConfigError(TfinetuneError):
    """An option or config file is invalid (unknown key, bad value, conflicting options)."""


class DataError(TfinetuneError):
    """A data file is missing, empty or has a bad row. The message names the file and row."""


class ModelError(TfinetuneError):
    """A model or tokenizer cannot be loaded or does not fit the task."""


class RunDirError(TfinetuneError):
    """An output/run directory is not in the expected state (e.g. finished run, other config)."""


class ScoringError(TfinetuneError):
    """Bulk scoring could not start (server unreachable, bad input file)."""


class ClusterError(TfinetuneError):
    """A multi-worker training cluster lost a worker (stopped, or unreachable)."""
