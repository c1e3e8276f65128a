"""The operator's version, from the installed distribution's metadata."""

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("stackforge-operator")
except PackageNotFoundError:  # running from a source tree without installing
    VERSION = "0.0.0+unknown"
