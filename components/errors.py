"""Typed errors. Each message is one sentence naming what was wrong and what was expected."""


class PlatformError(Exception):
    """Base of every error the platform raises on purpose."""


class DataError(PlatformError, ValueError):
    """Input data that cannot be used: missing file or column, wrong type, empty table."""


class InvalidInputError(DataError):
    """A prediction request whose records do not match the model's input schema."""


class NotFittedError(PlatformError, RuntimeError):
    """An adapter asked to predict or save before fit."""


class RecipeError(PlatformError, ValueError):
    """A recipe that cannot be used; the message names the field (``components.recipe`` re-exports it)."""


class RequestTooLarge(PlatformError):
    """A request over a size limit that its Content-Length cannot show (pixels, images, texts): HTTP 413."""
