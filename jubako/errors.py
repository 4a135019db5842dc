"""Errors raised by jubako. The CLI prints their message on one line and exits non-zero."""


class JubakoError(Exception):
    """Base class: an error a user can act on, with a message that says what went wrong."""


class InvalidTag(JubakoError):
    pass


class NotFound(JubakoError):
    pass


class AlreadyExists(JubakoError):
    pass


class InvalidBundle(JubakoError):
    """A bento or model on disk or in an archive does not match its manifest."""


class UnsafeArchive(InvalidBundle):
    """An archive member that could escape the bundle or is not a plain file or folder."""


class ConfigError(JubakoError):
    pass


class ServiceDefinitionError(JubakoError):
    pass
