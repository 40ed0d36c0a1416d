"""lmcodec: lossless numcodecs codec with an integer-exact byte-level Transformer and rANS.

Importing the package is light (numpy and numcodecs only); the model runtime is loaded on first
use. ``import lmcodec`` registers the codec with numcodecs under the id ``"lmcodec"``.
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from .codec import LMCodec
from .errors import CorruptChunkError, LMCodecError, ModelNotFoundError, UnsupportedFormatError

try:
    __version__ = _version("lmcodec")
except _PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "LMCodec",
    "LMCodecError",
    "CorruptChunkError",
    "ModelNotFoundError",
    "UnsupportedFormatError",
    "__version__",
]
