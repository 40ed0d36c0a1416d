"""Exceptions raised by lmcodec. Every failure to decode is one of these, never garbage."""


class LMCodecError(Exception):
    """Base class of every error lmcodec raises on purpose."""


class CorruptChunkError(LMCodecError, ValueError):
    """The chunk is truncated, corrupted, not an lmcodec chunk, or fails its checksum."""


class ModelNotFoundError(LMCodecError, LookupError):
    """The chunk was coded with a model (by hash or name) that is not installed here."""


class UnsupportedFormatError(LMCodecError, ValueError):
    """The chunk declares a format version or mode this build cannot read."""
