"""The image builder's errors: one type, so a caller catches every failure of it at once."""

from __future__ import annotations


class ImageBuildError(RuntimeError):
    """Building, saving or importing an image failed; the message says what and how to fix."""
