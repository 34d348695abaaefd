"""codesign: co-design bank-sparse LLMs and the bank-structured accelerators that run them."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("codesign")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.1.0"
