"""The project's exception hierarchy: every message says what, where, and what to do."""


class MmselectError(Exception):
    """Base class for errors the CLI reports as one clean line (exit code 2)."""


class RecordError(MmselectError):
    """A record or input file is malformed (raised only in --strict mode or for whole-file faults)."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None, record_id: str | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}" if line is not None else str(path)
        if record_id is not None:
            where = f"{where} (id {record_id!r})" if where else f"id {record_id!r}"
        super().__init__(f"{where}: {message}" if where else message)
        self.path, self.line, self.record_id, self.reason = path, line, record_id, message


class FormatError(MmselectError):
    """The input format could not be detected or is not supported."""


class ModelNotAvailable(MmselectError):
    """A model is not present locally and cannot be downloaded (offline)."""

    def __init__(self, model: str, flag: str, detail: str = ""):
        msg = (
            f"model {model!r} is not available offline"
            + (f" ({detail})" if detail else "")
            + f". Download it on a connected machine into the HF cache, or pass a local folder with {flag} PATH."
        )
        super().__init__(msg)
        self.model, self.flag = model, flag


class BudgetError(MmselectError):
    """A selection budget is not a valid count or fraction."""


class SettingsError(MmselectError):
    """A setting is out of range or contradicts another (checked when a typed config is built)."""
