"""The exception tree of dataplat.

Every error a user can cause or meet derives from :class:`DataplatError`; the CLI
prints its message and exits non-zero instead of showing a traceback.
"""

from __future__ import annotations


class DataplatError(Exception):
    """Base class of every error dataplat raises on purpose."""

    exit_code = 1


class ConfigError(DataplatError):
    """A setting (file, environment, flag) is missing or has a bad value."""

    exit_code = 2


class InventoryError(ConfigError):
    """The inventory does not validate; ``problems`` lists every problem found."""

    def __init__(self, message: str, problems: list | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])


class PortInUseError(DataplatError):
    """A port the platform needs is taken by a process dataplat did not start."""


class DeployError(DataplatError):
    """A deploy or teardown run (Ansible) failed."""


class NotDeployedError(DataplatError):
    """The command needs a deployed platform and there is none under the home."""


class ComponentError(DataplatError):
    """A platform component did not answer or answered with an error."""
