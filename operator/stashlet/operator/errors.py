"""The operator's error tree: every exception the operator defines sits under one of two roots.

The root says what the code that meets it does:

- :class:`RetryLater`: not yet. Something the object needs is not ready (its configuration is not Ready
  yet, a Job of an earlier session of the same name is still on its way out); the work queue puts the
  item back after :attr:`RetryLater.delay`, without counting a failure.
- :class:`RefuseInput`: the input is wrong (an auto-backup annotation, a blueprint's unknown variable);
  the message names the object and field. It is reported where the user looks (an event, a condition)
  and never retried as it is: the watches bring the change that cures it.

What the operator reports as the outcome of a reconcile (a condition False, a Warning event) is written
to the object, not raised. Errors the API server answers are the Kubernetes edge's
(:mod:`stashlet.kube.errors`); the work queue retries those with backoff.
"""

from __future__ import annotations


class OperatorError(Exception):
    """Any error the operator defines; catch one of the roots below rather than this."""

    def __init__(self, message: str) -> None:
        """Keep ``message`` (for people: it names the object and field)."""
        super().__init__(message)
        self.message = message


class RetryLater(OperatorError):
    """Not yet: handle the item again after ``delay`` seconds."""

    def __init__(self, message: str, *, delay: float) -> None:
        """Say why, and when to look again."""
        super().__init__(message)
        self.delay = delay


class RefuseInput(OperatorError):
    """The input is wrong: report it on the object, do not retry until it changes."""
