"""Errors a user can act on. `str(e)` is shown to the user as is (CLI: one stderr line; app: st.error)."""
from __future__ import annotations


class WinnowError(Exception):
    """Base of every error caused by input or state a user can fix."""


class DataError(WinnowError, ValueError):
    """Bad file, missing or ambiguous column, empty split, unusable labels."""


class WorkspaceError(WinnowError):
    """Missing run or dataset, locked or corrupt database."""


class ModelError(WinnowError):
    """Model not found (offline), not loadable, out of memory."""


class JobError(WinnowError):
    """A background job failed, was cancelled or cannot be resumed."""


class WinnowWarning(UserWarning):
    """Degenerate but valid input or results (duplicates, truncated texts, fewer clusters than asked)."""


class Cancelled(BaseException):
    """A step was stopped on purpose (the job was cancelled: SIGTERM). A BaseException, like KeyboardInterrupt, so
    that no `except Exception` swallows it; runs it interrupts are recorded as cancelled, not failed."""


class OptionError(WinnowError, ValueError):
    """A method option out of its range or of the wrong type; names the option, what is allowed and what was given."""


def user_warning(message: object, category: type[Warning]) -> str | None:
    """A library warning (scikit-learn, numpy) in a user's words, or None when it is not one Winnow rewords.

    Winnow's own `WinnowWarning`s are already worded for users and pass through unchanged.
    """
    if issubclass(category, WinnowWarning):
        return str(message)
    text = " ".join(str(message).split())
    detail = text if len(text) <= 140 else text[:139] + "…"
    if category.__name__ == "ConvergenceWarning":
        return ("a classifier inside this step stopped before fully converging (the iteration limit was reached); "
                f"its results are usable but a little less exact (scikit-learn said: {detail})")
    if issubclass(category, RuntimeWarning):
        return ("a numeric step met invalid or extreme values (e.g. a division by zero on identical or constant "
                f"embeddings); affected numbers may be missing or less exact (numpy said: {detail})")
    return None
