"""A BackupConfiguration's restore drill as its annotations ask for it: pure.

- ``stashlet.dev/restore-drill-schedule``: a cron schedule (as ``spec.schedule`` takes it); its presence
  turns the drill on, its removal off;
- ``stashlet.dev/restore-drill-image``: the image the optional command runs in, with the restored data at
  ``/restore-drill/<host>/<backed-up path>`` (the agent image has no shell, so the command needs one);
- ``stashlet.dev/restore-drill-command``: the command, a JSON array of strings
  (``["sh", "-c", "test -s /restore-drill/host-0/data/db.sql"]``) or a command line split as a shell
  splits words (no variables, no pipes); without it the image's own entrypoint runs.

A problem names the annotation and its value: a schedule the CronJob controller would refuse, a command
without an image, a command that is empty or does not parse, an image or command without a schedule.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from stashlet.api.schedules import schedule_problem

PREFIX: Final = "stashlet.dev/"
ANNOTATION_SCHEDULE: Final = f"{PREFIX}restore-drill-schedule"
ANNOTATION_IMAGE: Final = f"{PREFIX}restore-drill-image"
ANNOTATION_COMMAND: Final = f"{PREFIX}restore-drill-command"
ANNOTATIONS: Final = (ANNOTATION_SCHEDULE, ANNOTATION_IMAGE, ANNOTATION_COMMAND)


@dataclass(frozen=True)
class DrillSpec:
    """A valid drill: its schedule, and the image and command to run on the restored data (if any)."""

    schedule: str
    image: str | None = None
    command: tuple[str, ...] | None = None

    @property
    def runs_command(self) -> bool:
        """True when a container of the user's image runs after the restore."""
        return self.image is not None


@dataclass(frozen=True)
class DrillRequest:
    """What the annotations say: nothing (``spec`` None, no problems), a drill, or problems."""

    spec: DrillSpec | None
    problems: tuple[str, ...] = ()

    @property
    def wanted(self) -> bool:
        """True when any drill annotation is set."""
        return self.spec is not None or bool(self.problems)


def drill_annotations(annotations: Mapping[str, str] | None) -> dict[str, str]:
    """The drill's annotations among ``annotations``."""
    return {k: v for k, v in (annotations or {}).items() if k in ANNOTATIONS}


def parse_command(value: str) -> tuple[str, ...]:
    """The command an annotation value gives; ValueError saying why it is not one."""
    text = value.strip()
    if text.startswith("["):
        parsed = json.loads(text)
        if not isinstance(parsed, list) or not all(isinstance(p, str) for p in parsed):
            raise ValueError("a JSON command must be an array of strings")
        words = tuple(parsed)
    else:
        words = tuple(shlex.split(text))
    if not words or not words[0]:
        raise ValueError("the command is empty")
    return words


def drill_request(annotations: Mapping[str, str] | None) -> DrillRequest:
    """The drill ``annotations`` ask for (module docstring)."""
    found = drill_annotations(annotations)
    if not found:
        return DrillRequest(None)
    problems: list[str] = []
    schedule = found.get(ANNOTATION_SCHEDULE, "").strip()
    image = found.get(ANNOTATION_IMAGE, "").strip() or None
    raw_command = found.get(ANNOTATION_COMMAND)
    if not schedule:
        given = ", ".join(k for k in ANNOTATIONS if k in found)
        problems.append(f"annotation {ANNOTATION_SCHEDULE} is missing or empty, but {given} is set")
    else:
        problem = schedule_problem(schedule, f"annotation {ANNOTATION_SCHEDULE}")
        if problem is not None:
            problems.append(problem)
    if ANNOTATION_IMAGE in found and image is None:
        problems.append(f"annotation {ANNOTATION_IMAGE} is empty")
    command: tuple[str, ...] | None = None
    if raw_command is not None:
        try:
            command = parse_command(raw_command)
        except ValueError as exc:
            problems.append(f"annotation {ANNOTATION_COMMAND}: {raw_command!r} is not a command: {exc}")
        if image is None:
            problems.append(
                f"annotation {ANNOTATION_COMMAND} needs annotation {ANNOTATION_IMAGE}: the command runs in a "
                "container of that image (the agent image has no shell)"
            )
    if problems:
        return DrillRequest(None, tuple(problems))
    return DrillRequest(DrillSpec(schedule, image, command))
