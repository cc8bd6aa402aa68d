"""The offline app world: seeded SQLite worlds of everyday apps, task templates with unit tests and reference
solutions, a sandbox for the agent's code, and an HTTP server speaking the AppWorld environment protocol."""

from .server import OfflineAppWorldServer, default_offline_server_url
from .tasks import TEMPLATES, OfflineTask, build_task, parse_task_id, task_ids

__all__ = ["TEMPLATES", "OfflineAppWorldServer", "OfflineTask", "build_task", "default_offline_server_url",
           "parse_task_id", "task_ids"]
