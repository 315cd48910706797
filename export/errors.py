"""The exceptions `export` raises. The CLI turns each into a `click.ClickException`."""


class ExportError(Exception):
    """Base class of every error `export` raises on purpose."""


class RunDirError(ExportError):
    """The run directory is missing, incomplete or inconsistent (labels, config, model files)."""


class UnsupportedTokenizerError(ExportError):
    """The run's tokenizer cannot be embedded in the graph (for now only BERT-style WordPiece)."""


class VersionError(ExportError):
    """The base path or the requested version cannot be used (e.g. the version already exists)."""


class ParityError(ExportError):
    """The written SavedModel does not reproduce the in-memory model; the export was removed."""
