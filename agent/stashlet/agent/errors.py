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
    """Any error the agent defines; catch one of the three roots below rather than this."""


class RetryLater(AgentError):
    """Transient: trying the same thing again later may succeed."""


class ReportFailure(AgentError):
    """The work failed: record it in the session's status, an event and the metrics."""


class RefuseInput(AgentError):
    """The input or configuration is wrong: refuse, naming the object and field to fix."""
