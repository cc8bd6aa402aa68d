"""The offline app world: SQLite schema, a seeded generator of people and app data, and snapshots.

Everything here is written from scratch for skill-sd-trl (it imitates the *kind* of world AppWorld offers:
a user with accounts on several everyday apps, other people, and the data connecting them). A world is a
plain ``dict[table, list[row]]`` produced by :func:`generate_world` from a ``random.Random``; it is written
into a fresh SQLite file per episode (:func:`create_database`) so episodes never share state, and read
back with :func:`snapshot` so unit tests can compare the state before and after the agent acted.
"""

from __future__ import annotations

import json
import random
import sqlite3
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

# The apps whose accounts the user holds (supervisor and api_docs need no login).
ACCOUNT_APPS = ("file_system", "phone", "payments", "notes", "email")

SCHEMA = """
CREATE TABLE profile (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    first_name TEXT NOT NULL, last_name TEXT NOT NULL, email TEXT NOT NULL,
    phone_number TEXT NOT NULL, birthday TEXT NOT NULL
);
CREATE TABLE accounts (app TEXT PRIMARY KEY, username TEXT NOT NULL, password TEXT NOT NULL);
CREATE TABLE access_tokens (token TEXT PRIMARY KEY, app TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE contacts (
    id INTEGER PRIMARY KEY, first_name TEXT NOT NULL, last_name TEXT NOT NULL,
    phone_number TEXT NOT NULL, email TEXT, relationship TEXT, birthday TEXT
);
CREATE TABLE text_messages (
    id INTEGER PRIMARY KEY, sender_number TEXT NOT NULL, receiver_number TEXT NOT NULL,
    message TEXT NOT NULL, sent_at TEXT NOT NULL
);
CREATE TABLE payment_users (email TEXT PRIMARY KEY, first_name TEXT NOT NULL, last_name TEXT NOT NULL);
CREATE TABLE wallet (id INTEGER PRIMARY KEY CHECK (id = 1), balance REAL NOT NULL);
CREATE TABLE transactions (
    id INTEGER PRIMARY KEY, sender_email TEXT NOT NULL, receiver_email TEXT NOT NULL,
    amount REAL NOT NULL, description TEXT NOT NULL, created_at TEXT NOT NULL
);
CREATE TABLE payment_requests (
    id INTEGER PRIMARY KEY, requester_email TEXT NOT NULL, payer_email TEXT NOT NULL,
    amount REAL NOT NULL, description TEXT NOT NULL, status TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL
);
CREATE TABLE notes (
    id INTEGER PRIMARY KEY, title TEXT NOT NULL, content TEXT NOT NULL, tags TEXT NOT NULL,
    pinned INTEGER NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL
);
CREATE TABLE emails (
    id INTEGER PRIMARY KEY, sender TEXT NOT NULL, recipients TEXT NOT NULL, subject TEXT NOT NULL,
    body TEXT NOT NULL, sent_at TEXT NOT NULL, folder TEXT NOT NULL, is_read INTEGER NOT NULL
);
CREATE TABLE files (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, content TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL
);
CREATE TABLE task_state (
    id INTEGER PRIMARY KEY CHECK (id = 1), completed INTEGER NOT NULL, status TEXT,
    answer TEXT, completed_at TEXT
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# Tables in the order they are written; ``snapshot`` reads them back in this order.
TABLES = (
    "profile", "accounts", "access_tokens", "contacts", "text_messages", "payment_users", "wallet",
    "transactions", "payment_requests", "notes", "emails", "files", "task_state", "meta",
)

FIRST_NAMES = (
    "Ava", "Liam", "Maya", "Noah", "Zoe", "Ethan", "Nora", "Owen", "Lena", "Felix", "Iris", "Jonas",
    "Clara", "Mateo", "Ruby", "Hugo", "Sofia", "Theo", "Elsa", "Ravi", "Amara", "Kenji", "Leila", "Diego",
    "Freya", "Omar", "Hana", "Tobias", "Priya", "Marco", "Greta", "Samir", "Yara", "Nils", "Ines", "Caleb",
)
LAST_NAMES = (
    "Moreau", "Okafor", "Lindqvist", "Tanaka", "Rossi", "Novak", "Haddad", "Fischer", "Costa", "Byrne",
    "Mendes", "Kowalski", "Sato", "Larsen", "Bauer", "Duarte", "Petrov", "Varga", "Quinn", "Abara",
    "Ferreira", "Nakamura", "Holm", "Castillo", "Weber", "Ibrahim", "Keller", "Vidal", "Marsh", "Ortega",
)
RELATIONSHIPS = ("friend", "coworker", "family", "roommate", "neighbor")
NOTE_TAGS = ("work", "personal", "recipes", "travel", "ideas", "books", "fitness", "finance")
NOTE_TOPICS = {
    "work": ("Quarterly planning", "Team offsite", "Project kickoff", "Client feedback", "Sprint retro"),
    "personal": ("Birthday gift ideas", "Weekend plans", "Apartment chores", "Things to fix"),
    "recipes": ("Lemon pasta", "Lentil soup", "Banana bread", "Green curry", "Shakshuka"),
    "travel": ("Lisbon itinerary", "Packing list", "Kyoto temples", "Road trip stops"),
    "ideas": ("App idea", "Blog post topics", "Garden layout", "Podcast names"),
    "books": ("Reading list", "Quotes I liked", "Book club picks"),
    "fitness": ("Running plan", "Gym routine", "Stretching list"),
    "finance": ("Monthly budget", "Savings goals", "Tax documents"),
}
WORDS = (
    "meeting", "budget", "garden", "coffee", "review", "draft", "weekend", "ticket", "recipe", "flight",
    "summary", "schedule", "invoice", "lunch", "report", "concert", "train", "hiking", "museum", "market",
    "bicycle", "kitchen", "lamp", "balcony", "morning", "deadline", "slides", "photos", "dinner", "movie",
)
PAYMENT_DESCRIPTIONS = (
    "Dinner", "Groceries", "Movie tickets", "Taxi", "Concert", "Rent share", "Coffee", "Gas",
    "Birthday gift", "Utilities", "Lunch", "Pizza night", "Museum tickets", "Train tickets",
)
EMAIL_SUBJECTS = (
    "Quick question", "Plans for Saturday", "Photos from the trip", "Meeting notes", "Catching up",
    "Book recommendation", "Re: the project", "Invitation", "Thank you!", "Schedule update",
)


@dataclass
class Person:
    first_name: str
    last_name: str
    email: str
    phone_number: str
    birthday: str

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


@dataclass
class World:
    """A generated world: the rows of every table plus the people behind them (for task templates)."""

    now: datetime
    user: Person
    contacts: list[tuple[Person, str]]  # (person, relationship)
    strangers: list[Person]  # payment users who are not in the phone contacts
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def next_id(self, table: str) -> int:
        return max((row["id"] for row in self.tables[table]), default=0) + 1

    def add(self, table: str, **row: Any) -> dict[str, Any]:
        """Append a row (assigning ``id`` when the table has one) and return it."""
        if table not in ("accounts", "payment_users", "meta") and "id" not in row:
            row = {"id": self.next_id(table), **row}
        self.tables[table].append(row)
        return row

    def contact_by_relationship(self, relationship: str) -> list[Person]:
        return [p for p, rel in self.contacts if rel == relationship]


def iso(moment: datetime) -> str:
    """The one datetime format stored in the database (second precision, no timezone)."""
    return moment.replace(microsecond=0).isoformat()


def _unique_people(rng: random.Random, count: int) -> list[Person]:
    names = [(f, l) for f in FIRST_NAMES for l in LAST_NAMES]
    rng.shuffle(names)
    first_used: set[str] = set()
    people: list[Person] = []
    for first, last in names:
        if first in first_used:  # unique first names keep instructions unambiguous ("my friend Maya")
            continue
        first_used.add(first)
        domain = rng.choice(("mailbox.test", "inbox.test", "post.test"))
        phone = f"555{rng.randrange(10**6, 10**7)}"
        birthday = date(rng.randrange(1965, 2003), rng.randrange(1, 13), rng.randrange(1, 29)).isoformat()
        people.append(Person(first, last, f"{first}.{last}@{domain}".lower(), phone, birthday))
        if len(people) == count:
            return people
    raise ValueError(f"cannot draw {count} people with distinct first names")


def _sentence(rng: random.Random, n_words: int = 8) -> str:
    words = [rng.choice(WORDS) for _ in range(n_words)]
    return (" ".join(words)).capitalize() + "."


def _password(rng: random.Random) -> str:
    alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(rng.choice(alphabet) for _ in range(12))


def generate_world(rng: random.Random, now: datetime | None = None) -> World:
    """Draw a complete world (user, contacts, and every app's data) from ``rng``.

    ``now`` is the frozen "current time" of the episode; relative phrases in instructions ("last week",
    "today") are resolved against it, and every generated timestamp lies before it.
    """
    if now is None:
        now = datetime(2024, 5, rng.randrange(6, 28), rng.randrange(8, 18), 0, 0)
    people = _unique_people(rng, 20)
    user, others = people[0], people[1:]
    n_contacts = 13
    contacts = [(p, RELATIONSHIPS[i % len(RELATIONSHIPS)]) for i, p in enumerate(others[:n_contacts])]
    strangers = others[n_contacts:]
    world = World(now=now, user=user, contacts=contacts, strangers=strangers,
                  tables={table: [] for table in TABLES})
    world.add("profile", id=1, first_name=user.first_name, last_name=user.last_name, email=user.email,
              phone_number=user.phone_number, birthday=user.birthday)
    for app in ACCOUNT_APPS:
        username = user.phone_number if app == "phone" else user.email
        world.add("accounts", app=app, username=username, password=_password(rng))
    world.add("wallet", id=1, balance=round(rng.uniform(800, 2500), 2))
    world.add("task_state", id=1, completed=0, status=None, answer=None, completed_at=None)
    world.add("meta", key="now", value=iso(now))
    _fill_phone(world, rng)
    _fill_payments(world, rng)
    _fill_notes(world, rng)
    _fill_emails(world, rng)
    _fill_files(world, rng)
    return world


def random_time(rng: random.Random, now: datetime, min_days: float, max_days: float) -> str:
    """A timestamp between ``max_days`` and ``min_days`` before ``now`` (whole minutes)."""
    minutes = rng.randrange(int(min_days * 24 * 60) + 1, int(max_days * 24 * 60))
    return iso(now - timedelta(minutes=minutes))


def _fill_phone(world: World, rng: random.Random) -> None:
    for person, rel in world.contacts:
        world.add("contacts", first_name=person.first_name, last_name=person.last_name,
                  phone_number=person.phone_number, email=person.email, relationship=rel,
                  birthday=person.birthday)
    for _ in range(rng.randrange(10, 16)):
        person, _rel = rng.choice(world.contacts)
        incoming = rng.random() < 0.5
        sender, receiver = (person, world.user) if incoming else (world.user, person)
        world.add("text_messages", sender_number=sender.phone_number, receiver_number=receiver.phone_number,
                  message=_sentence(rng, 6), sent_at=random_time(rng, world.now, 0.1, 40))


def _fill_payments(world: World, rng: random.Random) -> None:
    members = [p for p, _ in world.contacts] + world.strangers + [world.user]
    for person in members:
        world.add("payment_users", email=person.email, first_name=person.first_name, last_name=person.last_name)
    others = [p for p in members if p is not world.user]
    # Older history only (8 to 60 days ago): tasks about "the last N days" add their own fresh rows.
    for _ in range(rng.randrange(12, 18)):
        other = rng.choice(others)
        incoming = rng.random() < 0.5
        sender, receiver = (other, world.user) if incoming else (world.user, other)
        world.add("transactions", sender_email=sender.email, receiver_email=receiver.email,
                  amount=round(rng.uniform(5, 120), 2), description=rng.choice(PAYMENT_DESCRIPTIONS),
                  created_at=random_time(rng, world.now, 8, 60))
    for _ in range(rng.randrange(2, 4)):  # requests the user already handled
        other = rng.choice(others)
        created = random_time(rng, world.now, 10, 50)
        world.add("payment_requests", requester_email=other.email, payer_email=world.user.email,
                  amount=round(rng.uniform(5, 80), 2), description=rng.choice(PAYMENT_DESCRIPTIONS),
                  status=rng.choice(("approved", "declined")), created_at=created, updated_at=created)


def _fill_notes(world: World, rng: random.Random) -> None:
    for _ in range(rng.randrange(8, 12)):
        tag = rng.choice(NOTE_TAGS)
        tags = sorted({tag, rng.choice(NOTE_TAGS)}) if rng.random() < 0.3 else [tag]
        created = random_time(rng, world.now, 1, 90)
        world.add("notes", title=rng.choice(NOTE_TOPICS[tag]), content="\n".join(
            _sentence(rng) for _ in range(rng.randrange(1, 4))), tags=json.dumps(tags),
            pinned=int(rng.random() < 0.2), created_at=created, updated_at=created)


def _fill_emails(world: World, rng: random.Random) -> None:
    for _ in range(rng.randrange(12, 18)):
        person, _rel = rng.choice(world.contacts)
        world.add("emails", sender=person.email, recipients=json.dumps([world.user.email]),
                  subject=rng.choice(EMAIL_SUBJECTS), body="\n".join(_sentence(rng) for _ in range(2)),
                  sent_at=random_time(rng, world.now, 0.5, 45), folder="inbox", is_read=int(rng.random() < 0.6))
    for _ in range(rng.randrange(4, 7)):
        person, _rel = rng.choice(world.contacts)
        world.add("emails", sender=world.user.email, recipients=json.dumps([person.email]),
                  subject=rng.choice(EMAIL_SUBJECTS), body=_sentence(rng), sent_at=random_time(rng, world.now, 0.5, 45),
                  folder="sent", is_read=1)


def _fill_files(world: World, rng: random.Random) -> None:
    paths = set()
    for _ in range(rng.randrange(4, 7)):
        paths.add(f"~/documents/{rng.choice(WORDS)}_{rng.randrange(1, 99)}.txt")
    for year in (2022, 2023):
        for _ in range(rng.randrange(2, 5)):
            paths.add(f"~/photos/{year}/{rng.choice(WORDS)}_{rng.randrange(100, 999)}.jpg")
    for _ in range(rng.randrange(3, 6)):
        paths.add(f"~/downloads/{rng.choice(WORDS)}_{rng.randrange(1, 99)}.{rng.choice(('pdf', 'zip', 'txt'))}")
    for path in sorted(paths):
        created = random_time(rng, world.now, 1, 200)
        content = f"<binary image data {rng.randrange(10**6)}>" if path.endswith(".jpg") else _sentence(rng, 12)
        world.add("files", path=path, content=content, created_at=created, updated_at=created)


def create_database(path: str, world: World) -> sqlite3.Connection:
    """Create the SQLite file at ``path`` holding ``world`` and return an open connection to it."""
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.row_factory = sqlite3.Row
    # One episode's scratch state: durability across power loss is worthless here, speed is not.
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA journal_mode = MEMORY")
    conn.executescript(SCHEMA)
    conn.execute("BEGIN")
    for table in TABLES:
        for row in world.tables[table]:
            columns = ", ".join(row)
            marks = ", ".join("?" for _ in row)
            conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(row.values()))
    conn.execute("COMMIT")
    return conn


def snapshot(conn: sqlite3.Connection) -> dict[str, list[dict[str, Any]]]:
    """Every table as a list of row dicts, ordered by primary key: the state unit tests inspect."""
    state: dict[str, list[dict[str, Any]]] = {}
    for table in TABLES:
        order = "app" if table == "accounts" else "email" if table == "payment_users" else \
            "key" if table == "meta" else "token" if table == "access_tokens" else "id"
        state[table] = [dict(row) for row in conn.execute(f"SELECT * FROM {table} ORDER BY {order}")]
    return state
