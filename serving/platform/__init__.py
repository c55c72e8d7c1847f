"""Platforms run revisions' pods: local process groups (`local`) and Docker container pairs (`docker`)."""

from .base import (
    ImageOnlyError,
    Platform,
    PlatformError,
    PodInfo,
    PodPhase,
    PodRemovalHook,
    PodsListener,
    PodTemplate,
    require_command,
)
from .local import LocalPlatform, LocalPlatformStats
from .pod import RestartBackoff

__all__ = [
    "ImageOnlyError",
    "LocalPlatform",
    "LocalPlatformStats",
    "Platform",
    "PlatformError",
    "PodInfo",
    "PodPhase",
    "PodRemovalHook",
    "PodTemplate",
    "PodsListener",
    "RestartBackoff",
    "require_command",
]
