"""Re-export of :mod:`stashlet.api.durations` until the agent modules import it from there."""

from stashlet.api.durations import format_duration, parse_duration

__all__ = ["format_duration", "parse_duration"]
