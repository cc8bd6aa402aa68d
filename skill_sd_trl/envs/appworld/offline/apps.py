"""The offline apps: every API the agent can call as ``apis.<app>.<api>(...)``, with its documentation.

Each API is a plain function ``(ctx, **kwargs) -> JSON-able`` registered with :func:`api`, which also records
the documentation that the ``api_docs`` app serves. :func:`call_api` validates the request (known app and
API, known parameters, required parameters present, simple type checks, access token valid for the app)
before running the function against the episode's SQLite connection. Failures raise :class:`ApiError`
with an HTTP-like status code; the sandbox worker turns it into a Python exception in the agent's code.

All apps here are written from scratch for skill-sd-trl.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .world import ACCOUNT_APPS, iso

MAX_PAGE_LIMIT = 20


class ApiError(Exception):
    """A failed API call: ``status`` is an HTTP-like code, ``message`` is shown to the agent."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Param:
    name: str
    type: str  # "string" | "integer" | "number" | "boolean" | "list" | "any"
    description: str
    required: bool = True
    default: Any = None


@dataclass
class ApiSpec:
    app: str
    name: str
    description: str
    params: list[Param]
    func: Callable[..., Any]
    returns: str
    needs_auth: bool

    def doc(self) -> dict[str, Any]:
        params = [] if not self.needs_auth else [
            {"name": "access_token", "type": "string", "required": True, "default": None,
             "description": f"Access token obtained from apis.{self.app}.login(...)."}]
        params += [{"name": p.name, "type": p.type, "required": p.required, "default": p.default,
                    "description": p.description} for p in self.params]
        return {"app_name": self.app, "api_name": self.name, "description": self.description,
                "parameters": params, "response_schemas": {"success": self.returns, "failure": {"message": "string"}}}


@dataclass
class ApiContext:
    """What an API function may touch: the episode database and its frozen clock."""

    conn: sqlite3.Connection
    now: datetime
    token_salt: str = ""
    calls: int = field(default=0)

    def one(self, sql: str, args: tuple = ()) -> sqlite3.Row | None:
        return self.conn.execute(sql, args).fetchone()

    def all(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, args).fetchall()

    def run(self, sql: str, args: tuple = ()) -> int:
        return self.conn.execute(sql, args).lastrowid

    @property
    def user(self) -> sqlite3.Row:
        return self.one("SELECT * FROM profile WHERE id = 1")


APP_DESCRIPTIONS = {
    "api_docs": "Documentation of every app and API: start here to discover what you can call.",
    "supervisor": "The user (your supervisor): profile, account passwords, and complete_task to finish.",
    "file_system": "The user's files, addressed by paths starting with '~/' (e.g. ~/documents/plan.txt).",
    "phone": "The user's phone: contacts (with relationships and birthdays) and text messages.",
    "payments": "A peer-to-peer payments app: balance, transactions, and payment requests between people.",
    "notes": "The user's notes, each with a title, content, tags and a pinned flag.",
    "email": "The user's email: inbox and sent folders, sending and replying to emails.",
}
REGISTRY: dict[str, dict[str, ApiSpec]] = {app: {} for app in APP_DESCRIPTIONS}
PAGE_PARAMS = [
    Param("page_index", "integer", "Index of the page of results to return, starting at 0.", False, 0),
    Param("page_limit", "integer", f"Number of results per page (1 to {MAX_PAGE_LIMIT}).", False, 5),
]


def api(app: str, description: str, params: list[Param] | None = None, returns: Any = None,
        needs_auth: bool | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as ``apis.<app>.<function name>``."""

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        auth = (app in ACCOUNT_APPS and func.__name__ != "login") if needs_auth is None else needs_auth
        REGISTRY[app][func.__name__] = ApiSpec(app, func.__name__, description, list(params or []), func,
                                              returns, auth)
        return func

    return register


_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "list": lambda v: isinstance(v, list),
    "any": lambda v: True,
}


def call_api(ctx: ApiContext, app: str, name: str, kwargs: dict[str, Any]) -> Any:
    """Validate and run one API call; raise :class:`ApiError` on any problem."""
    if app not in REGISTRY:
        raise ApiError(404, f"No app named '{app}'. Available apps: {', '.join(REGISTRY)}.")
    spec = REGISTRY[app].get(name)
    if spec is None:
        raise ApiError(404, f"No API named '{name}' in app '{app}'. "
                            f"See apis.api_docs.show_api_descriptions(app_name='{app}').")
    kwargs = dict(kwargs)
    if spec.needs_auth:
        _check_token(ctx, app, kwargs.pop("access_token", None))
    known = {p.name: p for p in spec.params}
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise ApiError(422, f"Unexpected parameter(s) {unknown} for {app}.{name}. "
                            f"Valid parameters: {sorted(known) + (['access_token'] if spec.needs_auth else [])}.")
    values: dict[str, Any] = {}
    for param in spec.params:
        if param.name not in kwargs:
            if param.required:
                raise ApiError(422, f"Missing required parameter '{param.name}' for {app}.{name}.")
            values[param.name] = param.default
            continue
        value = kwargs[param.name]
        if value is not None and not _TYPE_CHECKS[param.type](value):
            raise ApiError(422, f"Parameter '{param.name}' of {app}.{name} must be of type {param.type}, "
                                f"got {type(value).__name__}.")
        if value is None and param.required:
            raise ApiError(422, f"Parameter '{param.name}' of {app}.{name} cannot be None.")
        values[param.name] = value
    ctx.calls += 1
    return spec.func(ctx, **values)


def _check_token(ctx: ApiContext, app: str, token: Any) -> None:
    if token is None:
        raise ApiError(401, f"Missing access_token. Log in first with apis.{app}.login(username=..., password=...).")
    row = ctx.one("SELECT app FROM access_tokens WHERE token = ?", (str(token),))
    if row is None or row["app"] != app:
        raise ApiError(401, f"Invalid access token for app '{app}'.")


def _page(items: list[Any], page_index: int, page_limit: int) -> list[Any]:
    if page_index < 0:
        raise ApiError(422, "page_index must be >= 0.")
    if not 1 <= page_limit <= MAX_PAGE_LIMIT:
        raise ApiError(422, f"page_limit must be between 1 and {MAX_PAGE_LIMIT}.")
    return items[page_index * page_limit:(page_index + 1) * page_limit]


def _amount(value: float, what: str = "amount") -> float:
    if value <= 0:
        raise ApiError(422, f"The {what} must be positive.")
    if round(value, 2) != round(value, 6):
        raise ApiError(422, f"The {what} can have at most 2 decimal places.")
    return round(float(value), 2)


def _parse_time(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    try:
        return iso(datetime.fromisoformat(value))
    except ValueError:
        raise ApiError(422, f"{name} must be an ISO datetime like '2024-05-01T00:00:00', got {value!r}.") from None


# --------------------------------------------------------------------------------------------------------------
# api_docs
# --------------------------------------------------------------------------------------------------------------

@api("api_docs", "List all apps with a short description.", returns=[{"name": "string", "description": "string"}])
def show_app_descriptions(ctx: ApiContext) -> list[dict[str, str]]:
    return [{"name": name, "description": text} for name, text in APP_DESCRIPTIONS.items()]


@api("api_docs", "List the APIs of an app with a short description of each.",
     [Param("app_name", "string", "Name of the app.")], returns=[{"name": "string", "description": "string"}])
def show_api_descriptions(ctx: ApiContext, app_name: str) -> list[dict[str, str]]:
    if app_name not in REGISTRY:
        raise ApiError(404, f"No app named '{app_name}'. Available apps: {', '.join(REGISTRY)}.")
    return [{"name": s.name, "description": s.description} for s in REGISTRY[app_name].values()]


@api("api_docs", "Show the full documentation (parameters and response) of one API.",
     [Param("app_name", "string", "Name of the app."), Param("api_name", "string", "Name of the API.")],
     returns={"app_name": "string", "api_name": "string", "description": "string", "parameters": "list"})
def show_api_doc(ctx: ApiContext, app_name: str, api_name: str) -> dict[str, Any]:
    if app_name not in REGISTRY:
        raise ApiError(404, f"No app named '{app_name}'. Available apps: {', '.join(REGISTRY)}.")
    if api_name not in REGISTRY[app_name]:
        raise ApiError(404, f"No API named '{api_name}' in app '{app_name}'.")
    return REGISTRY[app_name][api_name].doc()


# --------------------------------------------------------------------------------------------------------------
# supervisor
# --------------------------------------------------------------------------------------------------------------

@api("supervisor", "Show the user's profile (name, email, phone number, birthday).",
     returns={"first_name": "string", "last_name": "string", "email": "string", "phone_number": "string",
              "birthday": "YYYY-MM-DD"})
def show_profile(ctx: ApiContext) -> dict[str, Any]:
    return {k: ctx.user[k] for k in ("first_name", "last_name", "email", "phone_number", "birthday")}


@api("supervisor", "Show the user's account passwords for every app.",
     returns=[{"account_name": "string", "username": "string", "password": "string"}])
def show_account_passwords(ctx: ApiContext) -> list[dict[str, str]]:
    return [{"account_name": r["app"], "username": r["username"], "password": r["password"]}
            for r in ctx.all("SELECT * FROM accounts ORDER BY app")]


@api("supervisor", "Mark the task complete. Pass the answer when the task asks a question, else leave it None. "
                   "Use status='fail' if the task cannot be done.",
     [Param("answer", "any", "The answer to the task's question (string or number), or None.", False, None),
      Param("status", "string", "'success' or 'fail'.", False, "success")],
     returns={"message": "string"})
def complete_task(ctx: ApiContext, answer: Any, status: str) -> dict[str, str]:
    if status not in ("success", "fail"):
        raise ApiError(422, "status must be 'success' or 'fail'.")
    if not (answer is None or isinstance(answer, (str, int, float, bool, list))):
        raise ApiError(422, "answer must be a string, a number, a list, or None.")
    if ctx.one("SELECT completed FROM task_state WHERE id = 1")["completed"]:
        raise ApiError(409, "The task is already completed.")
    ctx.run("UPDATE task_state SET completed = 1, status = ?, answer = ?, completed_at = ? WHERE id = 1",
            (status, json.dumps(answer), iso(ctx.now)))
    return {"message": "Marked the active task complete."}


# --------------------------------------------------------------------------------------------------------------
# login (one per account app)
# --------------------------------------------------------------------------------------------------------------

def _make_login(app: str) -> None:
    username_hint = "the user's phone number" if app == "phone" else "the user's email address"

    def login(ctx: ApiContext, username: str, password: str) -> dict[str, str]:
        row = ctx.one("SELECT * FROM accounts WHERE app = ?", (app,))
        if row is None or row["username"] != username or row["password"] != password:
            raise ApiError(401, "Invalid credentials. The username is " + username_hint +
                           "; passwords are in apis.supervisor.show_account_passwords().")
        count = ctx.one("SELECT COUNT(*) AS n FROM access_tokens")["n"]
        token = hashlib.sha256(f"{ctx.token_salt}:{app}:{count}".encode()).hexdigest()[:32]
        ctx.run("INSERT INTO access_tokens (token, app, created_at) VALUES (?, ?, ?)", (token, app, iso(ctx.now)))
        return {"access_token": token, "token_type": "Bearer"}

    login.__name__ = "login"
    api(app, f"Log in to {app}; returns an access_token to pass to every other {app} API. "
             f"The username is {username_hint}.",
        [Param("username", "string", f"Login username ({username_hint})."),
         Param("password", "string", "Account password.")],
        returns={"access_token": "string", "token_type": "string"})(login)


# --------------------------------------------------------------------------------------------------------------
# file_system
# --------------------------------------------------------------------------------------------------------------

def _path(value: str, name: str = "file_path") -> str:
    if not value.startswith("~/") or ".." in value.split("/") or "//" in value:
        raise ApiError(422, f"{name} must be a normalized path starting with '~/', got {value!r}.")
    return value


def _row_by_id(ctx: ApiContext, table: str, noun: str, row_id: int) -> sqlite3.Row:
    """The row with this id, or a 404 naming the argument the agent passed (``<noun>_id``)."""
    row = ctx.one(f"SELECT * FROM {table} WHERE id = ?", (row_id,))  # table: a constant of this module, never input
    if row is None:
        raise ApiError(404, f"No {noun} with {noun}_id {row_id}.")
    return row


def _file_row(ctx: ApiContext, path: str) -> sqlite3.Row:
    row = ctx.one("SELECT * FROM files WHERE path = ?", (_path(path),))
    if row is None:
        raise ApiError(404, f"No file at {path}.")
    return row


_make_login("file_system")


@api("file_system", "List the entries of a directory: files, and sub-directories ending with '/'. "
                    "With recursive=True, list every file below the directory instead.",
     [Param("directory_path", "string", "Directory path starting with '~/'.", False, "~/"),
      Param("recursive", "boolean", "List all files below the directory.", False, False)],
     returns=["string"])
def show_directory(ctx: ApiContext, directory_path: str, recursive: bool) -> list[str]:
    directory = directory_path if directory_path.endswith("/") else directory_path + "/"
    _path(directory, "directory_path")
    paths = [r["path"] for r in ctx.all("SELECT path FROM files WHERE path LIKE ? ORDER BY path",
                                        (directory.replace("%", r"\%") + "%",))]
    if recursive:
        return paths
    entries: list[str] = []
    for path in paths:
        rest = path[len(directory):]
        entry = directory + rest.split("/")[0] + ("/" if "/" in rest else "")
        if entry not in entries:
            entries.append(entry)
    if not entries and directory != "~/":
        raise ApiError(404, f"No directory at {directory}.")
    return entries


@api("file_system", "Show a file's content and timestamps.",
     [Param("file_path", "string", "File path starting with '~/'.")],
     returns={"file_id": "integer", "path": "string", "content": "string", "created_at": "string",
              "updated_at": "string"})
def show_file(ctx: ApiContext, file_path: str) -> dict[str, Any]:
    row = _file_row(ctx, file_path)
    return {"file_id": row["id"], "path": row["path"], "content": row["content"], "created_at": row["created_at"],
            "updated_at": row["updated_at"]}


@api("file_system", "Tell whether a file exists.", [Param("file_path", "string", "File path starting with '~/'.")],
     returns={"exists": "boolean"})
def file_exists(ctx: ApiContext, file_path: str) -> dict[str, bool]:
    return {"exists": ctx.one("SELECT 1 FROM files WHERE path = ?", (_path(file_path),)) is not None}


@api("file_system", "Create a file (parent directories are implicit).",
     [Param("file_path", "string", "File path starting with '~/'."),
      Param("content", "string", "File content.", False, ""),
      Param("overwrite", "boolean", "Replace the file if it exists.", False, False)],
     returns={"message": "string", "file_path": "string"})
def create_file(ctx: ApiContext, file_path: str, content: str, overwrite: bool) -> dict[str, str]:
    _path(file_path)
    if file_path.endswith("/"):
        raise ApiError(422, "file_path must not end with '/'.")
    existing = ctx.one("SELECT id FROM files WHERE path = ?", (file_path,))
    if existing is not None and not overwrite:
        raise ApiError(409, f"A file already exists at {file_path}; pass overwrite=True to replace it.")
    if existing is not None:
        ctx.run("UPDATE files SET content = ?, updated_at = ? WHERE id = ?", (content, iso(ctx.now), existing["id"]))
    else:
        ctx.run("INSERT INTO files (path, content, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (file_path, content, iso(ctx.now), iso(ctx.now)))
    return {"message": "File created.", "file_path": file_path}


@api("file_system", "Replace the content of an existing file.",
     [Param("file_path", "string", "File path starting with '~/'."), Param("content", "string", "New content.")],
     returns={"message": "string"})
def update_file(ctx: ApiContext, file_path: str, content: str) -> dict[str, str]:
    row = _file_row(ctx, file_path)
    ctx.run("UPDATE files SET content = ?, updated_at = ? WHERE id = ?", (content, iso(ctx.now), row["id"]))
    return {"message": "File updated."}


@api("file_system", "Delete a file.", [Param("file_path", "string", "File path starting with '~/'.")],
     returns={"message": "string"})
def delete_file(ctx: ApiContext, file_path: str) -> dict[str, str]:
    row = _file_row(ctx, file_path)
    ctx.run("DELETE FROM files WHERE id = ?", (row["id"],))
    return {"message": "File deleted."}


@api("file_system", "Move (rename) a file.",
     [Param("source_file_path", "string", "Current path."), Param("destination_file_path", "string", "New path."),
      Param("overwrite", "boolean", "Replace an existing file at the destination.", False, False)],
     returns={"message": "string", "file_path": "string"})
def move_file(ctx: ApiContext, source_file_path: str, destination_file_path: str, overwrite: bool) -> dict[str, str]:
    row = _file_row(ctx, source_file_path)
    _path(destination_file_path, "destination_file_path")
    target = ctx.one("SELECT id FROM files WHERE path = ?", (destination_file_path,))
    if target is not None and not overwrite:
        raise ApiError(409, f"A file already exists at {destination_file_path}; pass overwrite=True to replace it.")
    if target is not None:
        ctx.run("DELETE FROM files WHERE id = ?", (target["id"],))
    ctx.run("UPDATE files SET path = ?, updated_at = ? WHERE id = ?", (destination_file_path, iso(ctx.now), row["id"]))
    return {"message": "File moved.", "file_path": destination_file_path}


# --------------------------------------------------------------------------------------------------------------
# phone
# --------------------------------------------------------------------------------------------------------------

_make_login("phone")
_CONTACT_FIELDS = ("first_name", "last_name", "phone_number", "email", "relationship", "birthday")


def _contact(row: sqlite3.Row) -> dict[str, Any]:
    return {"contact_id": row["id"], **{k: row[k] for k in _CONTACT_FIELDS}}


def _contact_row(ctx: ApiContext, contact_id: int) -> sqlite3.Row:
    return _row_by_id(ctx, "contacts", "contact", contact_id)


@api("phone", "Search contacts by a query matched against names, phone number and email; optionally filter by "
              "relationship. Results are paginated.",
     [Param("query", "string", "Text to search for (empty matches all).", False, ""),
      Param("relationship", "string", "Only contacts with this relationship (e.g. 'friend').", False, None),
      *PAGE_PARAMS], returns=[{"contact_id": "integer", **{k: "string" for k in _CONTACT_FIELDS}}])
def search_contacts(ctx: ApiContext, query: str, relationship: str | None, page_index: int,
                    page_limit: int) -> list[dict[str, Any]]:
    rows = ctx.all("SELECT * FROM contacts ORDER BY first_name, last_name, id")
    q = query.lower().strip()
    hits = [r for r in rows if (not q or q in f"{r['first_name']} {r['last_name']} {r['phone_number']} "
                                           f"{r['email'] or ''}".lower())
            and (relationship is None or (r["relationship"] or "").lower() == relationship.lower())]
    return [_contact(r) for r in _page(hits, page_index, page_limit)]


@api("phone", "Show one contact.", [Param("contact_id", "integer", "ID of the contact.")],
     returns={"contact_id": "integer", **{k: "string" for k in _CONTACT_FIELDS}})
def show_contact(ctx: ApiContext, contact_id: int) -> dict[str, Any]:
    return _contact(_contact_row(ctx, contact_id))


@api("phone", "List the relationship labels used by contacts.", returns=["string"])
def show_relationships(ctx: ApiContext) -> list[str]:
    return [r["relationship"] for r in ctx.all(
        "SELECT DISTINCT relationship FROM contacts WHERE relationship IS NOT NULL ORDER BY relationship")]


@api("phone", "Add a contact.",
     [Param("first_name", "string", "First name."), Param("last_name", "string", "Last name."),
      Param("phone_number", "string", "Phone number (digits)."),
      Param("email", "string", "Email address.", False, None),
      Param("relationship", "string", "Relationship label.", False, None),
      Param("birthday", "string", "Birthday as YYYY-MM-DD.", False, None)],
     returns={"message": "string", "contact_id": "integer"})
def add_contact(ctx: ApiContext, **fields: Any) -> dict[str, Any]:
    if ctx.one("SELECT 1 FROM contacts WHERE phone_number = ?", (fields["phone_number"],)):
        raise ApiError(409, f"A contact with phone number {fields['phone_number']} already exists.")
    new_id = ctx.run(f"INSERT INTO contacts ({', '.join(_CONTACT_FIELDS)}) VALUES ({', '.join('?' * 6)})",
                     tuple(fields[k] for k in _CONTACT_FIELDS))
    return {"message": "Contact added.", "contact_id": new_id}


@api("phone", "Update fields of a contact (fields left as None are unchanged).",
     [Param("contact_id", "integer", "ID of the contact."),
      *[Param(k, "string", f"New {k.replace('_', ' ')}.", False, None) for k in _CONTACT_FIELDS]],
     returns={"message": "string"})
def update_contact(ctx: ApiContext, contact_id: int, **fields: Any) -> dict[str, str]:
    _contact_row(ctx, contact_id)
    changes = {k: v for k, v in fields.items() if v is not None}
    if not changes:
        raise ApiError(422, "Nothing to update: pass at least one field.")
    ctx.run(f"UPDATE contacts SET {', '.join(f'{k} = ?' for k in changes)} WHERE id = ?",
            (*changes.values(), contact_id))
    return {"message": "Contact updated."}


@api("phone", "Delete a contact.", [Param("contact_id", "integer", "ID of the contact.")],
     returns={"message": "string"})
def delete_contact(ctx: ApiContext, contact_id: int) -> dict[str, str]:
    _contact_row(ctx, contact_id)
    ctx.run("DELETE FROM contacts WHERE id = ?", (contact_id,))
    return {"message": "Contact deleted."}


@api("phone", "Show text messages sent or received by the user, newest first; optionally only those exchanged "
              "with one phone number. Results are paginated.",
     [Param("phone_number", "string", "Only messages exchanged with this number.", False, None), *PAGE_PARAMS],
     returns=[{"text_message_id": "integer", "sender_phone_number": "string", "receiver_phone_number": "string",
               "message": "string", "sent_at": "string"}])
def show_text_messages(ctx: ApiContext, phone_number: str | None, page_index: int, page_limit: int) -> list[dict]:
    rows = ctx.all("SELECT * FROM text_messages ORDER BY sent_at DESC, id DESC")
    if phone_number is not None:
        rows = [r for r in rows if phone_number in (r["sender_number"], r["receiver_number"])]
    return [{"text_message_id": r["id"], "sender_phone_number": r["sender_number"],
             "receiver_phone_number": r["receiver_number"], "message": r["message"], "sent_at": r["sent_at"]}
            for r in _page(rows, page_index, page_limit)]


@api("phone", "Send a text message to a phone number.",
     [Param("phone_number", "string", "Recipient phone number."), Param("message", "string", "Message text.")],
     returns={"message": "string", "text_message_id": "integer"})
def send_text_message(ctx: ApiContext, phone_number: str, message: str) -> dict[str, Any]:
    if not phone_number.isdigit():
        raise ApiError(422, f"phone_number must contain digits only, got {phone_number!r}.")
    if not message.strip():
        raise ApiError(422, "message cannot be empty.")
    new_id = ctx.run("INSERT INTO text_messages (sender_number, receiver_number, message, sent_at) VALUES (?,?,?,?)",
                     (ctx.user["phone_number"], phone_number, message, iso(ctx.now)))
    return {"message": "Text message sent.", "text_message_id": new_id}


# --------------------------------------------------------------------------------------------------------------
# payments
# --------------------------------------------------------------------------------------------------------------

_make_login("payments")


def _payment_user(ctx: ApiContext, email: str) -> sqlite3.Row:
    row = ctx.one("SELECT * FROM payment_users WHERE email = ?", (email,))
    if row is None:
        raise ApiError(404, f"No payments user with email {email}.")
    return row


def _name(ctx: ApiContext, email: str) -> str:
    row = ctx.one("SELECT first_name, last_name FROM payment_users WHERE email = ?", (email,))
    return f"{row['first_name']} {row['last_name']}" if row else email


@api("payments", "Show the user's payments balance.", returns={"balance": "number"})
def show_balance(ctx: ApiContext) -> dict[str, float]:
    return {"balance": round(ctx.one("SELECT balance FROM wallet WHERE id = 1")["balance"], 2)}


@api("payments", "Search payments users by name or email. Results are paginated.",
     [Param("query", "string", "Text to search for (empty matches all).", False, ""), *PAGE_PARAMS],
     returns=[{"email": "string", "first_name": "string", "last_name": "string"}])
def search_users(ctx: ApiContext, query: str, page_index: int, page_limit: int) -> list[dict[str, str]]:
    q = query.lower().strip()
    rows = [r for r in ctx.all("SELECT * FROM payment_users ORDER BY first_name, last_name")
            if not q or q in f"{r['first_name']} {r['last_name']} {r['email']}".lower()]
    return [dict(r) for r in _page(rows, page_index, page_limit)]


def _transaction(ctx: ApiContext, r: sqlite3.Row) -> dict[str, Any]:
    return {"transaction_id": r["id"], "sender_email": r["sender_email"], "sender_name": _name(ctx, r["sender_email"]),
            "receiver_email": r["receiver_email"], "receiver_name": _name(ctx, r["receiver_email"]),
            "amount": r["amount"], "description": r["description"], "created_at": r["created_at"]}


@api("payments", "Show the user's transactions, newest first, optionally filtered by direction, other user and "
                 "creation time (inclusive bounds). Results are paginated.",
     [Param("direction", "string", "'sent', 'received' or 'all'.", False, "all"),
      Param("user_email", "string", "Only transactions with this user.", False, None),
      Param("min_created_at", "string", "Earliest creation time (ISO datetime).", False, None),
      Param("max_created_at", "string", "Latest creation time (ISO datetime).", False, None), *PAGE_PARAMS],
     returns=[{"transaction_id": "integer", "sender_email": "string", "sender_name": "string",
               "receiver_email": "string", "receiver_name": "string", "amount": "number",
               "description": "string", "created_at": "string"}])
def show_transactions(ctx: ApiContext, direction: str, user_email: str | None, min_created_at: str | None,
                      max_created_at: str | None, page_index: int, page_limit: int) -> list[dict[str, Any]]:
    if direction not in ("sent", "received", "all"):
        raise ApiError(422, "direction must be 'sent', 'received' or 'all'.")
    low, high = _parse_time(min_created_at, "min_created_at"), _parse_time(max_created_at, "max_created_at")
    me = ctx.user["email"]
    rows = []
    for r in ctx.all("SELECT * FROM transactions ORDER BY created_at DESC, id DESC"):
        if (direction == "sent" and r["sender_email"] != me) or (direction == "received" and r["receiver_email"] != me):
            continue
        if user_email is not None and user_email not in (r["sender_email"], r["receiver_email"]):
            continue
        if (low and r["created_at"] < low) or (high and r["created_at"] > high):
            continue
        rows.append(r)
    return [_transaction(ctx, r) for r in _page(rows, page_index, page_limit)]


def _transfer(ctx: ApiContext, sender: str, receiver: str, amount: float, description: str) -> int:
    me = ctx.user["email"]
    balance = ctx.one("SELECT balance FROM wallet WHERE id = 1")["balance"]
    if sender == me:
        if amount > balance + 1e-9:
            raise ApiError(422, f"Insufficient balance: {balance:.2f} available, {amount:.2f} needed.")
        ctx.run("UPDATE wallet SET balance = ? WHERE id = 1", (round(balance - amount, 2),))
    elif receiver == me:
        ctx.run("UPDATE wallet SET balance = ? WHERE id = 1", (round(balance + amount, 2),))
    return ctx.run("INSERT INTO transactions (sender_email, receiver_email, amount, description, created_at) "
                   "VALUES (?, ?, ?, ?, ?)", (sender, receiver, amount, description, iso(ctx.now)))


@api("payments", "Send money from the user's balance to another payments user.",
     [Param("receiver_email", "string", "Email of the receiver."), Param("amount", "number", "Amount to send."),
      Param("description", "string", "Description shown on the transaction.", False, "")],
     returns={"message": "string", "transaction_id": "integer"})
def send_money(ctx: ApiContext, receiver_email: str, amount: float, description: str) -> dict[str, Any]:
    _payment_user(ctx, receiver_email)
    if receiver_email == ctx.user["email"]:
        raise ApiError(422, "You cannot send money to yourself.")
    new_id = _transfer(ctx, ctx.user["email"], receiver_email, _amount(amount), description)
    return {"message": "Money sent.", "transaction_id": new_id}


def _request(ctx: ApiContext, r: sqlite3.Row) -> dict[str, Any]:
    return {"payment_request_id": r["id"], "requester_email": r["requester_email"],
            "requester_name": _name(ctx, r["requester_email"]), "payer_email": r["payer_email"],
            "payer_name": _name(ctx, r["payer_email"]), "amount": r["amount"], "description": r["description"],
            "status": r["status"], "created_at": r["created_at"]}


@api("payments", "Show payment requests, newest first: direction='received' (others asking the user to pay) or "
                 "'sent' (the user asking others); optionally filtered by status. Results are paginated.",
     [Param("direction", "string", "'received' or 'sent'.", False, "received"),
      Param("status", "string", "'pending', 'approved' or 'declined'.", False, None), *PAGE_PARAMS],
     returns=[{"payment_request_id": "integer", "requester_email": "string", "requester_name": "string",
               "payer_email": "string", "payer_name": "string", "amount": "number", "description": "string",
               "status": "string", "created_at": "string"}])
def show_payment_requests(ctx: ApiContext, direction: str, status: str | None, page_index: int,
                          page_limit: int) -> list[dict[str, Any]]:
    if direction not in ("received", "sent"):
        raise ApiError(422, "direction must be 'received' or 'sent'.")
    column = "payer_email" if direction == "received" else "requester_email"
    rows = [r for r in ctx.all(f"SELECT * FROM payment_requests WHERE {column} = ? ORDER BY created_at DESC, id DESC",
                               (ctx.user["email"],)) if status is None or r["status"] == status]
    return [_request(ctx, r) for r in _page(rows, page_index, page_limit)]


@api("payments", "Ask another payments user to pay the user an amount.",
     [Param("user_email", "string", "Email of the user who should pay."), Param("amount", "number", "Amount."),
      Param("description", "string", "Description of the request.", False, "")],
     returns={"message": "string", "payment_request_id": "integer"})
def create_payment_request(ctx: ApiContext, user_email: str, amount: float, description: str) -> dict[str, Any]:
    _payment_user(ctx, user_email)
    if user_email == ctx.user["email"]:
        raise ApiError(422, "You cannot request money from yourself.")
    now = iso(ctx.now)
    new_id = ctx.run("INSERT INTO payment_requests (requester_email, payer_email, amount, description, status, "
                     "created_at, updated_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                     (ctx.user["email"], user_email, _amount(amount), description, now, now))
    return {"message": "Payment request created.", "payment_request_id": new_id}


def _pending_request_to_me(ctx: ApiContext, payment_request_id: int) -> sqlite3.Row:
    row = ctx.one("SELECT * FROM payment_requests WHERE id = ?", (payment_request_id,))
    if row is None or row["payer_email"] != ctx.user["email"]:
        raise ApiError(404, f"No payment request {payment_request_id} addressed to the user.")
    if row["status"] != "pending":
        raise ApiError(409, f"Payment request {payment_request_id} is already {row['status']}.")
    return row


@api("payments", "Approve (pay) a pending payment request addressed to the user.",
     [Param("payment_request_id", "integer", "ID of the payment request.")],
     returns={"message": "string", "transaction_id": "integer"})
def approve_payment_request(ctx: ApiContext, payment_request_id: int) -> dict[str, Any]:
    row = _pending_request_to_me(ctx, payment_request_id)
    new_id = _transfer(ctx, ctx.user["email"], row["requester_email"], row["amount"], row["description"])
    ctx.run("UPDATE payment_requests SET status = 'approved', updated_at = ? WHERE id = ?",
            (iso(ctx.now), payment_request_id))
    return {"message": "Payment request approved.", "transaction_id": new_id}


@api("payments", "Decline a pending payment request addressed to the user.",
     [Param("payment_request_id", "integer", "ID of the payment request.")], returns={"message": "string"})
def decline_payment_request(ctx: ApiContext, payment_request_id: int) -> dict[str, str]:
    _pending_request_to_me(ctx, payment_request_id)
    ctx.run("UPDATE payment_requests SET status = 'declined', updated_at = ? WHERE id = ?",
            (iso(ctx.now), payment_request_id))
    return {"message": "Payment request declined."}


# --------------------------------------------------------------------------------------------------------------
# notes
# --------------------------------------------------------------------------------------------------------------

_make_login("notes")


def _note_row(ctx: ApiContext, note_id: int) -> sqlite3.Row:
    return _row_by_id(ctx, "notes", "note", note_id)


def _tags(tags: list[Any] | None) -> list[str] | None:
    if tags is not None and not all(isinstance(t, str) for t in tags):
        raise ApiError(422, "tags must be a list of strings.")
    return tags


@api("notes", "Search notes by a query matched against title and content; optionally filter by tag or pinned. "
              "Results (without content; use show_note) are newest first and paginated.",
     [Param("query", "string", "Text to search for (empty matches all).", False, ""),
      Param("tag", "string", "Only notes with this tag.", False, None),
      Param("pinned", "boolean", "Only pinned (True) or unpinned (False) notes.", False, None), *PAGE_PARAMS],
     returns=[{"note_id": "integer", "title": "string", "tags": ["string"], "pinned": "boolean",
               "created_at": "string", "updated_at": "string"}])
def search_notes(ctx: ApiContext, query: str, tag: str | None, pinned: bool | None, page_index: int,
                 page_limit: int) -> list[dict[str, Any]]:
    q = query.lower().strip()
    rows = [r for r in ctx.all("SELECT * FROM notes ORDER BY created_at DESC, id DESC")
            if (not q or q in (r["title"] + "\n" + r["content"]).lower())
            and (tag is None or tag in json.loads(r["tags"])) and (pinned is None or bool(r["pinned"]) == pinned)]
    return [{"note_id": r["id"], "title": r["title"], "tags": json.loads(r["tags"]), "pinned": bool(r["pinned"]),
             "created_at": r["created_at"], "updated_at": r["updated_at"]} for r in _page(rows, page_index, page_limit)]


@api("notes", "Show one note with its content.", [Param("note_id", "integer", "ID of the note.")],
     returns={"note_id": "integer", "title": "string", "content": "string", "tags": ["string"], "pinned": "boolean",
              "created_at": "string", "updated_at": "string"})
def show_note(ctx: ApiContext, note_id: int) -> dict[str, Any]:
    r = _note_row(ctx, note_id)
    return {"note_id": r["id"], "title": r["title"], "content": r["content"], "tags": json.loads(r["tags"]),
            "pinned": bool(r["pinned"]), "created_at": r["created_at"], "updated_at": r["updated_at"]}


@api("notes", "Create a note.",
     [Param("title", "string", "Title."), Param("content", "string", "Content.", False, ""),
      Param("tags", "list", "List of tag strings.", False, None),
      Param("pinned", "boolean", "Pin the note.", False, False)],
     returns={"message": "string", "note_id": "integer"})
def create_note(ctx: ApiContext, title: str, content: str, tags: list | None, pinned: bool) -> dict[str, Any]:
    if not title.strip():
        raise ApiError(422, "title cannot be empty.")
    now = iso(ctx.now)
    new_id = ctx.run("INSERT INTO notes (title, content, tags, pinned, created_at, updated_at) VALUES (?,?,?,?,?,?)",
                     (title, content, json.dumps(sorted(set(_tags(tags) or []))), int(pinned), now, now))
    return {"message": "Note created.", "note_id": new_id}


@api("notes", "Update a note (fields left as None are unchanged; tags replaces the whole tag list).",
     [Param("note_id", "integer", "ID of the note."), Param("title", "string", "New title.", False, None),
      Param("content", "string", "New content.", False, None), Param("tags", "list", "New tag list.", False, None),
      Param("pinned", "boolean", "New pinned flag.", False, None)],
     returns={"message": "string"})
def update_note(ctx: ApiContext, note_id: int, title: str | None, content: str | None, tags: list | None,
                pinned: bool | None) -> dict[str, str]:
    r = _note_row(ctx, note_id)
    ctx.run("UPDATE notes SET title = ?, content = ?, tags = ?, pinned = ?, updated_at = ? WHERE id = ?",
            (r["title"] if title is None else title, r["content"] if content is None else content,
             r["tags"] if tags is None else json.dumps(sorted(set(_tags(tags)))),
             r["pinned"] if pinned is None else int(pinned), iso(ctx.now), note_id))
    return {"message": "Note updated."}


@api("notes", "Delete a note.", [Param("note_id", "integer", "ID of the note.")], returns={"message": "string"})
def delete_note(ctx: ApiContext, note_id: int) -> dict[str, str]:
    _note_row(ctx, note_id)
    ctx.run("DELETE FROM notes WHERE id = ?", (note_id,))
    return {"message": "Note deleted."}


# --------------------------------------------------------------------------------------------------------------
# email
# --------------------------------------------------------------------------------------------------------------

_make_login("email")


def _email_row(ctx: ApiContext, email_id: int) -> sqlite3.Row:
    return _row_by_id(ctx, "emails", "email", email_id)


def _email_summary(r: sqlite3.Row) -> dict[str, Any]:
    return {"email_id": r["id"], "sender": r["sender"], "recipients": json.loads(r["recipients"]),
            "subject": r["subject"], "sent_at": r["sent_at"], "folder": r["folder"], "is_read": bool(r["is_read"])}


@api("email", "Search emails by a query matched against subject and body, in a folder ('inbox', 'sent' or 'all'), "
              "optionally only from one sender. Results (without body; use show_email) are newest first and paginated.",
     [Param("query", "string", "Text to search for (empty matches all).", False, ""),
      Param("folder", "string", "'inbox', 'sent' or 'all'.", False, "inbox"),
      Param("sender", "string", "Only emails from this email address.", False, None), *PAGE_PARAMS],
     returns=[{"email_id": "integer", "sender": "string", "recipients": ["string"], "subject": "string",
               "sent_at": "string", "folder": "string", "is_read": "boolean"}])
def search_emails(ctx: ApiContext, query: str, folder: str, sender: str | None, page_index: int,
                  page_limit: int) -> list[dict[str, Any]]:
    if folder not in ("inbox", "sent", "all"):
        raise ApiError(422, "folder must be 'inbox', 'sent' or 'all'.")
    q = query.lower().strip()
    rows = [r for r in ctx.all("SELECT * FROM emails ORDER BY sent_at DESC, id DESC")
            if (folder == "all" or r["folder"] == folder) and (sender is None or r["sender"] == sender)
            and (not q or q in (r["subject"] + "\n" + r["body"]).lower())]
    return [_email_summary(r) for r in _page(rows, page_index, page_limit)]


@api("email", "Show one email with its body (marks it as read).", [Param("email_id", "integer", "ID of the email.")],
     returns={"email_id": "integer", "sender": "string", "recipients": ["string"], "subject": "string",
              "body": "string", "sent_at": "string", "folder": "string", "is_read": "boolean"})
def show_email(ctx: ApiContext, email_id: int) -> dict[str, Any]:
    r = _email_row(ctx, email_id)
    ctx.run("UPDATE emails SET is_read = 1 WHERE id = ?", (email_id,))
    return {**_email_summary(r), "body": r["body"], "is_read": True}


def _send(ctx: ApiContext, recipients: list[str], subject: str, body: str) -> int:
    if not recipients or not all(isinstance(x, str) and "@" in x for x in recipients):
        raise ApiError(422, "recipients must be a non-empty list of email addresses.")
    return ctx.run("INSERT INTO emails (sender, recipients, subject, body, sent_at, folder, is_read) "
                   "VALUES (?, ?, ?, ?, ?, 'sent', 1)",
                   (ctx.user["email"], json.dumps(recipients), subject, body, iso(ctx.now)))


@api("email", "Send an email.",
     [Param("recipients", "list", "List of recipient email addresses."), Param("subject", "string", "Subject."),
      Param("body", "string", "Body text.", False, "")],
     returns={"message": "string", "email_id": "integer"})
def send_email(ctx: ApiContext, recipients: list, subject: str, body: str) -> dict[str, Any]:
    return {"message": "Email sent.", "email_id": _send(ctx, recipients, subject, body)}


@api("email", "Reply to an email: sends the body to its sender with the subject 'Re: <subject>'.",
     [Param("email_id", "integer", "ID of the email to reply to."), Param("body", "string", "Reply text.")],
     returns={"message": "string", "email_id": "integer"})
def reply_to_email(ctx: ApiContext, email_id: int, body: str) -> dict[str, Any]:
    r = _email_row(ctx, email_id)
    subject = r["subject"] if r["subject"].startswith("Re: ") else "Re: " + r["subject"]
    return {"message": "Reply sent.", "email_id": _send(ctx, [r["sender"]], subject, body)}


@api("email", "Delete an email.", [Param("email_id", "integer", "ID of the email.")], returns={"message": "string"})
def delete_email(ctx: ApiContext, email_id: int) -> dict[str, str]:
    _email_row(ctx, email_id)
    ctx.run("DELETE FROM emails WHERE id = ?", (email_id,))
    return {"message": "Email deleted."}
