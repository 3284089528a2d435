"""The one error type the dev cluster raises, carrying the log lines that explain it."""

from __future__ import annotations


class DevClusterError(RuntimeError):
    """A step of bringing the cluster up or down failed.

    ``details`` holds the tail of the relevant log files, so the CLI can show the cause
    without the person having to know where Slurm or munged write their logs.
    """

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        if not self.details:
            return self.message
        return f"{self.message}\n{self.details}"


class DaemonStartError(DevClusterError):
    """Some daemons of a batch did not start; ``names`` says which, the others run."""

    def __init__(self, names: list[str], message: str, details: str = "") -> None:
        super().__init__(message, details)
        self.names = names
