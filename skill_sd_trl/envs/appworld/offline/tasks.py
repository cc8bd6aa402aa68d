"""Offline AppWorld-style tasks: templates that turn a generated world into an instruction, a reference
solution (Python code calling ``apis``), and programmatic unit tests on the final state and the answer.

A task id names its template, split, index and world seed (``pay_back_recent-train-2``, or
``...-s7`` for seed 7); :func:`build_task` rebuilds the identical task (world, instruction, solution, tests)
from the id alone, which is how the server initializes an episode. Train and dev tasks of a template are
*scenarios of related tasks*: the same template drawn on different worlds (different people, amounts, dates).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .checks import Checker
from .world import FIRST_NAMES, LAST_NAMES, NOTE_TAGS, PAYMENT_DESCRIPTIONS, Person, World, generate_world, iso, \
    random_time

SPLITS = ("train", "dev")
DEFAULT_TASKS_PER_TEMPLATE = 3


@dataclass
class TaskSpec:
    """What a template returns for one world."""

    instruction: str
    solution: str
    check: Callable[[Checker], None]
    apps: tuple[str, ...] = ()


@dataclass
class OfflineTask:
    task_id: str
    template: str
    split: str
    index: int
    seed: int
    instruction: str
    solution: str
    check: Callable[[Checker], None]
    world: World
    difficulty: int
    apps: tuple[str, ...] = field(default_factory=tuple)

    @property
    def supervisor(self) -> dict[str, str]:
        user = self.world.user
        return {"first_name": user.first_name, "last_name": user.last_name, "email": user.email,
                "phone_number": user.phone_number}


@dataclass
class Template:
    name: str
    difficulty: int
    build: Callable[[World, random.Random], TaskSpec]


TEMPLATES: dict[str, Template] = {}


def template(difficulty: int) -> Callable[[Callable[[World, random.Random], TaskSpec]], Callable]:
    def register(build: Callable[[World, random.Random], TaskSpec]) -> Callable:
        TEMPLATES[build.__name__] = Template(build.__name__, difficulty, build)
        return build

    return register


# --------------------------------------------------------------------------------------------------------------
# task ids
# --------------------------------------------------------------------------------------------------------------

def make_task_id(template_name: str, split: str, index: int, seed: int = 0) -> str:
    return f"{template_name}-{split}-{index}" + (f"-s{seed}" if seed else "")


def parse_task_id(task_id: str) -> tuple[str, str, int, int]:
    """``(template, split, index, seed)`` of an offline task id; ``ValueError`` naming the expected format."""
    parts = task_id.split("-")
    seed = 0
    if len(parts) == 4 and parts[3].startswith("s") and parts[3][1:].isdigit():
        seed = int(parts[3][1:])
        parts = parts[:3]
    if len(parts) != 3 or parts[0] not in TEMPLATES or parts[1] not in SPLITS or not parts[2].isdigit():
        raise ValueError(f"unknown offline AppWorld task id {task_id!r}: expected '<template>-<split>-<index>' "
                         f"(optionally '-s<seed>') with split in {SPLITS} and template in {sorted(TEMPLATES)}")
    return parts[0], parts[1], int(parts[2]), seed


def build_task(task_id: str) -> OfflineTask:
    """Rebuild a task (its world included) deterministically from its id."""
    name, split, index, seed = parse_task_id(task_id)
    rng = random.Random(f"offline-appworld|{name}|{split}|{index}|{seed}")
    world = generate_world(rng)
    spec = TEMPLATES[name].build(world, rng)
    return OfflineTask(task_id=task_id, template=name, split=split, index=index, seed=seed,
                       instruction=spec.instruction, solution=spec.solution, check=spec.check, world=world,
                       difficulty=TEMPLATES[name].difficulty, apps=spec.apps)


def task_ids(split: str, seed: int = 0, tasks_per_template: int = DEFAULT_TASKS_PER_TEMPLATE,
             templates: Sequence[str] | None = None) -> list[str]:
    """The ids of a split's tasks: ``tasks_per_template`` worlds of every template (or of ``templates`` only)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    unknown = [t for t in templates or () if t not in TEMPLATES]
    if unknown:
        raise ValueError(f"templates: unknown {unknown}; known: {', '.join(TEMPLATES)}")
    return [make_task_id(name, split, i, seed) for name in (templates or TEMPLATES) for i in range(tasks_per_template)]


# --------------------------------------------------------------------------------------------------------------
# helpers shared by templates
# --------------------------------------------------------------------------------------------------------------

PREAMBLE = '''passwords = {a["account_name"]: a["password"] for a in apis.supervisor.show_account_passwords()}
me = apis.supervisor.show_profile()


def fetch_all(api, **kwargs):
    """Collect every page of a paginated API."""
    items, page = [], 0
    while True:
        batch = api(page_index=page, page_limit=20, **kwargs)
        items.extend(batch)
        if len(batch) < 20:
            return items
        page += 1

'''


def _login(*apps: str) -> str:
    lines = []
    for app in apps:
        username = 'me["phone_number"]' if app == "phone" else 'me["email"]'
        lines.append(f'{app}_token = apis.{app}.login(username={username}, password=passwords["{app}"])'
                     '["access_token"]')
    return "\n".join(lines) + "\n"


def _code(source: str, **values: Any) -> str:
    """Fill ``<<NAME>>`` markers with ``repr(value)`` (no brace escaping in solution code)."""
    for key, value in values.items():
        source = source.replace(f"<<{key}>>", repr(value))
    if "<<" in source:
        raise ValueError(f"unfilled marker in solution code: {source}")
    return source.strip() + "\n"


def solution(apps: tuple[str, ...], body: str, **values: Any) -> str:
    return PREAMBLE + _login(*apps) + _code(body, **values)


def without_preamble(code: str) -> str:
    """A reference solution for a session where :data:`PREAMBLE` already ran (``passwords``, ``me`` and
    ``fetch_all`` predefined: the compact prompt's sessions)."""
    return code[len(PREAMBLE):] if code.startswith(PREAMBLE) else code


def _new_person(world: World, rng: random.Random) -> Person:
    used = {r["first_name"] for r in world.tables["payment_users"]} | {r["first_name"] for r in
                                                                       world.tables["contacts"]}
    first = rng.choice([n for n in FIRST_NAMES if n not in used])
    last = rng.choice(LAST_NAMES)
    return Person(first, last, f"{first}.{last}@mailbox.test".lower(), f"555{rng.randrange(10**6, 10**7)}",
                  f"{rng.randrange(1970, 2000)}-0{rng.randrange(1, 10)}-1{rng.randrange(0, 9)}")


def _pick_contacts(world: World, rng: random.Random, k: int, relationship: str | None = None) -> list[tuple]:
    pool = [c for c in world.contacts if relationship is None or c[1] == relationship]
    return rng.sample(pool, k)


def _days_ago(world: World, rng: random.Random, low: float, high: float) -> str:
    return random_time(rng, world.now, low, high)


def _money(rng: random.Random, low: float, high: float) -> float:
    return round(rng.uniform(low, high), 2)


def _only_new(t: Checker, table: str, count: int, what: str) -> list[dict[str, Any]]:
    added = t.diff(table).added
    t.case(f"exactly {count} new {what}", len(added) == count, f"found {len(added)} new {what}: {added}")
    return added


# --------------------------------------------------------------------------------------------------------------
# templates: lookups (questions answered through complete_task(answer=...))
# --------------------------------------------------------------------------------------------------------------

@template(difficulty=1)
def contact_phone_number(world: World, rng: random.Random) -> TaskSpec:
    (person, rel), = _pick_contacts(world, rng, 1)
    body = '''
contacts = fetch_all(apis.phone.search_contacts, access_token=phone_token, query=<<FIRST>>, relationship=<<REL>>)
match = [c for c in contacts if c["first_name"] == <<FIRST>>][0]
apis.supervisor.complete_task(answer=match["phone_number"])
'''

    def check(t: Checker) -> None:
        t.answer_is(person.phone_number)
        t.only_tables_changed()

    return TaskSpec(f"What is the phone number of my {rel} {person.first_name}?",
                    solution(("phone",), body, FIRST=person.first_name, REL=rel), check, ("phone",))


@template(difficulty=1)
def payments_balance(world: World, rng: random.Random) -> TaskSpec:
    balance = world.tables["wallet"][0]["balance"]
    body = '''
balance = apis.payments.show_balance(access_token=payments_token)["balance"]
apis.supervisor.complete_task(answer=balance)
'''

    def check(t: Checker) -> None:
        t.answer_is(balance)
        t.only_tables_changed()

    phrasing = rng.choice(("What is my current balance on the payments app?",
                           "How much money do I have in my payments account right now?"))
    return TaskSpec(phrasing, solution(("payments",), body), check, ("payments",))


@template(difficulty=1)
def count_relationship_contacts(world: World, rng: random.Random) -> TaskSpec:
    rel = rng.choice(("friend", "coworker", "family"))
    for _ in range(rng.randrange(3, 6)):  # enough matches that a single default page (5) is not all of them
        p = _new_person(world, rng)
        world.add("contacts", first_name=p.first_name, last_name=p.last_name, phone_number=p.phone_number,
                  email=p.email, relationship=rel, birthday=p.birthday)
    count = sum(1 for c in world.tables["contacts"] if c["relationship"] == rel)
    body = '''
contacts = fetch_all(apis.phone.search_contacts, access_token=phone_token, relationship=<<REL>>)
apis.supervisor.complete_task(answer=len(contacts))
'''

    def check(t: Checker) -> None:
        t.answer_is(count)
        t.only_tables_changed()

    return TaskSpec(f"How many contacts in my phone are labeled with the relationship '{rel}'?",
                    solution(("phone",), body, REL=rel), check, ("phone",))


@template(difficulty=2)
def received_total_recent(world: World, rng: random.Random) -> TaskSpec:
    days = rng.choice((7, 10, 14))
    me = world.user.email
    for _ in range(rng.randrange(3, 6)):
        (p, _), = _pick_contacts(world, rng, 1)
        world.add("transactions", sender_email=p.email, receiver_email=me, amount=_money(rng, 5, 90),
                  description=rng.choice(PAYMENT_DESCRIPTIONS), created_at=_days_ago(world, rng, 0.1, days - 0.5))
    for low, high, incoming in ((0.1, days - 0.5, False), (days + 0.5, days + 6, True)):  # distractors
        (p, _), = _pick_contacts(world, rng, 1)
        sender, receiver = (p.email, me) if incoming else (me, p.email)
        world.add("transactions", sender_email=sender, receiver_email=receiver, amount=_money(rng, 5, 90),
                  description=rng.choice(PAYMENT_DESCRIPTIONS), created_at=_days_ago(world, rng, low, high))
    since = iso(world.now - timedelta(days=days))
    total = round(sum(t["amount"] for t in world.tables["transactions"]
                      if t["receiver_email"] == me and t["created_at"] >= since), 2)
    body = '''
since = (datetime.datetime.now() - datetime.timedelta(days=<<DAYS>>)).isoformat()
received = fetch_all(apis.payments.show_transactions, access_token=payments_token, direction="received",
                     min_created_at=since)
apis.supervisor.complete_task(answer=round(sum(t["amount"] for t in received), 2))
'''

    def check(t: Checker) -> None:
        t.answer_is(total)
        t.only_tables_changed()

    return TaskSpec(f"How much money did I receive in total on the payments app over the last {days} days? "
                    "Answer with just the amount.", solution(("payments",), body, DAYS=days), check, ("payments",))


@template(difficulty=2)
def top_sender_recent(world: World, rng: random.Random) -> TaskSpec:
    me = world.user.email
    senders = _pick_contacts(world, rng, 3)
    for i, (p, _) in enumerate(senders):
        # The winner sends fewer but larger payments: counting payments instead of summing them fails.
        n, low, high = (1, 150, 200) if i == 0 else (3, 20, 45)
        for _ in range(n):
            world.add("transactions", sender_email=p.email, receiver_email=me, amount=_money(rng, low, high),
                      description=rng.choice(PAYMENT_DESCRIPTIONS), created_at=_days_ago(world, rng, 0.2, 25))
    since = iso(world.now - timedelta(days=30))
    totals: dict[str, float] = {}
    for t in world.tables["transactions"]:
        if t["receiver_email"] == me and t["created_at"] >= since:
            totals[t["sender_email"]] = totals.get(t["sender_email"], 0.0) + t["amount"]
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])
    if len(ranked) > 1 and ranked[0][1] - ranked[1][1] < 5:  # keep the winner unambiguous
        world.add("transactions", sender_email=ranked[0][0], receiver_email=me, amount=25.0, description="Dinner",
                  created_at=_days_ago(world, rng, 0.2, 25))
    winner_email = ranked[0][0]
    winner = next(f"{u['first_name']} {u['last_name']}" for u in world.tables["payment_users"]
                  if u["email"] == winner_email)
    body = '''
since = (datetime.datetime.now() - datetime.timedelta(days=30)).isoformat()
received = fetch_all(apis.payments.show_transactions, access_token=payments_token, direction="received",
                     min_created_at=since)
totals = Counter()
names = {}
for t in received:
    totals[t["sender_email"]] += t["amount"]
    names[t["sender_email"]] = t["sender_name"]
apis.supervisor.complete_task(answer=names[totals.most_common(1)[0][0]])
'''

    def check(t: Checker) -> None:
        t.answer_is(winner)
        t.only_tables_changed()

    return TaskSpec("Who sent me the most money in total on the payments app over the last 30 days? "
                    "Answer with their full name.", solution(("payments",), body), check, ("payments",))


@template(difficulty=1)
def count_jpg_files(world: World, rng: random.Random) -> TaskSpec:
    year = rng.choice((2022, 2023))
    directory = f"~/photos/{year}/"
    for sub, ext, n in (("", "jpg", rng.randrange(1, 4)), ("edited/", "jpg", rng.randrange(1, 3)),
                        ("", "png", rng.randrange(1, 3))):
        for _ in range(n):
            path = f"{directory}{sub}img_{rng.randrange(1000, 9999)}.{ext}"
            if all(f["path"] != path for f in world.tables["files"]):
                created = _days_ago(world, rng, 5, 300)
                world.add("files", path=path, content="<binary image data>", created_at=created, updated_at=created)
    count = sum(1 for f in world.tables["files"] if f["path"].startswith(directory) and f["path"].endswith(".jpg"))
    body = '''
paths = apis.file_system.show_directory(access_token=file_system_token, directory_path=<<DIR>>, recursive=True)
apis.supervisor.complete_task(answer=len([p for p in paths if p.endswith(".jpg")]))
'''

    def check(t: Checker) -> None:
        t.answer_is(count)
        t.only_tables_changed()

    return TaskSpec(f"How many .jpg files are in my {directory} directory, including its sub-directories?",
                    solution(("file_system",), body, DIR=directory), check, ("file_system",))


@template(difficulty=1)
def count_unread_emails(world: World, rng: random.Random) -> TaskSpec:
    (p, _), = _pick_contacts(world, rng, 1)
    for i in range(rng.randrange(3, 6)):
        world.add("emails", sender=p.email, recipients=json.dumps([world.user.email]),
                  subject=rng.choice(("Hello", "Quick update", "Question", "Photos")), body="See you soon.",
                  sent_at=_days_ago(world, rng, 0.2, 30), folder="inbox", is_read=int(i % 2 == 0))
    count = sum(1 for e in world.tables["emails"] if e["sender"] == p.email and e["folder"] == "inbox"
                and not e["is_read"])
    body = '''
contacts = fetch_all(apis.phone.search_contacts, access_token=phone_token, query=<<NAME>>)
sender = [c for c in contacts if c["first_name"] + " " + c["last_name"] == <<NAME>>][0]["email"]
emails = fetch_all(apis.email.search_emails, access_token=email_token, folder="inbox", sender=sender)
apis.supervisor.complete_task(answer=len([e for e in emails if not e["is_read"]]))
'''

    def check(t: Checker) -> None:
        t.answer_is(count)
        t.only_tables_changed()

    return TaskSpec(f"How many unread emails from {p.full_name} are in my inbox?",
                    solution(("phone", "email"), body, NAME=p.full_name), check, ("phone", "email"))


# --------------------------------------------------------------------------------------------------------------
# templates: payments actions
# --------------------------------------------------------------------------------------------------------------

def _check_one_payment(t: Checker, email: str, amount: float, description: str, *, receiver: str,
                       amount_what: str, description_what: str) -> None:
    """Exactly one new transaction, to ``email``, of ``amount`` with ``description``; only the wallet moved."""
    added = _only_new(t, "transactions", 1, "transaction")
    row = added[0] if len(added) == 1 else {}
    t.case(f"{receiver} {email}", row.get("receiver_email") == email, f"got {row}")
    t.case(f"the amount is {amount_what}{amount:.2f}", abs(row.get("amount", -1) - amount) < 0.005, f"got {row}")
    t.case(f"the description is {description_what}{description!r}", row.get("description") == description,
           f"got {row}")
    _check_balance(t, -amount)
    t.only_tables_changed("transactions", "wallet")


def _check_balance(t: Checker, expected_delta: float) -> None:
    old, new = t.before["wallet"][0]["balance"], t.after["wallet"][0]["balance"]
    t.case(f"the payments balance changes by {expected_delta:+.2f}", abs((new - old) - expected_delta) < 0.005,
           f"balance went from {old:.2f} to {new:.2f}")


@template(difficulty=2)
def pay_back_recent(world: World, rng: random.Random) -> TaskSpec:
    me = world.user.email
    senders = _pick_contacts(world, rng, rng.randrange(2, 4))
    for i, (p, _) in enumerate(senders):
        for _ in range(2 if i == 0 else 1):  # one person sent twice: the payback is the total
            world.add("transactions", sender_email=p.email, receiver_email=me, amount=_money(rng, 8, 70),
                      description=rng.choice(PAYMENT_DESCRIPTIONS), created_at=_days_ago(world, rng, 0.2, 6.5))
    (other, _), = _pick_contacts(world, rng, 1)
    world.add("transactions", sender_email=me, receiver_email=other.email, amount=_money(rng, 8, 70),
              description="Coffee", created_at=_days_ago(world, rng, 0.2, 6.5))
    since = iso(world.now - timedelta(days=7))
    owed: dict[str, float] = {}
    for t in world.tables["transactions"]:
        if t["receiver_email"] == me and t["created_at"] >= since:
            owed[t["sender_email"]] = round(owed.get(t["sender_email"], 0.0) + t["amount"], 2)
    body = '''
since = (datetime.datetime.now() - datetime.timedelta(days=7)).isoformat()
received = fetch_all(apis.payments.show_transactions, access_token=payments_token, direction="received",
                     min_created_at=since)
owed = defaultdict(float)
for t in received:
    owed[t["sender_email"]] += t["amount"]
for email, amount in owed.items():
    apis.payments.send_money(access_token=payments_token, receiver_email=email, amount=round(amount, 2),
                             description="Paying you back")
apis.supervisor.complete_task()
'''

    def check(t: Checker) -> None:
        added = t.diff("transactions").added
        paid: dict[str, float] = {}
        for row in added:
            if row["sender_email"] == me:
                paid[row["receiver_email"]] = round(paid.get(row["receiver_email"], 0.0) + row["amount"], 2)
        t.case("everyone who sent money in the last 7 days is paid back", set(owed) <= set(paid),
               f"not paid: {sorted(set(owed) - set(paid))}")
        t.case("each person is paid back exactly the total they sent",
               all(abs(paid.get(e, 0) - a) < 0.005 for e, a in owed.items()), f"owed {owed}, paid {paid}")
        t.case("every new payment has the description 'Paying you back'",
               bool(added) and all(r["description"] == "Paying you back" for r in added),
               f"descriptions: {[r['description'] for r in added]}")
        t.case("no money is sent to anyone else", set(paid) <= set(owed), f"extra: {sorted(set(paid) - set(owed))}")
        _check_balance(t, -round(sum(owed.values()), 2))
        t.only_tables_changed("transactions", "wallet")

    return TaskSpec("Pay back everyone who sent me money on the payments app in the last 7 days: send each of them "
                    "the total amount they sent me in that period, with the description 'Paying you back'.",
                    solution(("payments",), body), check, ("payments",))


@template(difficulty=2)
def send_money_to_relation(world: World, rng: random.Random) -> TaskSpec:
    (p, rel), = _pick_contacts(world, rng, 1)
    amount = float(rng.randrange(10, 150))
    description = rng.choice(PAYMENT_DESCRIPTIONS)
    body = '''
contacts = fetch_all(apis.phone.search_contacts, access_token=phone_token, relationship=<<REL>>)
email = [c for c in contacts if c["first_name"] == <<FIRST>>][0]["email"]
apis.payments.send_money(access_token=payments_token, receiver_email=email, amount=<<AMOUNT>>,
                         description=<<DESC>>)
apis.supervisor.complete_task()
'''

    def check(t: Checker) -> None:
        _check_one_payment(t, p.email, amount, description, receiver="the money goes to", amount_what="",
                           description_what="")

    return TaskSpec(f"Send ${amount:.2f} to my {rel} {p.first_name} on the payments app with the description "
                    f"'{description}'.", solution(("phone", "payments"), body, REL=rel, FIRST=p.first_name,
                                                   AMOUNT=amount, DESC=description), check, ("phone", "payments"))


@template(difficulty=3)
def approve_requests_from_relation(world: World, rng: random.Random) -> TaskSpec:
    rel = rng.choice(("friend", "family", "roommate"))
    wanted = _pick_contacts(world, rng, 2, rel)
    others = rng.sample([p for p, r in world.contacts if r != rel], 1) + rng.sample(world.strangers, 1)
    approve_ids, decline_ids = [], []
    for people, ids in ((wanted, approve_ids), ([(p, None) for p in others], decline_ids)):
        for p, _ in people:
            created = _days_ago(world, rng, 0.5, 9)
            row = world.add("payment_requests", requester_email=p.email, payer_email=world.user.email,
                            amount=_money(rng, 10, 60), description=rng.choice(PAYMENT_DESCRIPTIONS),
                            status="pending", created_at=created, updated_at=created)
            ids.append(row["id"])
    amounts = {r["id"]: r["amount"] for r in world.tables["payment_requests"]}
    requesters = {r["id"]: r["requester_email"] for r in world.tables["payment_requests"]}
    body = '''
contacts = fetch_all(apis.phone.search_contacts, access_token=phone_token, relationship=<<REL>>)
emails = {c["email"] for c in contacts}
pending = fetch_all(apis.payments.show_payment_requests, access_token=payments_token, direction="received",
                    status="pending")
for request in pending:
    if request["requester_email"] in emails:
        apis.payments.approve_payment_request(access_token=payments_token,
                                              payment_request_id=request["payment_request_id"])
    else:
        apis.payments.decline_payment_request(access_token=payments_token,
                                              payment_request_id=request["payment_request_id"])
apis.supervisor.complete_task()
'''

    def check(t: Checker) -> None:
        status = {r["id"]: r["status"] for r in t.after["payment_requests"]}
        t.case(f"the pending requests from my {rel}s are approved", all(status.get(i) == "approved"
                                                                        for i in approve_ids),
               f"statuses: {[status.get(i) for i in approve_ids]}")
        t.case("the other pending requests are declined", all(status.get(i) == "declined" for i in decline_ids),
               f"statuses: {[status.get(i) for i in decline_ids]}")
        t.case("requests handled earlier are left as they were",
               all(r["id"] in approve_ids + decline_ids for _, r in t.diff("payment_requests").changed)
               and not t.diff("payment_requests").added and not t.diff("payment_requests").removed,
               "other payment requests were modified")
        paid = sorted((r["receiver_email"], r["amount"]) for r in t.diff("transactions").added)
        expected = sorted((requesters[i], amounts[i]) for i in approve_ids)
        t.case("exactly the approved requests are paid", paid == expected, f"paid {paid}, expected {expected}")
        _check_balance(t, -round(sum(amounts[i] for i in approve_ids), 2))
        t.only_tables_changed("payment_requests", "transactions", "wallet")

    return TaskSpec(f"Approve every pending payment request I received from my {rel}s (as labeled in my phone "
                    "contacts) on the payments app, and decline all the other pending requests.",
                    solution(("phone", "payments"), body, REL=rel), check, ("phone", "payments"))


@template(difficulty=2)
def split_bill_request(world: World, rng: random.Random) -> TaskSpec:
    people = [p for p, _ in _pick_contacts(world, rng, rng.randrange(2, 4))]
    total = round(rng.uniform(40, 200), 2)
    share = round(total / (len(people) + 1), 2)
    description = rng.choice(("Dinner", "Concert tickets", "Groceries", "Cabin rental"))
    names = [p.full_name for p in people]
    listed = ", ".join(names[:-1]) + f" and {names[-1]}"
    body = '''
share = round(<<TOTAL>> / (len(<<NAMES>>) + 1), 2)
for name in <<NAMES>>:
    users = fetch_all(apis.payments.search_users, access_token=payments_token, query=name)
    email = [u for u in users if u["first_name"] + " " + u["last_name"] == name][0]["email"]
    apis.payments.create_payment_request(access_token=payments_token, user_email=email, amount=share,
                                         description=<<DESC>>)
apis.supervisor.complete_task()
'''

    def check(t: Checker) -> None:
        added = _only_new(t, "payment_requests", len(people), "payment requests")
        t.case("one request goes to each person who shared the bill",
               sorted(r["payer_email"] for r in added) == sorted(p.email for p in people),
               f"requested from {[r['payer_email'] for r in added]}")
        t.case(f"each request is for the equal share {share:.2f}",
               bool(added) and all(abs(r["amount"] - share) < 0.005 for r in added),
               f"amounts {[r['amount'] for r in added]}")
        t.case(f"each request has the description {description!r}",
               bool(added) and all(r["description"] == description for r in added),
               f"descriptions {[r['description'] for r in added]}")
        t.only_tables_changed("payment_requests")

    return TaskSpec(f"I paid ${total:.2f} for '{description}', shared equally between me, {listed}. Request each "
                    f"of them their share (rounded to cents) on the payments app with the description "
                    f"'{description}'.", solution(("payments",), body, TOTAL=total, NAMES=names, DESC=description),
                    check, ("payments",))


@template(difficulty=3)
def pay_bill_from_email(world: World, rng: random.Random) -> TaskSpec:
    (p, _), = _pick_contacts(world, rng, 1)
    amount = _money(rng, 20, 140)
    thing = rng.choice(("electricity bill", "internet bill", "water bill", "cleaning service"))
    subject = f"{thing.capitalize()} for {rng.choice(('March', 'April'))}"
    world.add("emails", sender=p.email, recipients=json.dumps([world.user.email]), subject=subject,
              body=f"Hi! The {thing} came to a total of ${amount:.2f}. Could you send it to me on payments? "
                   f"Thanks, {p.first_name}", sent_at=_days_ago(world, rng, 0.2, 3), folder="inbox", is_read=0)
    body = '''
users = fetch_all(apis.payments.search_users, access_token=payments_token, query=<<NAME>>)
sender = [u for u in users if u["first_name"] + " " + u["last_name"] == <<NAME>>][0]["email"]
emails = fetch_all(apis.email.search_emails, access_token=email_token, query="total of", sender=sender)
bill = apis.email.show_email(access_token=email_token, email_id=emails[0]["email_id"])
amount = float(re.search(r"\\$([0-9]+(?:\\.[0-9]+)?)", bill["body"]).group(1))
apis.payments.send_money(access_token=payments_token, receiver_email=sender, amount=amount,
                         description=bill["subject"])
apis.supervisor.complete_task()
'''

    def check(t: Checker) -> None:
        _check_one_payment(t, p.email, amount, subject, receiver="the payment goes to", amount_what="the billed ",
                           description_what="the email subject ")

    return TaskSpec(f"{p.full_name} emailed me about a bill. Pay them the amount from that email on the payments "
                    "app, using the email's subject as the payment description.",
                    solution(("email", "payments"), body, NAME=p.full_name), check, ("email", "payments"))


# --------------------------------------------------------------------------------------------------------------
# templates: phone and email actions
# --------------------------------------------------------------------------------------------------------------

@template(difficulty=2)
def email_phone_number(world: World, rng: random.Random) -> TaskSpec:
    (x, rel), (y, _) = _pick_contacts(world, rng, 2)
    subject = f"{x.first_name}'s phone number"
    body = '''
contacts = fetch_all(apis.phone.search_contacts, access_token=phone_token)
x = [c for c in contacts if c["first_name"] == <<X>> and c["relationship"] == <<REL>>][0]
y = [c for c in contacts if c["first_name"] + " " + c["last_name"] == <<Y>>][0]
apis.email.send_email(access_token=email_token, recipients=[y["email"]], subject=<<SUBJECT>>,
                      body=x["phone_number"])
apis.supervisor.complete_task()
'''

    def check(t: Checker) -> None:
        added = _only_new(t, "emails", 1, "email")
        row = added[0] if len(added) == 1 else {"recipients": "[]"}
        t.case(f"the email is sent to {y.email} only", json.loads(row["recipients"]) == [y.email], f"got {row}")
        t.case(f"the subject is {subject!r}", row.get("subject") == subject, f"got {row.get('subject')!r}")
        t.case(f"the body contains {x.first_name}'s phone number", x.phone_number in row.get("body", ""),
               f"body: {row.get('body')!r}")
        t.only_tables_changed("emails")

    return TaskSpec(f"Email the phone number of my {rel} {x.first_name} to {y.full_name}, with the subject "
                    f"'{subject}'.", solution(("phone", "email"), body, X=x.first_name, REL=rel, Y=y.full_name,
                                              SUBJECT=subject), check, ("phone", "email"))


@template(difficulty=2)
def birthday_texts(world: World, rng: random.Random) -> TaskSpec:
    today = world.now.date()
    chosen = {p.phone_number for p, _ in _pick_contacts(world, rng, 2)}
    for row in world.tables["contacts"]:
        month_day = row["birthday"][5:]
        if row["phone_number"] in chosen:
            row["birthday"] = f"{row['birthday'][:4]}-{today:%m-%d}"
        elif month_day == f"{today:%m-%d}":
            row["birthday"] = f"{row['birthday'][:4]}-{today:%m}-{(today.day % 27) + 1:02d}"
    message = "Happy birthday!"
    body = '''
today = datetime.date.today()
contacts = fetch_all(apis.phone.search_contacts, access_token=phone_token)
for c in contacts:
    if c["birthday"] and c["birthday"][5:] == today.isoformat()[5:]:
        apis.phone.send_text_message(access_token=phone_token, phone_number=c["phone_number"], message=<<MSG>>)
apis.supervisor.complete_task()
'''

    def check(t: Checker) -> None:
        added = t.diff("text_messages").added
        to = sorted(r["receiver_number"] for r in added)
        t.case("every contact whose birthday is today gets a text", set(chosen) <= set(to), f"texted {to}")
        t.case(f"the texts say {message!r}", bool(added) and all(r["message"] == message for r in added),
               f"messages {[r['message'] for r in added]}")
        t.case("no one else gets a text and no one gets two", to == sorted(chosen), f"texted {to}")
        t.only_tables_changed("text_messages")

    return TaskSpec(f"Send the text message '{message}' to every contact in my phone whose birthday is today.",
                    solution(("phone",), body, MSG=message), check, ("phone",))


@template(difficulty=3)
def update_contact_from_email(world: World, rng: random.Random) -> TaskSpec:
    (p, _), = _pick_contacts(world, rng, 1)
    new_number = f"555{rng.randrange(10**6, 10**7)}"
    world.add("emails", sender=p.email, recipients=json.dumps([world.user.email]), subject="New phone number",
              body=f"Hi! I switched carriers, my new phone number is {new_number}. Talk soon, {p.first_name}",
              sent_at=_days_ago(world, rng, 0.2, 2), folder="inbox", is_read=0)
    contact_id = next(c["id"] for c in world.tables["contacts"] if c["phone_number"] == p.phone_number)
    body = '''
contacts = fetch_all(apis.phone.search_contacts, access_token=phone_token, query=<<FIRST>>)
contact = [c for c in contacts if c["first_name"] + " " + c["last_name"] == <<NAME>>][0]
emails = fetch_all(apis.email.search_emails, access_token=email_token, sender=contact["email"],
                   query="phone number")
text = apis.email.show_email(access_token=email_token, email_id=emails[0]["email_id"])["body"]
number = re.search(r"[0-9]{10}", text).group(0)
apis.phone.update_contact(access_token=phone_token, contact_id=contact["contact_id"], phone_number=number)
apis.supervisor.complete_task()
'''

    def check(t: Checker) -> None:
        after = {c["id"]: c for c in t.after["contacts"]}
        before = {c["id"]: c for c in t.before["contacts"]}
        row = after.get(contact_id, {})
        t.case(f"{p.full_name}'s phone number is now {new_number}", row.get("phone_number") == new_number,
               f"contact: {row}")
        t.case("the contact's other fields are unchanged",
               bool(row) and {k: v for k, v in row.items() if k != "phone_number"} ==
               {k: v for k, v in before[contact_id].items() if k != "phone_number"}, f"contact: {row}")
        t.case("no other contact is added, removed or changed",
               {k: v for k, v in after.items() if k != contact_id} ==
               {k: v for k, v in before.items() if k != contact_id}, "other contacts changed")
        t.only_tables_changed("contacts")

    return TaskSpec(f"{p.full_name} emailed me their new phone number. Update their contact in my phone with it.",
                    solution(("phone", "email"), body, FIRST=p.first_name, NAME=p.full_name), check,
                    ("phone", "email"))


@template(difficulty=2)
def reply_to_latest_email(world: World, rng: random.Random) -> TaskSpec:
    (p, _), = _pick_contacts(world, rng, 1)
    subjects = rng.sample(("Lunch on Friday?", "Draft for review", "Trip photos", "Book club", "Moving boxes"), 2)
    for subject, (low, high) in zip(subjects, ((3, 6), (0.2, 2.5))):
        world.add("emails", sender=p.email, recipients=json.dumps([world.user.email]), subject=subject,
                  body=_sentence_for(rng), sent_at=_days_ago(world, rng, low, high), folder="inbox", is_read=0)
    latest = max((e for e in world.tables["emails"] if e["sender"] == p.email and e["folder"] == "inbox"),
                 key=lambda e: (e["sent_at"], e["id"]))
    message = rng.choice(("Sounds good, thanks!", "Got it, I will take a look tonight.", "Count me in!"))
    body = '''
users = fetch_all(apis.payments.search_users, access_token=payments_token, query=<<NAME>>)
sender = [u for u in users if u["first_name"] + " " + u["last_name"] == <<NAME>>][0]["email"]
latest = fetch_all(apis.email.search_emails, access_token=email_token, sender=sender)[0]
apis.email.reply_to_email(access_token=email_token, email_id=latest["email_id"], body=<<MSG>>)
apis.supervisor.complete_task()
'''

    def check(t: Checker) -> None:
        added = _only_new(t, "emails", 1, "email")
        row = added[0] if len(added) == 1 else {"recipients": "[]"}
        t.case(f"the reply goes to {p.email}", json.loads(row["recipients"]) == [p.email], f"got {row}")
        t.case(f"the reply answers the latest email ('Re: {latest['subject']}')",
               row.get("subject") == f"Re: {latest['subject']}", f"subject {row.get('subject')!r}")
        t.case(f"the reply says {message!r}", message in row.get("body", ""), f"body {row.get('body')!r}")
        t.only_tables_changed("emails")

    return TaskSpec(f"Reply to the latest email from {p.full_name} with the message '{message}'.",
                    solution(("payments", "email"), body, NAME=p.full_name, MSG=message), check, ("payments", "email"))


def _sentence_for(rng: random.Random) -> str:
    return rng.choice(("Let me know what you think.", "Here is the plan for next week.",
                       "Are you free this weekend?", "I attached the details below."))


@template(difficulty=3)
def text_total_sent(world: World, rng: random.Random) -> TaskSpec:
    (p, rel), = _pick_contacts(world, rng, 1)
    for _ in range(rng.randrange(2, 4)):
        world.add("transactions", sender_email=world.user.email, receiver_email=p.email, amount=_money(rng, 5, 60),
                  description=rng.choice(PAYMENT_DESCRIPTIONS), created_at=_days_ago(world, rng, 1, 80))
    total = round(sum(t["amount"] for t in world.tables["transactions"]
                      if t["sender_email"] == world.user.email and t["receiver_email"] == p.email), 2)
    body = '''
contacts = fetch_all(apis.phone.search_contacts, access_token=phone_token, relationship=<<REL>>)
contact = [c for c in contacts if c["first_name"] == <<FIRST>>][0]
sent = fetch_all(apis.payments.show_transactions, access_token=payments_token, direction="sent",
                 user_email=contact["email"])
total = round(sum(t["amount"] for t in sent), 2)
apis.phone.send_text_message(access_token=phone_token, phone_number=contact["phone_number"],
                             message=f"{total:.2f}")
apis.supervisor.complete_task()
'''

    def check(t: Checker) -> None:
        added = _only_new(t, "text_messages", 1, "text message")
        row = added[0] if len(added) == 1 else {}
        t.case(f"the text goes to {p.first_name}'s number", row.get("receiver_number") == p.phone_number,
               f"got {row}")
        t.case(f"the text contains the total {total:.2f}", f"{total:.2f}" in row.get("message", ""),
               f"message {row.get('message')!r}")
        t.only_tables_changed("text_messages")

    return TaskSpec(f"Text my {rel} {p.first_name} the total amount of money I have ever sent them on the payments "
                    "app, written with two decimals (like 12.50).",
                    solution(("phone", "payments"), body, REL=rel, FIRST=p.first_name), check, ("phone", "payments"))


# --------------------------------------------------------------------------------------------------------------
# templates: notes and files
# --------------------------------------------------------------------------------------------------------------

def _add_note(world: World, rng: random.Random, title: str, content: str, tags: list[str], pinned: bool) -> dict:
    created = _days_ago(world, rng, 1, 60)
    return world.add("notes", title=title, content=content, tags=json.dumps(sorted(tags)), pinned=int(pinned),
                     created_at=created, updated_at=created)


@template(difficulty=3)
def notes_tag_to_file(world: World, rng: random.Random) -> TaskSpec:
    tag = rng.choice(NOTE_TAGS)
    for i in range(2):
        _add_note(world, rng, f"{tag.capitalize()} note {i + 1}", f"Remember the {rng.choice(('plan', 'list', 'idea'))}"
                  f" number {rng.randrange(100)}.", [tag], False)
    path = f"~/documents/{tag}_notes.txt"
    tagged = [n for n in world.tables["notes"] if tag in json.loads(n["tags"])]
    body = '''
notes = fetch_all(apis.notes.search_notes, access_token=notes_token, tag=<<TAG>>)
sections = []
for n in notes:
    note = apis.notes.show_note(access_token=notes_token, note_id=n["note_id"])
    sections.append(note["title"] + "\\n" + note["content"])
apis.file_system.create_file(access_token=file_system_token, file_path=<<PATH>>, content="\\n\\n".join(sections))
for n in notes:
    apis.notes.delete_note(access_token=notes_token, note_id=n["note_id"])
apis.supervisor.complete_task()
'''

    def check(t: Checker) -> None:
        files = {f["path"]: f for f in t.after["files"]}
        content = files.get(path, {}).get("content", "")
        t.case(f"the file {path} exists", path in files, "file not found")
        t.case(f"the file holds the title and content of every note tagged '{tag}'",
               path in files and all(n["title"] in content and n["content"] in content for n in tagged),
               f"content: {content[:300]!r}")
        remaining = {n["id"] for n in t.after["notes"]}
        t.case(f"the notes tagged '{tag}' are deleted", not any(n["id"] in remaining for n in tagged),
               "some tagged notes remain")
        d = t.diff("notes")
        t.case("the other notes are untouched", not d.added and not d.changed and
               all(tag in json.loads(n["tags"]) for n in d.removed), "other notes changed")
        fd = t.diff("files")
        t.case("no other file is created, changed or deleted", not fd.removed and not fd.changed and
               [f["path"] for f in fd.added] in ([path], []), f"file changes: {fd}")
        t.only_tables_changed("notes", "files")

    return TaskSpec(f"Move all my notes tagged '{tag}' into a new file {path} (write each note's title followed by its "
                    "content), then delete those notes.", solution(("notes", "file_system"), body, TAG=tag, PATH=path),
                    check, ("notes", "file_system"))


@template(difficulty=3)
def note_from_email(world: World, rng: random.Random) -> TaskSpec:
    (p, _), = _pick_contacts(world, rng, 1)
    email_body = f"Hi! Here are the details: {rng.choice(('meet at 7pm', 'bring snacks', 'gate B12'))}, " \
                 f"reference {rng.randrange(1000, 9999)}."
    world.add("emails", sender=p.email, recipients=json.dumps([world.user.email]), subject="Details",
              body=email_body, sent_at=_days_ago(world, rng, 0.05, 0.4), folder="inbox", is_read=0)
    title = rng.choice(("Plan from", "Info from", "Message from")) + f" {p.first_name}"
    body = '''
users = fetch_all(apis.payments.search_users, access_token=payments_token, query=<<NAME>>)
sender = [u for u in users if u["first_name"] + " " + u["last_name"] == <<NAME>>][0]["email"]
latest = fetch_all(apis.email.search_emails, access_token=email_token, sender=sender)[0]
text = apis.email.show_email(access_token=email_token, email_id=latest["email_id"])["body"]
apis.notes.create_note(access_token=notes_token, title=<<TITLE>>, content=text, tags=["email"])
apis.supervisor.complete_task()
'''

    def check(t: Checker) -> None:
        added = _only_new(t, "notes", 1, "note")
        row = added[0] if len(added) == 1 else {}
        t.case(f"the note is titled {title!r}", row.get("title") == title, f"got {row.get('title')!r}")
        t.case("the note's content is the body of the latest email",
               row.get("content", "").strip() == email_body, f"got {row.get('content')!r}")
        t.case("the note is tagged 'email' (and nothing else)", json.loads(row.get("tags", "[]")) == ["email"],
               f"got {row.get('tags')}")
        t.only_tables_changed("notes")

    return TaskSpec(f"Create a note titled '{title}' whose content is the body of the most recent email "
                    f"{p.full_name} sent me, tagged 'email'.",
                    solution(("payments", "email", "notes"), body, NAME=p.full_name, TITLE=title), check,
                    ("payments", "email", "notes"))


@template(difficulty=2)
def append_to_shopping_list(world: World, rng: random.Random) -> TaskSpec:
    items = rng.sample(("eggs", "milk", "rice", "apples", "coffee", "bread", "tomatoes", "olive oil"), 4)
    note = _add_note(world, rng, "Shopping list", "\n".join(items[:3]), ["personal"], False)
    item = items[3]
    body = '''
notes = fetch_all(apis.notes.search_notes, access_token=notes_token, query="Shopping list")
note_id = [n for n in notes if n["title"] == "Shopping list"][0]["note_id"]
note = apis.notes.show_note(access_token=notes_token, note_id=note_id)
apis.notes.update_note(access_token=notes_token, note_id=note_id, content=note["content"].rstrip() + "\\n" + <<ITEM>>)
apis.supervisor.complete_task()
'''

    def check(t: Checker) -> None:
        after = next((n for n in t.after["notes"] if n["id"] == note["id"]), {})
        t.case(f"'{item}' is the new last line of the shopping list",
               after.get("content", "").rstrip().split("\n")[-1].strip() == item, f"content {after.get('content')!r}")
        t.case("the earlier lines are kept in order",
               after.get("content", "").rstrip().split("\n")[:-1] == note["content"].split("\n"),
               f"content {after.get('content')!r}")
        d = t.diff("notes")
        t.case("no other note changes", not d.added and not d.removed and
               all(old["id"] == note["id"] for old, _ in d.changed), "other notes changed")
        t.only_tables_changed("notes")

    return TaskSpec(f"Add '{item}' as a new last line to my note titled 'Shopping list'.",
                    solution(("notes",), body, ITEM=item), check, ("notes",))


@template(difficulty=2)
def pin_tagged_notes(world: World, rng: random.Random) -> TaskSpec:
    tag = rng.choice(NOTE_TAGS)
    _add_note(world, rng, f"{tag.capitalize()} checklist", "Check the list.", [tag], False)
    _add_note(world, rng, f"{tag.capitalize()} archive", "Old items.", [tag], True)
    other = next(t for t in NOTE_TAGS if t != tag)
    _add_note(world, rng, "Pinned reminder", "Water the plants.", [other], True)
    tagged = {n["id"] for n in world.tables["notes"] if tag in json.loads(n["tags"])}
    body = '''
for n in fetch_all(apis.notes.search_notes, access_token=notes_token):
    should_pin = <<TAG>> in n["tags"]
    if n["pinned"] != should_pin:
        apis.notes.update_note(access_token=notes_token, note_id=n["note_id"], pinned=should_pin)
apis.supervisor.complete_task()
'''

    def check(t: Checker) -> None:
        pinned = {n["id"]: bool(n["pinned"]) for n in t.after["notes"]}
        t.case(f"every note tagged '{tag}' is pinned", all(pinned.get(i) for i in tagged), f"pinned: {pinned}")
        t.case("every other note is unpinned", not any(v for i, v in pinned.items() if i not in tagged),
               f"pinned: {pinned}")
        d = t.diff("notes")
        t.case("titles, contents and tags are unchanged and no note is added or deleted",
               not d.added and not d.removed and all(
                   {k: o[k] for k in ("title", "content", "tags")} == {k: n[k] for k in ("title", "content", "tags")}
                   for o, n in d.changed), "notes were edited beyond pinning")
        t.only_tables_changed("notes")

    return TaskSpec(f"Pin all my notes tagged '{tag}' and unpin every other note.",
                    solution(("notes",), body, TAG=tag), check, ("notes",))


@template(difficulty=2)
def delete_old_downloads(world: World, rng: random.Random) -> TaskSpec:
    cutoff = (world.now - timedelta(days=rng.randrange(20, 60))).date()
    for old in (True, True, False):
        created = (datetime.combine(cutoff, datetime.min.time()) + timedelta(days=-rng.randrange(2, 40) if old
                                                                          else rng.randrange(2, 15), hours=9))
        path = f"~/downloads/{rng.choice(('report', 'setup', 'slides', 'scan'))}_{rng.randrange(100, 999)}.pdf"
        if all(f["path"] != path for f in world.tables["files"]):
            world.add("files", path=path, content="%PDF", created_at=iso(created), updated_at=iso(created))
    limit = cutoff.isoformat()
    doomed = {f["id"] for f in world.tables["files"]
              if f["path"].startswith("~/downloads/") and f["created_at"] < limit}
    body = '''
for path in apis.file_system.show_directory(access_token=file_system_token, directory_path="~/downloads/",
                                            recursive=True):
    info = apis.file_system.show_file(access_token=file_system_token, file_path=path)
    if info["created_at"] < <<CUTOFF>>:
        apis.file_system.delete_file(access_token=file_system_token, file_path=path)
apis.supervisor.complete_task()
'''

    def check(t: Checker) -> None:
        remaining = {f["id"] for f in t.after["files"]}
        t.case(f"every download created before {limit} is deleted", not (doomed & remaining),
               f"still there: {sorted(doomed & remaining)}")
        d = t.diff("files")
        t.case("no other file is deleted, changed or created",
               not d.added and not d.changed and all(f["id"] in doomed for f in d.removed),
               f"other file changes: {d}")
        t.only_tables_changed("files")

    return TaskSpec(f"Delete every file in my ~/downloads/ directory that was created before {limit}.",
                    solution(("file_system",), body, CUTOFF=limit), check, ("file_system",))


@template(difficulty=3)
def email_file_content(world: World, rng: random.Random) -> TaskSpec:
    (p, rel), = _pick_contacts(world, rng, 1)
    documents = [f for f in world.tables["files"] if f["path"].startswith("~/documents/")]
    file = rng.choice(documents)
    name = file["path"].rsplit("/", 1)[1]
    body = '''
content = apis.file_system.show_file(access_token=file_system_token, file_path=<<PATH>>)["content"]
contacts = fetch_all(apis.phone.search_contacts, access_token=phone_token, relationship=<<REL>>)
email = [c for c in contacts if c["first_name"] == <<FIRST>>][0]["email"]
apis.email.send_email(access_token=email_token, recipients=[email], subject=<<NAME>>, body=content)
apis.supervisor.complete_task()
'''

    def check(t: Checker) -> None:
        added = _only_new(t, "emails", 1, "email")
        row = added[0] if len(added) == 1 else {"recipients": "[]"}
        t.case(f"the email goes to {p.email} only", json.loads(row["recipients"]) == [p.email], f"got {row}")
        t.case(f"the subject is {name!r}", row.get("subject") == name, f"subject {row.get('subject')!r}")
        t.case("the body is the file's content", row.get("body", "").strip() == file["content"].strip(),
               f"body {row.get('body')!r}")
        t.only_tables_changed("emails")

    return TaskSpec(f"Email the content of my file {file['path']} to my {rel} {p.first_name} with the subject "
                    f"'{name}'.", solution(("file_system", "phone", "email"), body, PATH=file["path"], REL=rel,
                                           FIRST=p.first_name, NAME=name), check, ("file_system", "phone", "email"))


@template(difficulty=2)
def move_downloaded_photos(world: World, rng: random.Random) -> TaskSpec:
    target = "~/photos/2024/"
    moved = {}
    for _ in range(rng.randrange(2, 4)):
        name = f"IMG_{rng.randrange(1000, 9999)}.jpg"
        created = _days_ago(world, rng, 1, 20)
        row = world.add("files", path=f"~/downloads/{name}", content=f"<jpeg {rng.randrange(10**6)}>",
                        created_at=created, updated_at=created)
        moved[row["id"]] = (target + name, row["content"])
    body = '''
for path in apis.file_system.show_directory(access_token=file_system_token, directory_path="~/downloads/"):
    if path.endswith(".jpg"):
        apis.file_system.move_file(access_token=file_system_token, source_file_path=path,
                                   destination_file_path=<<TARGET>> + path.split("/")[-1])
apis.supervisor.complete_task()
'''

    def check(t: Checker) -> None:
        files = {f["path"]: f for f in t.after["files"]}
        t.case(f"every downloaded .jpg is now in {target} with the same name and content",
               all(files.get(path, {}).get("content") == content for path, content in moved.values()),
               f"files in {target}: {[p for p in files if p.startswith(target)]}")
        t.case("no .jpg file is left in ~/downloads/",
               not any(p.startswith("~/downloads/") and p.endswith(".jpg") for p in files), "jpgs left")
        d = t.diff("files")
        t.case("no other file is changed", not d.removed and all(o["id"] in moved for o, _ in d.changed) and
               all(f["path"].startswith(target) for f in d.added), f"other file changes: {d}")
        t.only_tables_changed("files")

    return TaskSpec(f"Move every .jpg file in my ~/downloads/ directory into {target}, keeping their file names.",
                    solution(("file_system",), body, TARGET=target), check, ("file_system",))


def evaluate_task(task: OfflineTask, before: dict, after: dict, answer: Any, completed: bool) -> Checker:
    """Run a task's tests on a pair of states and return the filled :class:`Checker`."""
    checker = Checker(before, after, answer, completed)
    task.check(checker)
    return checker
