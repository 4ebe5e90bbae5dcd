"""The agent's error tree: every exception the agent defines sits under exactly one of three roots.

The root says what the code that catches it can do:

- :class:`RetryLater`: the condition is transient; the same request may succeed later without anyone
  changing anything (a locked repository, a Pushgateway that does not answer or answers 5xx). Only
  these are retried, and only at the I/O edge that met them.
- :class:`ReportFailure`: the work ran and failed (restic failed or was interrupted, a backup left
  files unread, a restore did not put everything back, a deadline passed). Record it where the user
  looks: the session's status, an event, the metrics. A new session may succeed; this one is over.
- :class:`RefuseInput`: the input or the configuration is wrong (a setting, the storage Secret, the
  retention policy, the restore plan, the repository's password or location). Refuse the work and
  name the object and field to fix; running it again unchanged fails the same way.
"""

from __future__ import annotations


class AgentError(Exception):
    """Any error the agent defines; catch one of the three roots below rather than this.

    ``message`` is the text for people (it names the object and field when the input is at fault);
    ``reason`` is a CamelCase word for a Kubernetes condition or event: the one given when the error is
    raised, else the class's own, which is the class name unless the class sets another.
    """

    reason: str = "AgentError"

    def __init_subclass__(cls, **kwargs: object) -> None:
        """A class that sets no ``reason`` of its own is named by it."""
        super().__init_subclass__(**kwargs)
        if "reason" not in cls.__dict__:
            cls.reason = cls.__name__

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        """Keep the message and, when given, a reason for this occurrence."""
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class RetryLater(AgentError):
    """Transient: trying the same thing again later may succeed."""


class ReportFailure(AgentError):
    """The work failed: record it in the session's status, an event and the metrics."""


class RefuseInput(AgentError):
    """The input or configuration is wrong: refuse, naming the object and field to fix."""
