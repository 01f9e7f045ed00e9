"""RDS Initializer: make one RDS/Aurora database have exactly the users an event declares.

The event names the users, their table privileges and their grantors; each user's credentials
live in its own AWS Secrets Manager secret, in the structure AWS's rotation functions read.
Running the same event twice changes nothing. The behaviour contract is docs/CONTRACT.md; the
README explains it for users.

The file reads as the data flows:
   1. the run: event -> gather -> plan -> apply -> report, in a few functions
   2. the shared types the stages hand each other
   3. logging
   4. the event: parsing and validation (pure)
   5. gathering: the master secret and target, the user secrets, the login probes
   6. planning: the whole plan from event + state (pure)
   7. applying, with the never-lose-a-password protocol
   8. the report
   9. the engines' interface (a Protocol), the settings (the only reader of the
      environment), and what both engines share
  10. PostgreSQL, in one block: names, catalog state, plan, I/O
  11. MySQL and MariaDB, in one block: the same parts
  12. the engines by name
"""

from __future__ import annotations

import atexit
import base64
import difflib
import gc
import hashlib
import hmac
import json
import logging
import os
import re
import ssl
import stringprep
import sys
import tempfile
import threading
import time
import unicodedata
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from dataclasses import KW_ONLY, dataclass, field, replace
from functools import cache, cached_property
from typing import Any, Literal, Protocol, TypeVar, cast

import botocore.config
import botocore.exceptions
import botocore.session
import psycopg2
import pymysql
import pymysql.converters
from psycopg2 import sql

TOOL = "rds-initializer"
# Our own AWSPENDING versions carry this prefix, so an interrupted password change of ours
# is told apart from a rotation in progress (whose version ids are plain UUIDs).
VERSION_PREFIX = f"{TOOL}-"
PASSWORD_EXCLUDED = ":/@\"'\\"  # noqa: S105 - the characters passwords leave out
PASSWORD_LENGTH = 32
# The AWS multi-user rotation functions alternate a secret between U and U + this suffix.
CLONE_SUFFIX = "_clone"
CLUSTER_LOCK_WAIT_MS = 300_000  # the longest wait for another invocation to finish


class InvalidEvent(Exception):
    """The event (or the state it meets) cannot be applied; nothing was touched."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        if len(problems) == 1:  # one problem, one line: what a pipeline's log shows best
            super().__init__(f"invalid event: {problems[0]}")
        else:
            super().__init__("invalid event:\n- " + "\n- ".join(problems))


class ApplyError(Exception):
    """Applying failed part-way; the message says what was applied and that a re-run converges."""


# ---------------------------------------------------------------------------------------------
# 1. The run: event -> gather -> plan -> apply -> report. The rest of the file, in this order,
#    is the parts these functions put together.
# ---------------------------------------------------------------------------------------------


def lambda_handler(event: Any, context: Any) -> dict:
    """Returns the report; raises on any failure so `aws lambda invoke` shows FunctionError."""
    JsonFormatter.request_id = getattr(context, "aws_request_id", "-")
    try:
        return run(event, context)
    except (InvalidEvent, ApplyError) as error:
        log.error(str(error))
        raise
    except Exception as error:  # botocore/driver errors: scrubbed, and without chained causes
        message = unexpected_error_message(error)
        log.error(message)
        raise ApplyError(message) from None


def unexpected_error_message(error: BaseException) -> str:
    """An error no stage turned into InvalidEvent or ApplyError (an AWS or driver error, or a
    bug), scrubbed, with what it means for the run: each write is made in an order that keeps
    every working password (see section 7), so whatever was done is kept and a re-run
    converges."""
    throttled = throttled_text(error)
    if throttled:
        return (
            f"{throttled}. Statements applied and secrets written before it are listed in the "
            "log ('applied', 'aws'), each keeping a working password; the database changes of "
            "an unfinished PostgreSQL transaction are rolled back; a re-run converges."
        )
    text = REDACT(f"{type(error).__name__}: {error}".strip())
    if isinstance(error, RecursionError):
        text = "the input is nested too deeply to be read"
    return (
        f"unexpected error: {text}. Statements applied and secrets written before it are "
        "listed in the log ('applied', 'aws'); the database changes of an unfinished "
        "PostgreSQL transaction are rolled back; a re-run converges."
    )


def throttled_text(error: BaseException) -> str | None:
    """What a run stopped by Secrets Manager's throttling says (None for any other error): that
    it was throttled, how far the retries went, and what to change if it happens again."""
    if isinstance(error, Throttled):
        what = str(error)
    elif (
        isinstance(error, botocore.exceptions.ClientError)
        and error.response.get("Error", {}).get("Code") in THROTTLING_CODES
    ):
        tries = error.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) + 1
        what = (
            f"Secrets Manager answered {error.response['Error']['Code']} to "
            f"{error.operation_name} {tries} time(s), the retries (with backoff and jitter) "
            "used up"
        )
    else:
        return None
    return (
        f"throttled: {what}. The account's Secrets Manager quotas (50 writes a second for each "
        "group of write calls, 100 bulk reads a second; per account and Region, shared by "
        "every caller) were exceeded: if it happens again, lower secrets_writes_per_second "
        "(SECRETS_WRITES_PER_SECOND) or run fewer invocations at a time (docs/fleets.md)"
    )


def run(
    raw: Any, context: Any = None, *, dry_run: bool = False, settings: Settings | None = None
) -> dict:
    """One invocation. Every problem with the environment, the event, the master secret or the
    state it meets is raised once, together, before anything is written; then the plan is
    applied (or only rehearsed)."""
    started = time.monotonic()
    REDACT.clear()  # a warm Lambda runs many invocations: keep only this one's secrets
    settings = settings or Settings.read(os.environ)
    event, problems = read_event(raw, dry_run=dry_run, settings=settings)
    deadline = Deadline(context)
    aws, target, problems = locate(event, settings, [*settings.problems, *problems], deadline)
    event = bind_engine(event, target.dialect)
    info(
        "start",
        host=target.host,
        database=target.database,
        users=len(event.users),
        dry_run=event.dry_run,
    )
    with database_session(target, event, deadline, problems) as connection:
        try:
            facts = gather(connection, event, target, aws, deadline)
        except InvalidEvent as unsupported:  # a server version the tool cannot read
            raise InvalidEvent([*unsupported.problems, *problems]) from None
        plan = make_plan(event, target, facts, problems)
        for warning in plan.warnings:
            log.warning(warning)
        draw = local_passwords if event.dry_run else aws.random_passwords
        plan = plan.with_passwords(draw(plan.passwords_wanted) if plan.passwords_wanted else [])
        if event.dry_run:
            plan = with_record_steps(planned(plan), {})
            applied = Applied(target.dialect.rehearse(connection, plan.steps))
        else:
            plan, first = planned_while_writing(plan, aws, deadline)
            plan = with_record_steps(plan, first)
            applied = apply_plan(connection, plan, first, aws, deadline)
        result = report(plan, applied, aws)
    result["duration_ms"] = round((time.monotonic() - started) * 1000)
    info(
        "done",
        status=result["status"],
        changed=result["changed"],
        duration_ms=result["duration_ms"],
        stats=result["stats"],
    )
    return fit_report(result)


def planned(plan: Plan) -> Plan:
    """The plan with its SQL steps: the new passwords hashed first, one thread a CPU (PBKDF2
    releases the GIL)."""
    dialect, to_hash = plan.target.dialect, plan.to_hash
    with ThreadPoolExecutor(max(os.cpu_count() or 1, 1)) as pool:
        verifiers = pool.map(lambda c: dialect.identified_by(c.password, plan.state), to_hash)
        identified_by = dict(zip([c.login for c in to_hash], verifiers, strict=True))
    plan = with_steps(plan, identified_by)
    info("planned", users=len(plan.event.users), steps=len(plan.steps), dry_run=plan.event.dry_run)
    return plan


def planned_while_writing(
    plan: Plan, aws: SecretsManager, deadline: Deadline
) -> tuple[Plan, dict[str, tuple[SecretState, str | None]]]:
    """The plan with its SQL steps, and the secret writes that come before the database. The
    writes, paced by Secrets Manager's quota, need only the credentials: a first run's password
    hashing, and the SQL plan after it, go on meanwhile. With nothing to hash, the plan comes
    first."""
    if not plan.to_hash:
        plan = planned(plan)
        return plan, write_secrets_first(plan, aws, deadline)
    planner = ThreadPoolExecutor(1)
    try:
        planning = planner.submit(planned, plan)
        first = write_secrets_first(plan, aws, deadline)
        return planning.result(), first
    finally:
        planner.shutdown(wait=False)  # a failed write is reported without waiting for hashes


def locate(
    event: Event, settings: Settings, problems: list[str], deadline: Deadline | None = None
) -> tuple[SecretsManager, Target, list[str]]:
    """Secrets Manager, the target (from the event and the master secret), and the problems so
    far with the checks that need the target. Without a target there is no state to check
    against: raise every problem found, the master secret's with the event's."""
    if not event.secret_name or not event.database:
        raise InvalidEvent(
            problems + unchecked_grantor_problems(event, "the event names no database")
        )
    try:
        aws = SecretsManager(
            event.region or settings.region,
            settings,
            writes_per_second=event.secrets_writes_per_second,
            reads_per_second=event.secrets_reads_per_second,
            deadline=deadline,
        )
        master, master_arn = aws.master_secret(event.secret_name)
    except InvalidEvent as invalid:  # the master secret is missing, unreadable or malformed
        unchecked = unchecked_grantor_problems(event, "the master secret could not be used")
        raise InvalidEvent([*problems, *invalid.problems, *unchecked]) from None
    except (ApplyError, botocore.exceptions.BotoCoreError) as error:  # no credentials, no region
        if problems:  # the event's problems are the user's to fix first, with or without AWS
            raise InvalidEvent([*problems, f"(nothing else was checked: {error})"]) from None
        raise
    target, target_problems = resolve_target(event, master, master_arn, settings)
    problems = problems + target_problems
    if target is None:
        why = "the master secret does not say where or as whom to connect"
        raise InvalidEvent(problems + unchecked_grantor_problems(event, why))
    problems += rotation_function_problems(event, target.dialect, settings)
    problems += rotation_host_problems(event, target, master)
    return aws, target, problems


def unchecked_grantor_problems(event: Event, why: str) -> list[str]:
    """The grantors the event names but does not declare: only the server can say whether they
    exist, and it was not asked."""
    return [
        f"user {user.name!r}: grantor {user.grantor!r} is not declared in the event and was not "
        f"looked up on the server ({why}): it must exist there"
        for user in event.users
        if user.grantor and not user.deleting and event.user(user.grantor) is None
    ]


@contextmanager
def database_session(
    target: Target, event: Event, deadline: Deadline, problems: list[str]
) -> Iterator[Any]:
    """The master's connection, under the cluster-wide lock. When the database cannot be
    reached, the problems found so far are what the user hears about; when it does not exist,
    that is one more of them."""
    with ExitStack() as stack:
        try:
            lock = stack.enter_context(target.dialect.lock(target, deadline))
            connection = target.dialect.connect(target, lock)
        except InvalidEvent as missing:  # the event's database does not exist
            unchecked = unchecked_grantor_problems(event, "the database does not exist")
            raise InvalidEvent([*problems, *missing.problems, *unchecked]) from None
        except ApplyError as error:
            if problems:
                unchecked = unchecked_grantor_problems(event, "the database could not be reached")
                raise InvalidEvent(
                    [*problems, *unchecked, f"(nothing else was checked: {error})"]
                ) from None
            raise
        stack.callback(close_quietly, connection)
        yield connection


def close_quietly(connection: Any) -> None:
    """Close a connection that may be gone already: a driver may refuse to close a dropped
    connection, and that must not hide the error that says which step failed."""
    try:
        connection.close()
    except Exception as error:  # noqa: BLE001 - closing is best effort; the run's error counts
        log.debug("closing the connection failed: %s", REDACT(str(error)))


def main(argv: list[str]) -> int:
    """python deploy/lambda_function.py EVENT.json [--dry-run]: 0 ok, 1 failed, 2 invalid."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("event", help="the event, a JSON file ('-' for standard input)")
    parser.add_argument("--dry-run", action="store_true", help="plan only: change nothing")
    args = parser.parse_args(argv)
    LineHandler.to_stderr = True
    try:
        with open(args.event) if args.event != "-" else sys.stdin as source:
            raw = json.load(source)
    except (OSError, ValueError) as error:
        print(f"cannot read the event {args.event}: {error}", file=sys.stderr)
        return 2
    except RecursionError:
        print(
            f"cannot read the event {args.event}: it is nested too deeply (an event is "
            f"at most {EVENT_MAX_DEPTH} levels deep)",
            file=sys.stderr,
        )
        return 2
    try:
        result = run(raw, dry_run=args.dry_run)
    except InvalidEvent as error:
        print(error, file=sys.stderr)
        return 2
    except ApplyError as error:
        print(f"failed: {REDACT(str(error))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "interrupted: every write already made keeps a working password; a re-run converges",
            file=sys.stderr,
        )
        return 130
    except Exception as error:  # never a traceback: what happened, and what it means
        print(f"failed: {unexpected_error_message(error)}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    if sys.stdout.isatty():  # a person reads it; a pipe or a file gets the JSON alone
        sys.stdout.flush()
        print(summary_table(result), file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------
# 2. The shared types: what the stages hand each other.
# ---------------------------------------------------------------------------------------------

Action = Literal["create", "update", "delete"]
# How a user logs in: with the password in its secret, or with IAM tokens only (no password,
# no secret): see docs/iam.md.
Auth = Literal["password", "iam"]
SslMode = Literal["require", "verify-full", "disable"]
# keep: the password stays; new-user: a new role gets a new password; change: an existing one
# does (through AWSPENDING); finish: our interrupted change is promoted.
CredentialMode = Literal["keep", "new-user", "change", "finish"]
RotationChange = Literal["enable", "update", "disable"]


@dataclass(frozen=True)
class Rotation:
    """A secret's rotation: what the event wants, or what DescribeSecret reports. `schedule`
    and `days` exclude each other when wanted; with a schedule, AWS reports days of its own."""

    enabled: bool
    lambda_arn: str | None = None  # wanted without one: the engine's AWS function (ROTATION_*)
    schedule: str | None = None  # a rate() or cron() expression
    days: int | None = None  # AutomaticallyAfterDays
    duration: str | None = None  # the rotation window, "2h"
    rotate_immediately: bool = False

    @property
    def rules(self) -> dict[str, Any]:
        """RotationRules for rotate_secret."""
        if self.schedule:
            rules: dict[str, Any] = {"ScheduleExpression": self.schedule}
        else:
            rules = {"AutomaticallyAfterDays": self.days}
        if self.duration:
            rules["Duration"] = self.duration
        return rules

    @property
    def interval(self) -> str | None:
        """The schedule as one expression, however it was given or reported: `days: 30` may
        come back as AutomaticallyAfterDays 30 or as rate(30 days), and for a schedule AWS
        reports an AutomaticallyAfterDays it computed, which says nothing."""
        if self.schedule:
            rate = RATE.match(self.schedule)
            if rate:
                return f"rate({int(rate[1])} {rate[2]}s)"
            return " ".join(self.schedule.split())
        return f"rate({self.days} days)" if self.days else None


NO_ROTATION = Rotation(enabled=False)


@dataclass(frozen=True)
class UserSpec:
    name: str
    secret_name: str | None
    action: Action = "create"
    ddl: bool = False
    privileges: frozenset[str] = frozenset()
    all_privileges: bool = False  # "ALL": whatever the server has (MAINTAIN from 17 on)
    grantor: str | None = None
    rotate_password: bool = False
    reassign_to: str | None = None
    rotation: Rotation | None = None  # None: the secret's rotation is left as it is
    host: str | None = None  # the account host, where the engine has one (Dialect.for_engine)
    secret_found: bool = False  # a delete's secret, found by its tags (none was named)
    keep_account: bool = False  # a delete from this database only: the account stays
    # None: not declared, a password user, but an existing account that authenticates
    # another way (IAM, another plugin) is never given a password; "password" converts it.
    auth: Auth | None = None

    @property
    def clone(self) -> str:
        """The other account of AWS's multi-user rotation, which the tool treats as U too."""
        return self.name + CLONE_SUFFIX

    @property
    def rotating(self) -> bool:
        return bool(self.rotation and self.rotation.enabled)

    @property
    def deleting(self) -> bool:
        """It goes from this database: its privileges here are revoked."""
        return self.action == "delete"

    @property
    def dropping(self) -> bool:
        """Its account goes too, and its secret: a delete without keep_account."""
        return self.action == "delete" and not self.keep_account

    @property
    def wants_new_password(self) -> bool:
        return self.action == "update" or self.rotate_password

    @property
    def iam(self) -> bool:
        """Logs in with IAM tokens only: no password, and no secret (one it had is retired)."""
        return self.auth == "iam" and not self.deleting

    @property
    def has_password(self) -> bool:
        """A user that stays and logs in with the password in its secret."""
        return not self.deleting and not self.iam


@dataclass(frozen=True)
class Event:
    secret_name: str
    database: str
    users: tuple[UserSpec, ...]
    host: str | None = None
    port: int | None = None
    region: str | None = None
    kms_key_id: str | None = None
    engine: str | None = None
    schemas: tuple[str, ...] = ("public",)
    schemas_declared: bool = False
    dry_run: bool = False
    secret_tags: dict[str, str] = field(default_factory=dict)
    recovery_days: int = 7
    ssl_mode: SslMode = "require"
    verify_logins: bool = False
    move_secrets: bool = False  # secrets describing this database at another endpoint follow it
    # This invocation's share of a fleet's Secrets Manager paces (docs/fleets.md); None: the
    # function's SECRETS_WRITES_PER_SECOND / SECRETS_READS_PER_SECOND.
    secrets_writes_per_second: float | None = None
    secrets_reads_per_second: float | None = None
    # Users the event declares whose entries were left out for their own problems: no other
    # check may call them missing.
    refused_users: frozenset[str] = frozenset()

    def user(self, name: str) -> UserSpec | None:
        """The user of that name (the first one, if declared twice), in constant time."""
        return self._by_name.get(name)

    @cached_property
    def _by_name(self) -> dict[str, UserSpec]:
        by_name: dict[str, UserSpec] = {}
        for user in self.users:
            by_name.setdefault(user.name, user)
        return by_name


@dataclass(frozen=True)
class Target:
    """Where to connect and as whom: the event completed by the master secret."""

    engine: str
    host: str
    port: int
    database: str
    master_user: str
    master_password: str = field(repr=False)
    master_arn: str
    ssl_mode: SslMode
    # the deployment's: timeouts and the CA bundle of every connection to the target
    settings: Settings = field(default_factory=lambda: Settings(), repr=False, compare=False)

    @property
    def dialect(self) -> Dialect:
        return DIALECTS[self.engine]

    def login_works(self, user: str, password: str | None) -> bool:
        return self.dialect.login_works(self, user, password)


@dataclass
class SecretState:
    """What Secrets Manager holds for one user's secret."""

    name: str
    arn: str | None = None
    exists: bool = False
    scheduled_for_deletion: bool = False
    value: dict | None = None  # AWSCURRENT, parsed; None when it has no value
    foreign_value: bool = False  # a value that is not a JSON object: somebody else's secret
    current_version: str | None = None
    pending_version: str | None = None
    pending_value: dict | None = None
    tags: dict[str, str] = field(default_factory=dict)
    rotation: Rotation = NO_ROTATION
    kms_key_id: str | None = None  # a customer managed key; None: aws/secretsmanager
    # Not found by a read by id, and not described: a secret without a value reads the same
    # as none (see gather), which only CreateSecret or DescribeSecret tells apart.
    absent_by_read: bool = False
    # CreateSecret found the name taken by a secret without a value, which was given one
    # instead (SecretWriter.create): the report says "updated", as a description would have.
    found_without_value: bool = False

    @property
    def password(self) -> str | None:
        return (self.value or {}).get("password")

    @property
    def pending_is_ours(self) -> bool:
        return bool(self.pending_version and self.pending_version.startswith(VERSION_PREFIX))


@dataclass(frozen=True)
class Probe:
    """Which of a secret's passwords log in (None: not tried)."""

    pending_ok: bool | None = None
    current_ok: bool | None = None


@dataclass(frozen=True)
class Credential:
    """How one user's password and secret change in this run."""

    user: str
    login: str  # whose password it is: the user, or its rotation clone when the secret says so
    mode: CredentialMode
    password: str | None  # the password the user ends with; None until a new one is drawn
    value: dict  # the secret value the user ends with, but for its password
    _: KW_ONLY
    set_in_database: bool  # the plan gives the role this password
    undo_pending: bool = False  # drop the AWSPENDING label of our own interrupted change
    shared: bool = False  # the secret serves this database as it is (see secret_use)

    @property
    def final_value(self) -> dict:
        return {**self.value, "password": self.password}


@dataclass(frozen=True)
class RotationCall:
    """How one secret's rotation changes in this run: one call, made once the user's password
    is final, since only a secret whose AWSCURRENT logs in may be rotated."""

    change: RotationChange
    rotation: Rotation  # the wanted one
    function_arn: str | None


@dataclass(frozen=True)
class Step:
    """One SQL statement of the plan, and whose changes it makes. The statement is in the
    engine's own form (what its driver executes); Dialect.render shows it as text."""

    statement: Any
    summary: str
    users: tuple[str, ...]
    as_role: str | None = None  # the role it runs as: the owner whose objects it changes
    shown: Any = None  # the statement as shown: its password blanked
    record: bool = False  # writes the tool's record of the account, not the account itself

    @property
    def who(self) -> str:
        return ", ".join(self.users) or "the master"


@dataclass(frozen=True)
class Record:
    """What the server itself records of an account the tool manages, next to the account
    (PostgreSQL: the role's comment; MySQL 8: an account attribute; MariaDB: a table of the
    tool's), read with the rest of the catalog state: strongly consistent, whatever
    ListSecrets says and whatever name the event reaches the server by."""

    secret: str  # the ARN of the one secret that manages the account
    databases: tuple[str, ...] = ()  # the databases whose events declare it
    # The version of our own password change staged in that secret, while one is under way:
    # the secret is then read by id, never from a list that may not show the AWSPENDING yet.
    pending: str | None = None

    def document(self) -> dict[str, Any]:
        return {"secret": self.secret, "databases": list(self.databases), "pending": self.pending}


class EngineState(Protocol):
    """What the engine-neutral stages ask of an engine's state (PgState, MyState)."""

    catalog_queries: int
    read_only: str | None  # why the server refuses writes, in words; None: it accepts them
    # Of the databases other than the event's that records name, those that exist.
    existing_databases: frozenset[str]

    def has_user(self, user: UserSpec) -> bool: ...
    def has_clone(self, user: UserSpec) -> bool: ...
    def password_expired(self, user: UserSpec, login: str) -> bool: ...
    def record_of(self, user: UserSpec) -> Record | None: ...

    def other_auth(self, user: UserSpec) -> str | None:
        """How the user's existing account authenticates when not by a password the tool can
        set ("IAM (it holds rds_iam)", "plugin ed25519"); None for a password account or none."""
        ...


@dataclass
class Facts:
    """Everything a run read before deciding: the database state, the user secrets (by secret
    name), and which of their passwords log in (by user)."""

    state: EngineState
    secrets: dict[str, SecretState]
    probes: dict[str, Probe]
    # Found by their tags: a delete's secrets when it names none, and other secrets of an
    # account that is about to get a secret (and so a password) of this event's (by user).
    found: dict[str, list[str]] = field(default_factory=dict)
    elsewhere: dict[str, list[str]] = field(default_factory=dict)
    # Other names of this server, proven (see proven_aliases).
    aliases: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class Plan:
    """The whole of what a run does, decided before anything is written: each user's
    credential (which says how its secret is written), what happens to each secret, the
    rotation calls, and the SQL steps. A dry run is this plan, not applied. Built in stages
    (make_plan, with_passwords, with_steps), each a new value."""

    event: Event
    target: Target
    state: EngineState
    secrets: Mapping[str, SecretState]  # by secret name, as read
    credentials: Mapping[str, Credential]  # by user, for the users that stay
    secret_results: Mapping[str, str]  # by user: what happens to its secret
    rotations: Mapping[str, RotationCall]  # by user, for the users whose rotation changes
    warnings: tuple[str, ...] = ()  # what the tool cannot change, said
    steps: tuple[Step, ...] = ()
    # By user: the ownership record each account gets (see wanted_record), written with the
    # database changes once the secrets are (a new secret's ARN, a staged version, is known
    # then: with_record_steps).
    records: Mapping[str, Record] = field(default_factory=dict)

    def secret_of(self, user: UserSpec) -> SecretState:
        return self.secrets[user.secret_name or ""]

    def writes_secret_of(self, user: UserSpec) -> bool:
        """Whether applying writes anything to the user's secret: an unchanged secret is one
        no write touches (secret_result), and a rotation call is a write of its own."""
        return self.secret_results.get(user.name) != "unchanged" or user.name in self.rotations

    @property
    def passwords_wanted(self) -> int:
        """How many new passwords the plan needs drawn."""
        return sum(c.password is None for c in self.credentials.values())

    def with_passwords(self, passwords: Sequence[str]) -> Plan:
        """The plan with each credential that needs one given a new password, in order."""
        if len(passwords) != self.passwords_wanted:
            raise ValueError(f"{len(passwords)} passwords for {self.passwords_wanted} wanted")
        drawn = iter(passwords)
        credentials = {
            user: replace(c, password=next(drawn)) if c.password is None else c
            for user, c in self.credentials.items()
        }
        return replace(self, credentials=credentials)

    @property
    def to_hash(self) -> list[Credential]:
        """The credentials whose password the database is given now: to hash before planning
        the SQL."""
        return [c for c in self.credentials.values() if c.set_in_database and c.password]


@dataclass(frozen=True)
class SqlStats:
    """What running the steps cost: statements sent (role switches too) and their time; and
    what the server said meanwhile (its WARNINGs and NOTICEs, each once, as "server ...")."""

    statements: int = 0
    sql_ms: int = 0
    notices: tuple[str, ...] = ()

    def __add__(self, other: SqlStats) -> SqlStats:
        """Two runs of steps as one (the statements, then the records settled after them)."""
        notices = tuple(dict.fromkeys(self.notices + other.notices))
        return SqlStats(self.statements + other.statements, self.sql_ms + other.sql_ms, notices)


@dataclass(frozen=True)
class Applied:
    """What applying (or rehearsing) a plan did: the SQL run, and each user's secret as the
    writes left it (a created secret's ARN, its new versions), by user."""

    sql: SqlStats = SqlStats()
    secrets: Mapping[str, SecretState] = field(default_factory=dict)


class Deadline:
    """Stops cleanly before Lambda's hard timeout would kill the invocation mid-way."""

    MARGIN_MS = 10_000

    def __init__(self, context: Any):
        self._remaining = getattr(context, "get_remaining_time_in_millis", None)

    def remaining_ms(self) -> int | None:
        return self._remaining() - self.MARGIN_MS if self._remaining else None

    def lock_wait_ms(self) -> int:
        """How long to queue behind another invocation: while there is time, up to a limit."""
        left = self.remaining_ms()
        return CLUSTER_LOCK_WAIT_MS if left is None else max(min(left, CLUSTER_LOCK_WAIT_MS), 1)

    def bound_s(self, limit: float) -> float:
        """`limit` seconds, or what is left of the Lambda's time when that is less (then 1 s
        at least): how long one statement or wait may take."""
        left = self.remaining_ms()
        return limit if left is None else min(limit, max(left / 1000, 1.0))

    def check(self, before: str) -> None:
        left = self.remaining_ms()
        if left is not None and left <= 0:
            raise ApplyError(
                f"stopped before {before}: the Lambda time is nearly up. "
                "Everything before it is done; a re-run converges."
            )


# ---------------------------------------------------------------------------------------------
# 3. Logging: one JSON object per line, passwords scrubbed from every message.
# ---------------------------------------------------------------------------------------------


class Redactor:
    """Remembers every password and verifier of the invocation and blanks them out of text:
    a second line of defence, since no password is ever put in a statement or a message.
    Values under 4 characters are not kept: blanking every "p" would garble the logs."""

    MIN_LENGTH = 4

    def __init__(self) -> None:
        self._by_prefix: dict[str, set[str]] = defaultdict(set)
        self._lock = threading.Lock()

    def add(self, *values: str | None) -> None:
        with self._lock:
            for value in values:
                if value and len(value) >= self.MIN_LENGTH:
                    self._by_prefix[value[: self.MIN_LENGTH]].add(value)

    def clear(self) -> None:
        with self._lock:
            self._by_prefix.clear()

    def __call__(self, text: str) -> str:
        """Every known value in `text`, found by its first characters at each position: a
        cost in the length of the text, not in the number of values (thousands at 5,000
        users, and every log line is redacted)."""
        width, index = self.MIN_LENGTH, self._by_prefix
        with self._lock:  # other threads add passwords as they draw them
            found = {
                value
                for start in range(len(text) - width + 1)
                for value in index.get(text[start : start + width], ())
                if text.startswith(value, start)
            }
        for value in sorted(found, key=len, reverse=True):
            text = text.replace(value, "***")
        return text


REDACT = Redactor()


class JsonFormatter(logging.Formatter):
    request_id = "-"

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "request_id": self.request_id,
            "message": REDACT(record.getMessage()),
        }
        entry.update(getattr(record, "fields", {}))
        return REDACT(json.dumps(entry, default=str))


class LineHandler(logging.StreamHandler):
    """Writes to standard output as it is when the record comes (standard error for the
    command line, whose standard output carries the report)."""

    to_stderr = False

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr if self.to_stderr else sys.stdout
        super().emit(record)


log = logging.getLogger(TOOL)

_handler = LineHandler()

_handler.setFormatter(JsonFormatter())

log.addHandler(_handler)

log.propagate = False

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def info(message: str, **fields: Any) -> None:
    log.info(message, extra={"fields": fields})


# ---------------------------------------------------------------------------------------------
# 4. The event: parsing and validation. Pure; every problem is returned, then raised once.
# ---------------------------------------------------------------------------------------------

# What the event may say, and the engine name the AWS rotation functions accept in a secret.
ENGINES = {
    "postgres": "postgres",
    "postgresql": "postgres",
    "aurora-postgresql": "postgres",
    "mysql": "mysql",
    "aurora-mysql": "mysql",
    "mariadb": "mariadb",
}

ACTIONS: tuple[Action, ...] = ("create", "update", "delete")

SSL_MODES = ("require", "verify-full", "disable")
# build.sh --ca-bundle puts a CA bundle here, next to this file; verify-full is then the default.
BUNDLED_CA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rds-ca-bundle.pem")
# RDS Proxy endpoints present certificates of AWS Certificate Manager, whose roots are Amazon's
# own (Amazon Root CA 1 to 4), not the RDS CAs: verify-full trusts them beside the CA bundle.
# They ship next to this file (build.sh packs them).
AMAZON_ROOT_CAS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "amazon-root-cas.pem")

SECRET_NAME = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}\Z")  # what CreateSecret accepts
SECRET_ID_LIMIT = 2048  # a SecretId: a name or an ARN
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# The tags that say whose secret it is and for which database: a delete that names no secret
# finds it by them, and so does the check that an account has one secret per server.
USER_TAG, SERVER_TAG, DATABASE_TAG = (f"{TOOL}:{k}" for k in ("user", "server", "database"))

REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}")  # us-east-1, us-gov-west-1, cn-north-1

# AWS's tag rules (Secrets Manager's Tag type). A secret may have 50 tags, the tool's own
# included (wanted_tags): managed-by and the identity tags, which secret_tags may not set.
TAG_KEY = re.compile(r"[\w .:/=+\-@]{1,128}")
TAG_VALUE = re.compile(r"[\w .:/=+\-@]{0,256}")
TOOL_TAG_KEYS = ("managed-by", USER_TAG, SERVER_TAG, DATABASE_TAG)
TAGS_MAX = 50 - len(TOOL_TAG_KEYS)

EVENT_MAX_DEPTH = 32  # an event is 5 levels deep (users, a user, its rotation, a value)

TOP_KEYS = {
    "secret_name",
    "database_name",
    "rds_host",
    "rds_port",
    "region",
    "kms_key_id",
    "db_engine",
    "schemas",
    "users",
    "dry_run",
    "rotation",
    "secret_tags",
    "secret_recovery_days",
    "ssl_mode",
    "verify_logins",
    "move_secrets",
    "secrets_writes_per_second",
    "secrets_reads_per_second",
    "$schema",  # the JSON Schema an editor checks the event against: accepted and ignored
}

USER_KEYS = {
    "auth",
    "db_user",
    "user_secret_name",
    "action",
    "grant_ddl",
    "grant_privileges",
    "grantor",
    "rotate_password",
    "rotation",
    "host",
    "reassign_to",
    "keep_account",
}

TRUE_WORDS = {"true", "yes", "1"}

FALSE_WORDS = {"false", "no", "0"}

NONE_WORDS = {"", "none", "null"}

AUTHS: tuple[Auth, ...] = ("password", "iam")

ROTATION_KEYS = {"enabled", "lambda_arn", "schedule", "days", "duration", "rotate_immediately"}

ROTATION_DEFAULT_DAYS = 30

ROTATION_MAX_DAYS = 1000  # AutomaticallyAfterDays' range is 1..1000

ROTATION_MIN_HOURS = 4  # AWS's shortest rotation interval

LAMBDA_ARN = re.compile(
    r"^arn:aws[a-z-]*:lambda:[a-z]{2}(-[a-z]+)+-[0-9]+:[0-9]{12}:function:[A-Za-z0-9_-]{1,64}"
    r"(:[A-Za-z0-9$_-]{1,128})?\Z"
)

RATE = re.compile(r"^rate\(([0-9]+) (hour|day)s?\)\Z")

CRON = re.compile(r"^cron\(([^()]*)\)\Z")

CRON_FIELD = re.compile(r"^[0-9A-Za-z#?*/,-]+\Z")

CRON_HOURS = re.compile(r"^(\*|[0-9]+)(?:-([0-9]+))?(?:/([0-9]+))?\Z")  # 5, 1-5, */6, 2/6

DURATION = re.compile(r"^([0-9]{1,2})h\Z")  # AWS: [0-9]+h, 2 or 3 characters


def parse_event(raw: Any) -> Event:
    """The event, or InvalidEvent listing every problem (for callers with no state to check);
    bound to its engine when it names one."""
    event, problems = read_event(raw)
    if problems:
        raise InvalidEvent(problems)
    return bind_engine(event, DIALECTS[event.engine]) if event.engine else event


def read_event(
    raw: Any, *, dry_run: bool = False, settings: Settings | None = None
) -> tuple[Event, list[str]]:
    """The event and every problem with it. A user entry with problems is left out of the
    event, so that the rest can still be checked against the database's state. `settings`:
    the deployment's defaults (none given: the defaults of an empty environment)."""
    settings = settings or Settings.read({})
    if not isinstance(raw, dict):
        raise InvalidEvent(["the event must be a JSON object"])
    unreadable = unreadable_values(raw)
    if unreadable:  # no name with a NUL may reach a driver, nor a value any recursion
        raise InvalidEvent(unreadable)
    problems = unknown_key_problems(raw, TOP_KEYS, "the event's")
    if not isinstance(raw.get("$schema", ""), str):
        problems.append("$schema must be a string: the address of the event's JSON Schema")
    texts: dict[str, str | None] = {}
    for key in ("secret_name", "database_name", "rds_host", "region", "kms_key_id"):
        texts[key], found = parse_text(raw, key, required=key in ("secret_name", "database_name"))
        problems += found
    if texts["secret_name"]:
        problems += secret_id_problems(texts["secret_name"], "secret_name")
    if texts["region"] and not REGION.fullmatch(texts["region"]):
        problems.append(f"region {texts['region']!r} is not an AWS region name (us-east-1)")
        texts["region"] = None  # the checks that follow read the secrets where AWS_REGION says
    engine, found = parse_engine(raw.get("db_engine"))
    problems += found
    port, found = parse_port(raw.get("rds_port"))
    problems += found
    schemas, found = parse_schemas(raw)
    problems += found
    tags, found = parse_tags(raw.get("secret_tags", {}))
    problems += found
    recovery, found = parse_recovery_days(raw.get("secret_recovery_days", 7))
    problems += found
    ssl_mode, found = parse_ssl_mode(raw.get("ssl_mode"), settings.ssl_mode)
    problems += found
    flags = {}
    for key in ("dry_run", "verify_logins", "move_secrets"):
        flags[key], found = parse_flag(raw, key)
        problems += found
    rotation, found = parse_rotation(raw.get("rotation"))
    problems += [f"rotation: {p}" for p in found]
    paces = {}
    for key in ("secrets_writes_per_second", "secrets_reads_per_second"):
        paces[key], found = parse_pace(raw.get(key), key)
        problems += found
    users, found = parse_users(raw.get("users"), rotation)
    problems += found
    event = Event(
        secret_name=texts["secret_name"] or "",
        database=texts["database_name"] or "",
        users=users,
        host=texts["rds_host"],
        port=port,
        region=texts["region"],
        kms_key_id=texts["kms_key_id"],
        engine=engine,
        schemas=schemas,
        schemas_declared="schemas" in raw,
        dry_run=flags["dry_run"] or dry_run,
        secret_tags=tags,
        recovery_days=recovery,
        ssl_mode=ssl_mode,
        verify_logins=flags["verify_logins"],
        move_secrets=flags["move_secrets"],
        secrets_writes_per_second=paces["secrets_writes_per_second"],
        secrets_reads_per_second=paces["secrets_reads_per_second"],
        refused_users=refused_names(raw.get("users"), users),
    )
    problems += relationship_problems(event)
    if engine:
        problems += engine_problems(event, DIALECTS[engine], settings)
    return event, problems


def unreadable_values(raw: Any) -> list[str]:
    """Every string (value or key) holding a NUL character, which no server or AWS API takes,
    or a lone surrogate, which is no character; and nesting deeper than any event's. Iterative:
    a deeply nested event must not exhaust the stack. Each value carries where it is as a link
    to its parent (rendered by `event_path` only for a value with a problem): an event of
    5,000 users has 50,000 values, and spelling each one's path costs more than the check."""
    problems: list[str] = []
    stack: list[tuple[Any, int, EventPath | None]] = [(raw, 0, None)]
    while stack and len(problems) < 20:
        value, depth, path = stack.pop()
        if depth > EVENT_MAX_DEPTH:
            return [
                f"the event is nested deeper than {EVENT_MAX_DEPTH} levels (at {event_path(path)})"
            ]
        if isinstance(value, str):
            if "\x00" in value:
                problems.append(f"{event_path(path)} contains a NUL character")
            elif not value.isascii() and any("\ud800" <= c <= "\udfff" for c in value):
                problems.append(f"{event_path(path)} contains a lone surrogate (not a character)")
        elif isinstance(value, dict):
            for key, item in value.items():
                stack.append((key, depth + 1, (path, "key", key)))
                stack.append((item, depth + 1, (path, "value", key)))
        elif isinstance(value, list):
            stack += [(item, depth + 1, (path, "index", i)) for i, item in enumerate(value)]
    return sorted(set(problems))


# Where a value is in the event: (the parent's path, "value" | "key" | "index", key or index).
EventPath = tuple[Any, str, Any]


def event_path(path: EventPath | None) -> str:
    """users[0].grantor, secret_tags.team, a key of secret_tags, or the event itself."""
    if path is None:
        return "the event"
    parent, how, at = path
    where = "" if parent is None else event_path(parent)
    if how == "index":
        return f"{where}[{at}]"
    if how == "key":
        return f"a key of {where or 'the event'}"
    name = at if isinstance(at, str) and at.isprintable() else repr(at)
    return f"{where}.{name}" if where else name


def did_you_mean(given: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' naming the choice nearest to a mistyped one, or ''."""
    nearest = difflib.get_close_matches(given, list(choices), n=1)
    return f" (did you mean {nearest[0]!r}?)" if nearest else ""


def unknown_key_problems(raw: dict, keys: set[str], whose: str) -> list[str]:
    """One problem per unknown key, with the nearest known key and all of them."""
    listed = ", ".join(sorted(keys))
    return [
        f"unknown key {key!r}{did_you_mean(str(key), keys)}; {whose} keys are {listed}"
        for key in sorted(set(raw) - keys, key=str)
    ]


def bool_problem(key: str, value: Any) -> str:
    words = sorted(TRUE_WORDS | FALSE_WORDS)
    near = did_you_mean(value.strip().lower(), words) if isinstance(value, str) else ""
    return f"{key} must be a boolean (true/false/yes/no/1/0), not {value!r}{near}"


def parse_text(raw: dict, key: str, *, required: bool = False) -> tuple[str | None, list[str]]:
    value = raw.get(key)
    if is_none(value):
        return None, [f"{key} is required"] if required else []
    if not isinstance(value, str):
        return None, [f"{key} must be a string"]
    return value.strip(), []


def parse_flag(raw: dict, key: str) -> tuple[bool, list[str]]:
    if key not in raw:
        return False, []
    value = parse_bool(raw[key])
    if value is None:
        return False, [bool_problem(key, raw[key])]
    return value, []


def parse_engine(value: Any) -> tuple[str | None, list[str]]:
    """The engine's canonical name; None when the event leaves it to the master secret."""
    if is_none(value):
        return None, []
    if not isinstance(value, str):
        return None, ["db_engine must be a string"]
    engine = ENGINES.get(value.strip().lower())
    if engine is None:
        return None, [
            f"db_engine {value.strip()!r} is not one of {', '.join(ENGINES)}"
            + did_you_mean(value.strip().lower(), ENGINES)
        ]
    return engine, []


def parse_port(value: Any) -> tuple[int | None, list[str]]:
    if value is None:
        return None, []
    # ASCII digits only: str.isdigit() also takes "²" and "５", which int() does not.
    digits = isinstance(value, str) and re.fullmatch(r"[0-9]{1,5}", value.strip())
    port = int(value) if digits else json_int(value)
    if port is None or not 0 < port < 65536:
        return None, [f"rds_port must be a port number, not {value!r}"]
    return port, []


def parse_pace(value: Any, key: str) -> tuple[float | None, list[str]]:
    """A pace of Secrets Manager calls for this invocation, in calls per second, within the
    range the environment variable takes (SECRETS_PACE_MAX); null or absent: the variable's."""
    if value is None:
        return None, []
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if number is None or not 0 < number <= SECRETS_PACE_MAX:
        return None, [
            f"{key} must be a number of calls per second above 0 and at most "
            f"{SECRETS_PACE_MAX:,}, not {value!r}"
        ]
    return float(number), []


def parse_schemas(raw: dict) -> tuple[tuple[str, ...], list[str]]:
    schemas = raw.get("schemas", ["public"])
    if not (isinstance(schemas, list) and schemas and all(isinstance(s, str) for s in schemas)):
        return ("public",), ["schemas must be a non-empty list of schema names"]
    if len(set(schemas)) != len(schemas) or not all(schemas):
        return tuple(schemas), ["schemas must be distinct, non-empty names"]
    return tuple(schemas), []


def parse_tags(tags: Any) -> tuple[dict[str, str], list[str]]:
    if not (isinstance(tags, dict) and all(isinstance(v, str) for v in tags.values())):
        return {}, ["secret_tags must be an object of string values"]
    problems = [
        f"secret_tags: {key!r} is the tool's own tag: managed-by and {TOOL}:* are set by it"
        for key in tags
        if key in TOOL_TAG_KEYS or key.startswith(f"{TOOL}:")
    ]
    problems += [
        f"secret_tags: {key!r}: AWS takes tag keys of 1 to 128 and values of up to 256 "
        "letters, digits, blanks and _ . : / = + - @, keys not starting with aws:"
        for key, value in tags.items()
        if not (TAG_KEY.fullmatch(key) and TAG_VALUE.fullmatch(value))
        or key.lower().startswith("aws:")
    ]
    if len(tags) > TAGS_MAX:
        problems.append(
            f"secret_tags: at most {TAGS_MAX} tags, not {len(tags)}: AWS allows 50 per secret, "
            f"and the tool sets {len(TOOL_TAG_KEYS)} ({', '.join(TOOL_TAG_KEYS)})"
        )
    return dict(tags), problems


def parse_recovery_days(value: Any) -> tuple[int, list[str]]:
    days = json_int(value)
    if days is None or not (days == 0 or 7 <= days <= 30):
        return 7, [f"secret_recovery_days must be 0 or 7..30, not {value!r}"]
    return days, []


def json_int(value: Any) -> int | None:
    """A JSON integer, None if not. JSON has one kind of number, so 5432.0 is 5432 (as JSON
    Schema's "integer" says); true is no number."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_ssl_mode(value: Any, default: SslMode) -> tuple[SslMode, list[str]]:
    """The event's ssl_mode, else the deployment's (Settings.ssl_mode)."""
    if not is_none(value) and not isinstance(value, str):
        return "require", ["ssl_mode must be a string"]
    mode = (None if is_none(value) else value.strip()) or default
    if mode not in SSL_MODES:
        return "require", [
            f"ssl_mode must be one of {', '.join(SSL_MODES)}, not {mode!r}"
            + did_you_mean(mode, SSL_MODES)
        ]
    return cast(SslMode, mode), []  # checked against SSL_MODES just above


def parse_users(
    raw_users: Any, default_rotation: Rotation | None
) -> tuple[tuple[UserSpec, ...], list[str]]:
    if not isinstance(raw_users, list) or not raw_users:
        return (), ["users must be a non-empty list"]
    users, problems = [], []
    for index, raw in enumerate(raw_users):
        where = f"users[{index}]"
        if not isinstance(raw, dict):
            problems.append(f"{where} must be an object")
            continue
        name = raw.get("db_user")
        if isinstance(name, str) and name:
            where = f"user {name!r}"
        unknown = unknown_key_problems(raw, USER_KEYS, "a user's")
        found = role_name_problems(name, "db_user")
        user, user_problems = parse_user(raw, name, default_rotation)
        found += user_problems
        problems += [f"{where}: {p}" for p in unknown + found]
        if not found:  # a typo'd key leaves the entry readable: its relations are checked too
            users.append(user)
    return tuple(users), problems


def refused_names(raw_users: Any, users: tuple[UserSpec, ...]) -> frozenset[str]:
    """The user names the event declares in entries that parse_users left out."""
    if not isinstance(raw_users, list):
        return frozenset()
    declared = {e.get("db_user") for e in raw_users if isinstance(e, dict)}
    return frozenset(n for n in declared if isinstance(n, str) and n) - {u.name for u in users}


def missing_grantor_problem(event: Event, user: UserSpec) -> str:
    """The grantor is neither on the server nor declared: the nearest user of the event."""
    names = ({u.name for u in event.users} | event.refused_users) - {user.name}
    return f"grantor {user.grantor!r} does not exist{did_you_mean(str(user.grantor), names)}"


def parse_user(
    raw: dict, name: Any, default_rotation: Rotation | None
) -> tuple[UserSpec, list[str]]:
    """The user entry and what is wrong with it (the caller checks the name, and keeps the
    entry only when nothing was wrong). Its own `rotation` replaces the event's whole; a
    delete ignores both, as deleting removes the secret."""
    problems = []
    action = raw.get("action", "create")
    action = action.strip().lower() if isinstance(action, str) else action
    if action not in ACTIONS:
        near = did_you_mean(action, ACTIONS) if isinstance(action, str) else ""
        problems.append(f"action must be one of {', '.join(ACTIONS)}, not {action!r}{near}")
    auth, found = parse_auth(raw.get("auth", "password"))
    problems += found
    secret_name = None if is_none(raw.get("user_secret_name")) else raw["user_secret_name"]
    if secret_name is None and action != "delete" and auth != "iam":
        problems.append("user_secret_name is required (except for delete and IAM users)")
    elif secret_name is not None:
        problems += secret_name_problems(secret_name, "user_secret_name")
    flags = {}
    for key in ("grant_ddl", "rotate_password", "keep_account"):
        flags[key] = parse_bool(raw.get(key, False))
        if flags[key] is None:
            problems.append(bool_problem(key, raw[key]))
    if "keep_account" in raw and action != "delete":
        problems.append("keep_account applies only to action delete")
    privileges, everything, found = parse_privileges(raw.get("grant_privileges"))
    problems += [f"grant_privileges: {p}" for p in found]
    grantor = None if is_none(raw.get("grantor")) else raw["grantor"]
    if grantor is not None:
        problems += role_name_problems(grantor, "grantor")
    reassign_to = None if is_none(raw.get("reassign_to")) else raw["reassign_to"]
    if reassign_to is not None:
        problems += role_name_problems(reassign_to, "reassign_to")
        if action != "delete":
            problems.append("reassign_to applies only to action delete")
    host = raw.get("host")
    if "host" in raw and not (isinstance(host, str) and host):
        problems.append("host must be a non-empty string")  # the engine checks the rest
    rotation, found = parse_rotation(raw.get("rotation"))
    problems += [f"rotation: {p}" for p in found]
    if is_none(raw.get("rotation")):
        rotation = default_rotation
    if auth == "iam" and action != "delete":
        own = rotation if not is_none(raw.get("rotation")) else None
        problems += iam_user_problems(action, bool(flags["rotate_password"]), own)
        rotation = None  # nothing to rotate: the event's default is the password users'
    user = UserSpec(
        name=name,
        secret_name=secret_name,
        action=next((a for a in ACTIONS if a == action), "create"),
        ddl=bool(flags["grant_ddl"]),
        privileges=privileges,
        all_privileges=everything,
        grantor=grantor,
        rotate_password=bool(flags["rotate_password"]),
        keep_account=bool(flags["keep_account"]),
        reassign_to=reassign_to,
        host=host,
        rotation=None if action == "delete" else rotation,
        auth=None if action == "delete" or "auth" not in raw else auth,
    )
    return user, problems


def parse_auth(value: Any) -> tuple[Auth | None, list[str]]:
    """`auth`: password or iam, in any case."""
    auth = value.strip().lower() if isinstance(value, str) else value
    found = next((a for a in AUTHS if a == auth), None)
    if found is None:
        near = did_you_mean(value, AUTHS) if isinstance(value, str) else ""
        return None, [f"auth must be one of {', '.join(AUTHS)}, not {value!r}{near}"]
    return found, []


def iam_user_problems(action: Any, rotate_password: bool, own: Rotation | None) -> list[str]:
    """An IAM user has no password to change or rotate: secrets, and so rotation, are for
    passwords only."""
    problems = []
    if action == "update":
        problems.append(
            "action update gives a new password, and an IAM user has none (auth iam): use create"
        )
    if rotate_password:
        problems.append("rotate_password: an IAM user has no password (auth iam)")
    if own and own.enabled:
        problems.append("rotation: an IAM user has no password to rotate (auth iam)")
    return problems


def parse_bool(value: Any) -> bool | None:
    """bool-ish: JSON booleans, 1/0, and true/false/yes/no/1/0 in any case; None if not."""
    if isinstance(value, bool):
        return value
    if json_int(value) in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    return None


def is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in NONE_WORDS)


def parse_privileges(value: Any) -> tuple[frozenset[str], bool, list[str]]:
    """Comma-separated string or list; case-insensitive, blanks ignored. Returns the named
    privileges, whether ALL was asked for (the engine's every one: see bind_engine), and the
    problems. Names are checked against the engine later, when it is known."""
    if is_none(value):
        return frozenset(), False, []
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = value
    else:
        return frozenset(), False, ["must be a comma-separated string or a list of strings"]
    names = {" ".join(item.split()).upper() for item in items if item.strip()}
    everything = bool(names & {"ALL", "ALL PRIVILEGES"})
    names -= {"ALL", "ALL PRIVILEGES"}
    unknown = sorted(names - KNOWN_PRIVILEGES)
    if unknown:
        listed = ", ".join([*sorted(KNOWN_PRIVILEGES), "ALL"])
        return (
            frozenset(),
            False,
            [
                f"unknown privilege {name}{did_you_mean(name, KNOWN_PRIVILEGES)}; the privileges "
                f"are {listed}"
                for name in unknown
            ],
        )
    return frozenset(names), everything, []


def parse_rotation(value: Any) -> tuple[Rotation | None, list[str]]:
    """A `rotation` object, event default or user override; None when absent or none-ish.
    `enabled` defaults to true; `{"enabled": false}` needs nothing else, and what else it
    holds is checked all the same, so that turning it back on cannot fail."""
    if is_none(value):
        return None, []
    if not isinstance(value, dict):
        return None, ["must be an object"]
    problems = unknown_key_problems(value, ROTATION_KEYS, "rotation's")
    flags = {}
    for key, default in (("enabled", True), ("rotate_immediately", False)):
        flags[key] = parse_bool(value.get(key, default))
        if flags[key] is None:
            problems.append(bool_problem(key, value[key]))
    lambda_arn = None if is_none(value.get("lambda_arn")) else value["lambda_arn"]
    if lambda_arn is not None and not LAMBDA_ARN.match(str(lambda_arn)):
        problems.append(
            "lambda_arn must be a Lambda function ARN "
            f"(arn:aws:lambda:REGION:ACCOUNT:function:NAME), not {lambda_arn!r}"
        )
    schedule = None if is_none(value.get("schedule")) else value["schedule"]
    days = None if is_none(value.get("days")) else value["days"]
    duration = None if is_none(value.get("duration")) else value["duration"]
    interval = interval_problems(schedule, days)
    if not interval and schedule is None and days is None:
        days = ROTATION_DEFAULT_DAYS
    problems += interval + duration_problems(duration, None if interval else schedule)
    if problems:
        return None, problems
    return Rotation(
        enabled=bool(flags["enabled"]),
        lambda_arn=lambda_arn,
        schedule=schedule,
        days=None if days is None else json_int(days),
        duration=duration,
        rotate_immediately=bool(flags["rotate_immediately"]),
    ), []


def interval_problems(schedule: Any, days: Any) -> list[str]:
    """`schedule` or `days`, not both, in the forms and bounds AWS accepts."""
    if schedule is not None and days is not None:
        return ["schedule and days exclude each other: give one"]
    if days is not None:
        if json_int(days) is None:
            return [f"days must be a whole number of days, not {days!r}"]
        if not 1 <= days <= ROTATION_MAX_DAYS:
            return [f"days must be from 1 to {ROTATION_MAX_DAYS}, not {days}"]
        return []
    if schedule is None:
        return []
    if not isinstance(schedule, str):
        return [f"schedule must be a string, not {schedule!r}"]
    rate = RATE.match(schedule)
    if rate:
        hours = int(rate[1]) * (24 if rate[2] == "day" else 1)
        if hours < ROTATION_MIN_HOURS:
            return [f"schedule {schedule}: AWS rotates at most every {ROTATION_MIN_HOURS} hours"]
        return []
    cron = CRON.match(schedule)
    if not cron:
        return [
            "schedule must be rate(N hours), rate(N days) or cron(minutes hours day-of-month "
            f"month day-of-week year), not {schedule!r}"
        ]
    return cron_problems(schedule, cron[1].split(" "))


def cron_problems(schedule: str, fields: list[str]) -> list[str]:
    """AWS's rules for a rotation cron(): six fields, minutes 0, any year, `?` in exactly one
    of day-of-month and day-of-week, at least 4 hours apart."""
    if len(fields) != 6 or not all(CRON_FIELD.match(f) for f in fields):
        return [f"schedule {schedule}: cron() takes six fields separated by single blanks"]
    minutes, hours, day_of_month, _, day_of_week, year = fields
    problems = []
    if minutes != "0":
        problems.append(f"schedule {schedule}: the minutes field must be 0")
    if year != "*":
        problems.append(f"schedule {schedule}: the year field must be *")
    if (day_of_month == "?") == (day_of_week == "?"):
        problems.append(
            f"schedule {schedule}: exactly one of day-of-month and day-of-week must be ?"
        )
    starts = cron_hours(hours)
    if starts is not None and not all(0 <= h <= 23 for h in starts):
        problems.append(f"schedule {schedule}: hours are 0 to 23")
    elif starts and min_gap(starts) < ROTATION_MIN_HOURS:
        problems.append(
            f"schedule {schedule}: AWS rotates at most every {ROTATION_MIN_HOURS} hours"
        )
    return problems


def cron_hours(field: str) -> list[int] | None:
    """The hours a cron() hours field starts a window at; None for a form not read here (the
    window checks are then left to AWS)."""
    hours: set[int] = set()
    for part in field.split(","):
        match = CRON_HOURS.match(part)
        if not match or (match[1] == "*" and match[2]) or match[3] == "0":
            return None
        start, end, step = match.groups()
        first = 0 if start == "*" else int(start)
        if end:
            last = int(end)
        elif start == "*" or step:  # "*", "*/6" and "2/6" run to the end of the day
            last = 23
        else:
            last = first
        hours.update(range(first, last + 1, int(step or 1)))
    return sorted(hours)


def min_gap(hours: list[int]) -> int:
    """The shortest time between two windows of one day (24 when there is one)."""
    return min((b - a for a, b in zip(hours, hours[1:], strict=False)), default=24)


def duration_problems(duration: Any, schedule: str | None) -> list[str]:
    """The window is 1 to 24 hours ("2h"), and must end before the next window starts and
    before the end of the UTC day, where the schedule says when that is."""
    if duration is None:
        return []
    match = DURATION.match(duration) if isinstance(duration, str) else None
    if not match or not 1 <= int(match[1]) <= 24:
        return [f"duration must be a whole number of hours from 1h to 24h, not {duration!r}"]
    hours = int(match[1])
    rate = RATE.match(schedule or "")
    if rate and rate[2] == "hour" and hours > int(rate[1]):
        return [f"duration {duration} is longer than the interval of schedule {schedule}"]
    cron = CRON.match(schedule or "")
    starts = cron_hours(cron[1].split(" ")[1]) if cron else None
    if starts and hours > min_gap(starts):
        return [f"duration {duration} is longer than the interval of schedule {schedule}"]
    if starts and starts[-1] + hours > 24:
        return [
            f"duration {duration} runs past midnight UTC after the {starts[-1]}:00 window of "
            f"schedule {schedule}"
        ]
    return []


def role_name_problems(name: Any, what: str) -> list[str]:
    """A name any engine could take: any characters (always quoted), but no NUL. The engine's
    own limits and reserved names are checked by its dialect's name_problems."""
    if not isinstance(name, str) or not name:
        return [f"{what} must be a non-empty string"]
    if "\x00" in name:
        return [f"{what} {name!r} contains a NUL character"]
    return []


def secret_id_problems(secret_id: str, what: str) -> list[str]:
    """A secret the tool only reads (the master's): any name or ARN Secrets Manager takes as a
    SecretId, RDS's own `rds!db-...` and `rds!cluster-...` included."""
    if len(secret_id) > SECRET_ID_LIMIT or CONTROL_CHARACTER.search(secret_id):
        return [
            f"{what} must be a secret name or ARN of at most {SECRET_ID_LIMIT} characters, "
            "none of them a control character"
        ]
    return []


def secret_name_problems(name: Any, what: str) -> list[str]:
    """A secret the tool may create: CreateSecret's rules for a name, or an ARN."""
    if not isinstance(name, str) or not (name.startswith("arn:") or SECRET_NAME.match(name)):
        return [f"{what} must be a secret name (letters, digits, /_+=.@-) or an ARN"]
    return []


def relationship_problems(event: Event) -> list[str]:
    """Duplicates, self-grants, cycles, and grantors deleted while their grantees stay."""
    problems = []
    seen: set[str] = set()
    for user in event.users:
        if user.name in seen:
            problems.append(f"user {user.name!r} is declared more than once")
        seen.add(user.name)
    secrets = Counter(u.secret_name for u in event.users if u.secret_name)
    problems += [
        f"secret {s!r} is used by more than one user" for s in sorted(secrets) if secrets[s] > 1
    ]
    for user in event.users:
        grantor = event.user(user.grantor) if user.grantor else None
        if user.grantor == user.name:
            problems.append(f"user {user.name!r} cannot be its own grantor")
        elif grantor and grantor.deleting and not user.deleting:
            problems.append(
                f"user {user.name!r} stays but its grantor {grantor.name!r} is being deleted"
            )
        if user.reassign_to == user.name:
            problems.append(f"user {user.name!r} cannot reassign its objects to itself")
    problems += [
        f"user {user.name!r} is the rotation clone of user {user.name[: -len(CLONE_SUFFIX)]!r}, "
        "which the tool manages together with it: declare only the user"
        for user in event.users
        if user.name.endswith(CLONE_SUFFIX) and event.user(user.name[: -len(CLONE_SUFFIX)])
    ]
    problems += [f"grantor cycle: {' -> '.join(cycle)}" for cycle in grantor_cycles(event)]
    return problems


def engine_problems(event: Event, dialect: Dialect[Any], settings: Settings) -> list[str]:
    """What the event asks that the engine does not have. Run once the engine is known: from
    the event, or else from the master secret."""
    problems = dialect.event_problems(event)
    allowed = dialect.table_privileges
    for user in event.users:
        where = f"user {user.name!r}"
        names = [
            (user.name, "db_user"),
            (user.grantor, "grantor"),
            (user.reassign_to, "reassign_to"),
        ]
        if user.rotating:
            names.append((user.clone, "its rotation clone"))
        for name, what in names:
            if name:
                problems += [f"{where}: {p}" for p in dialect.name_problems(name, what)]
        unknown = sorted(user.privileges - set(allowed) - set(dialect.privilege_aliases))
        if unknown:
            problems += [
                f"{where}: grant_privileges: {name} is not a {dialect.label} table privilege"
                f"{did_you_mean(name, allowed)} (allowed: {', '.join(allowed)}, ALL)"
                for name in unknown
            ]
        problems += [f"{where}: {p}" for p in dialect.user_problems(user, settings)]
    return problems


def engine_privileges(user: UserSpec, dialect: Dialect[Any]) -> frozenset[str]:
    """The user's table privileges as the engine has them: ALL as all of them, an alias as
    what it means. One the engine does not have (DROP on PostgreSQL, MAINTAIN on MySQL) is
    left out: engine_problems refused it, and the planner must still read the rest."""
    named = set(dialect.table_privileges) if user.all_privileges else set(user.privileges)
    for alias, meaning in dialect.privilege_aliases.items():
        if alias in named:
            named = (named - {alias}) | {meaning}
    return frozenset(named) & frozenset(dialect.table_privileges)


def bind_engine(event: Event, dialect: Dialect[Any]) -> Event:
    """The event for its engine: each user as the engine names and stores it
    (Dialect.for_engine)."""
    users = tuple(dialect.for_engine(user) for user in event.users)
    return replace(event, engine=dialect.engine, users=users)


def grantor_cycles(event: Event) -> list[list[str]]:
    """Each cycle of two or more users once, as a path back to its start. Linear: each user
    is walked through once; a walk stops at a user an earlier walk already went through."""
    cycles: list[list[str]] = []
    done: set[str] = set()
    for user in event.users:
        walk: dict[str, int] = {}  # this walk's users, by their place on it
        current: str | None = user.name
        while current and current not in done and current not in walk:
            declared = event.user(current)
            if declared is None:
                break
            walk[current] = len(walk)
            current = declared.grantor
        if current in walk:
            cycle = list(walk)[walk[current] :]
            if len(cycle) > 1:
                cycles.append([*cycle, current])
        done.update(walk)
    return cycles


def grantor_order(users: Iterable[UserSpec]) -> list[UserSpec]:
    """Grantors before their grantees (the event is acyclic by now). Iterative, so that a
    chain of thousands of users needs no deep recursion."""
    users = list(users)
    by_name = {u.name: u for u in users}
    ordered: list[UserSpec] = []
    placed: set[str] = set()
    for user in users:
        chain: list[UserSpec] = []
        current: UserSpec | None = user
        while current is not None and current.name not in placed:
            placed.add(current.name)
            chain.append(current)
            current = by_name.get(current.grantor) if current.grantor else None
        ordered += reversed(chain)
    return ordered


# ---------------------------------------------------------------------------------------------
# 5. Gathering: the master secret and the target, the user secrets, the login probes. All the
#    reading a run does; the database state is read by the engine (sections 10 and 11).
# ---------------------------------------------------------------------------------------------


def gather(
    connection: Any, event: Event, target: Target, aws: SecretsManager, deadline: Deadline
) -> Facts:
    """All a run reads before it decides: the database state and the user secrets, read at the
    same time (the secrets on a thread of their own; the connection is only ever used by this
    one), then the logins whose outcome decides a password's fate."""
    names = [u.secret_name for u in event.users if u.secret_name]
    users_of: dict[str, list[UserSpec]] = defaultdict(list)
    for user in event.users:
        users_of[user.secret_name or ""].append(user)

    def recheck(secret: SecretState) -> bool:
        """Whether a write would rest on what ListSecrets says of the secret's tags or
        rotation, which may be minutes old: then it is described (see read_states)."""
        return any(
            (u.has_password and missing_tags(secret, wanted_tags(event, target, u.name)))
            or (u.has_password and key_change(secret, event) is not None)
            or (
                u.rotation is not None
                and rotation_change(
                    u.rotation,
                    secret,
                    rotation_function(u.rotation, target.dialect, target.settings),
                )
                is not None
            )
            for u in users_of[secret.name]
        )

    unnamed = [u for u in event.users if u.dropping and not u.secret_name]

    def read_secrets() -> tuple[dict[str, list[str]], dict[str, SecretState]]:
        found = dict(
            zip(
                [u.name for u in unnamed],
                aws.map(lambda user: aws.find_managed(target, user.name), unnamed),
                strict=True,
            )
        )
        arns = [arn for arns in found.values() for arn in arns]
        return found, aws.read_states(names + arns, recheck, describe_absent=False)

    with ThreadPoolExecutor(1) as pool:
        reading = pool.submit(read_secrets)
        state = target.dialect.read_state(connection, target, event, deadline)
        found, secrets = reading.result()
    # A read by id answers "not found" for a secret without a value as for none. That answer
    # is described where an existing account or a delete would rest on it, and in a dry run,
    # which writes nothing that could tell; for accounts still to be created it stands (a
    # first run describes nothing), since CreateSecret tells the two apart
    # (SecretWriter.create).
    unsure = [
        name
        for name, secret in secrets.items()
        if secret.absent_by_read
        and (
            event.dry_run
            or not users_of.get(name)
            or any(not u.has_password or state.has_user(u) for u in users_of[name])
        )
    ]
    secrets.update(aws.described(unsure))
    found = read_recorded_secrets(event, state, secrets, found, aws)
    # A password account becoming an IAM user retires the secret the tool made for it: found
    # by its tags when the event names none (an account that is already IAM needs no search,
    # so a re-run makes no call for it).
    switching = [
        u
        for u in event.users
        if u.iam and not u.secret_name and state.has_user(u) and not state.other_auth(u)
    ]
    if switching:
        retiring = aws.map(lambda user: aws.find_managed(target, user.name), switching)
        found.update(zip([u.name for u in switching], retiring, strict=True))
        secrets.update(aws.read_states([arn for arns in retiring for arn in arns]))
    aliases = proven_aliases(connection, event, state, secrets, target)
    # An account that authenticates another way (IAM) refuses every password: never probed.
    staying = [u for u in event.users if u.has_password and not state.other_auth(u)]
    probes = probe_logins(staying, secrets, state, event, target, aws, aliases)
    # An account that exists without a record (made by hand, or managed before the tool kept
    # records) and is to get a password of this event's (its secret is new, or its password
    # does not log in) may be managed through another secret of the tool's, one per database
    # of this server as the tool once made them: found by their tags, it is named, not broken.
    adopted = [
        u
        for u in staying
        if state.has_user(u)
        and state.record_of(u) is None
        and (not secrets[u.secret_name or ""].exists or probes[u.name].current_ok is False)
    ]
    elsewhere = dict(
        zip(
            [u.name for u in adopted],
            aws.map(lambda user: aws.find_managed(target, user.name, anywhere=True), adopted),
            strict=True,
        )
    )
    for user in adopted:
        ours = secrets[user.secret_name or ""].arn
        elsewhere[user.name] = [arn for arn in elsewhere[user.name] if arn != ours]
    return Facts(state, secrets, probes, found, elsewhere, aliases)


def proven_aliases(
    connection: Any,
    event: Event,
    state: EngineState,
    secrets: dict[str, SecretState],
    target: Target,
) -> frozenset[Endpoint]:
    """The endpoints, named by secrets the server's records name, that reach this very server
    under another name (an instance endpoint and the cluster's, a DNS alias, 127.0.0.1 and
    localhost): each is tried once, by logging in there as a secret names (see
    Dialect.same_server). A restored copy of the server holds the same records, so a record
    alone does not say that a name reaches this one. The login is the secret's own, which the
    secret's users send to that name anyway: the master's credentials never go to a name a
    user secret says."""
    records = {u.secret_name: state.record_of(u) for u in event.users if u.secret_name}
    logins: dict[Endpoint, dict] = {}
    for name, record in records.items():
        secret = secrets.get(name or "")
        value = (secret.value or {}) if secret else {}
        if (
            secret
            and record
            and record.secret == secret.arn
            and value.get("host")
            and isinstance(value.get("password"), str)
            and described_elsewhere({**value, "dbname": None, "engine": None}, target, moving=False)
        ):
            logins.setdefault(endpoint_of(value), value)
    return frozenset(
        endpoint
        for endpoint, value in sorted(logins.items())
        if target.dialect.same_server(connection, other_endpoint(target, value), value)
    )


def read_recorded_secrets(
    event: Event,
    state: EngineState,
    secrets: dict[str, SecretState],
    found: dict[str, list[str]],
    aws: SecretsManager,
) -> dict[str, list[str]]:
    """What the server's records say, read by id (strongly consistent, never through the
    list): the secret a record names where it is not the one the event names (a delete that
    names none deletes it; another one is refused while it exists), and again, described, a
    secret whose record says a password change of ours is under way (ListSecrets may not show
    its AWSPENDING yet). Adds them to `secrets` (by ARN); returns `found` with each delete
    that names no secret given the recorded one."""
    recorded, again = [], []
    for user in event.users:
        record = state.record_of(user)
        named = secrets.get(user.secret_name or "")
        if record is None:
            continue
        if named is None or named.arn != record.secret:
            recorded.append(record.secret)
        elif record.pending:
            again.append(named.name)
    if not recorded and not again:
        return found
    fresh = aws.read_states(recorded + again, lambda _: True)  # described, every one
    secrets.update(fresh)
    found = dict(found)
    for user in event.users:
        record = state.record_of(user)
        if user.dropping and not user.secret_name and record:
            found[user.name] = [record.secret]
    return found


def resolve_target(
    event: Event, master_secret: dict, master_arn: str, settings: Settings | None = None
) -> tuple[Target | None, list[str]]:
    """Fill in what the event left out from the master secret. The problems found; no target
    when where or as whom to connect is missing. `settings`: the deployment's (none given:
    the defaults)."""
    settings = settings or Settings()
    problems = []
    username, password = master_secret.get("username"), master_secret.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        problems.append(f"master secret {event.secret_name!r} has no username and password")
    host = event.host or master_secret.get("host")
    if not host:
        problems.append("rds_host is required (the master secret has no host)")
    engine = event.engine or ENGINES.get(str(master_secret.get("engine", "")).lower())
    if not engine:
        problems.append("db_engine is required (the master secret names no engine it knows)")
    elif not event.engine:
        problems += engine_problems(event, DIALECTS[engine], settings)
    if event.ssl_mode == "verify-full" and not settings.ca_bundle:
        problems.append(
            "ssl_mode verify-full needs a CA bundle to verify against: DB_SSL_CA, or one built "
            "into the zip (build.sh --ca-bundle)"
        )
    problems += [
        f"user {u.name!r} is the master user: never managed"
        for u in event.users
        if u.name == username
    ]
    if not (engine and host and isinstance(username, str) and isinstance(password, str)):
        return None, problems
    dialect = DIALECTS[engine]
    target = Target(
        engine=dialect.engine,
        host=host,
        port=event.port or int(master_secret.get("port") or dialect.default_port),
        database=event.database,
        master_user=username,
        master_password=password,
        master_arn=master_arn,
        ssl_mode=event.ssl_mode,
        settings=settings,
    )
    return target, problems


def rotation_function(rotation: Rotation, dialect: Dialect[Any], settings: Settings) -> str | None:
    """The function that rotates the secret: the event's own, else the engine's AWS one."""
    return rotation.lambda_arn or settings.rotation_functions.get(dialect.rotation_variable)


def rotation_function_problems(
    event: Event, dialect: Dialect[Any], settings: Settings
) -> list[str]:
    """Rotation without a function of the event's own needs the engine's AWS function, which
    only the deployment can name; checked once the engine is known, before anything changes.
    The AWS function is deployed from the Serverless Application Repository template the
    dialect names; the deployment passes its ARN in the dialect's variable."""
    relying = [
        u.name for u in event.users if u.rotation and u.rotating and not u.rotation.lambda_arn
    ]
    variable, template = dialect.rotation_variable, dialect.rotation_template
    if not relying or variable in settings.rotation_functions or variable in settings.rejected:
        return []  # a variable that is not an ARN is one of the settings' problems
    return [
        f"rotation of {', '.join(map(repr, relying))} needs a rotation function: give "
        f"rotation.lambda_arn, or deploy the AWS template {template} and set {variable} to "
        "its RotationLambdaARN output"
    ]


def rotation_host_problems(event: Event, target: Target, master_secret: dict) -> list[str]:
    """The AWS functions rotate a user's secret only when its host is the master secret's
    (or a read replica of it): any other host would fail at the first rotation."""
    master_host = master_secret.get("host")
    relying = [
        u.name for u in event.users if u.rotation and u.rotating and not u.rotation.lambda_arn
    ]
    if not relying or not master_host or master_host == target.host:
        return []
    return [
        f"rotation of {', '.join(map(repr, relying))}: the AWS rotation functions refuse a "
        f"secret whose host ({target.host!r}, from rds_host) is not the master secret's host "
        f"({master_host!r}); give rds_host as the master secret has it"
    ]


class RateLimiter:
    """Spaces out calls so a burst stays under a Secrets Manager quota: `per_second` on
    average, the first `burst` calls at once (AWS meters its quotas per second, so a burst
    within one second's allowance is not throttled)."""

    def __init__(self, per_second: float, burst: int = 1):
        self._interval = 1.0 / per_second
        self._next = 0.0
        self._credit = self._interval * (max(burst, 1) - 1)
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            self._next = max(self._next, now - self._credit)
            delay = self._next - now
            self._next += self._interval
        if delay > 0:
            time.sleep(delay)


# The paces of Secrets Manager calls, in calls per second, and their defaults. Writes: AWS
# allows 50 per second per account and Region for each group of write calls (PutSecretValue
# and UpdateSecretVersionStage share one), shared with everything else in the account. Bulk
# reads: BatchGetSecretValue 100 per second, ListSecrets 100 (50 in older quota tables); a
# second's worth goes at once, so a re-run of a few hundred users never waits, and one of
# 5,000 (300 bulk reads) takes at least 2.75 s at the default pace.
SECRETS_PACES = {"SECRETS_WRITES_PER_SECOND": 40.0, "SECRETS_READS_PER_SECOND": 80.0}

SECRETS_PACE_MAX = 10_000  # calls per second: the most a pace may be, variable or event key

# The error codes of a throttled call, as botocore's retry modes know them (Secrets Manager
# answers ThrottlingException, HTTP 400, in its JSON protocol).
THROTTLING_CODES = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
)


class Throttled(Exception):
    """Secrets Manager throttled a call, and no retry is left: botocore's attempts are used
    up, or the invocation's remaining time could not wait for the next one."""


def calls_per_second(environ: Mapping[str, str], variable: str) -> tuple[float, str | None]:
    """The pace a variable of SECRETS_PACES sets, else its default; and what is wrong with it
    (Settings.read reports it)."""
    text = environ.get(variable, "").strip()
    try:
        pace = float(text) if text else SECRETS_PACES[variable]
    except ValueError:
        pace = 0.0
    if not 0 < pace <= SECRETS_PACE_MAX:
        return SECRETS_PACES[variable], f"must be a number of calls per second, not {text!r}"
    return pace, None


@cache
def aws_session() -> botocore.session.Session:
    """One botocore session a process, as boto3's default one (a warm Lambda keeps it: loading
    the service's model costs more than a call). It leaves timestamps as AWS sends them: the
    tool only asks whether a date is there (DeletedDate), and turning the three dates of each
    listed secret into datetimes is most of the work of parsing a re-run's responses."""
    session = botocore.session.get_session()
    parsers = session.get_component("response_parser_factory")
    parsers.set_parser_defaults(timestamp_parser=lambda value: value)
    return session


@cache
def freeze_what_lives_on() -> None:
    """Once a process, after its first client: the modules and botocore's service model (about
    100,000 objects) live as long as the process, yet each full collection of the garbage
    collector would walk them all again. Frozen, they are left out of its walks (what a run
    allocates is collected as ever)."""
    gc.freeze()


class SecretsManager:
    """The Secrets Manager calls the tool makes, counted, paced, retried by botocore, run
    concurrently.

    Retries are botocore's standard mode: a throttled call (ThrottlingException) or a
    transient failure is tried again, up to ATTEMPTS times in all, after a wait drawn at random
    (jitter) from an exponentially growing range, at most RETRY_MAX_WAIT_S. Each invocation's
    client also keeps botocore's retry quota (a throttled retry costs 5 of 500 tokens, a
    success gives one back): a client whose calls are throttled again and again stops retrying
    sooner. A retry is only waited for while the invocation has the time for the wait and the
    attempt after it (_within_time); otherwise the run stops with Throttled, which says so."""

    WORKERS = 16
    BATCH = 20  # BatchGetSecretValue's SecretIdList holds at most 20
    LIST_PAGE = 100  # ListSecrets' MaxResults is at most 100
    LIST_PAGES = 3  # pages a ListSecrets chain may take before its names are described instead
    ATTEMPTS = 8  # a call's attempts in all, the first one included
    RETRY_MAX_WAIT_S = 20  # botocore's longest wait between two attempts
    CONNECT_TIMEOUT_S, READ_TIMEOUT_S = 5, 30

    def __init__(
        self,
        region: str | None,
        settings: Settings | None = None,
        *,
        writes_per_second: float | None = None,
        reads_per_second: float | None = None,
        deadline: Deadline | None = None,
    ):
        """`writes_per_second` and `reads_per_second`, this invocation's paces when its event
        gives them, else the settings'; `deadline`, the invocation's time, bounds the retries."""
        settings = settings or Settings()
        config = botocore.config.Config(
            retries={"mode": "standard", "total_max_attempts": self.ATTEMPTS},
            connect_timeout=self.CONNECT_TIMEOUT_S,
            read_timeout=self.READ_TIMEOUT_S,
            max_pool_connections=self.WORKERS,
        )
        self.client = aws_session().create_client(
            "secretsmanager", region_name=region, config=config
        )
        freeze_what_lives_on()
        self.calls: dict[str, int] = defaultdict(int)
        self.throttled: dict[str, int] = defaultdict(int)
        self._counting = threading.Lock()
        self._deadline = deadline
        self.client.meta.events.register("before-call.secrets-manager", self._count)
        # Registered first: it must run before botocore's own handler decides on a retry and
        # sleeps before it.
        self.client.meta.events.register_first("needs-retry.secrets-manager", self._within_time)
        self._batch_denied = False  # BatchGetSecretValue denied: one read per secret instead
        self.list_reads = settings.secrets_list_reads
        writes = writes_per_second or settings.secrets_writes_per_second
        reads = reads_per_second or settings.secrets_reads_per_second
        self.paces = {"writes_per_second": writes, "reads_per_second": reads}
        self._writes = RateLimiter(writes)
        self._bulk_reads = RateLimiter(reads, burst=int(reads))

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1

    def _within_time(self, response: Any, operation: Any, attempts: int, **_: Any) -> None:
        """Before botocore decides on a retry: count a throttled answer, and when it is not
        the last attempt but the invocation's remaining time is shorter than the longest wait
        before the next attempt plus that attempt's timeouts, stop with Throttled (a run
        killed by Lambda's timeout would say nothing of why)."""
        error = response[1].get("Error", {}) if response else {}
        if error.get("Code") not in THROTTLING_CODES:
            return
        with self._counting:
            self.throttled[operation.name] += 1
        left_ms = self._deadline.remaining_ms() if self._deadline else None
        wait_s = min(2 ** (attempts - 1), self.RETRY_MAX_WAIT_S)
        needed_s = wait_s + self.CONNECT_TIMEOUT_S + self.READ_TIMEOUT_S
        if attempts < self.ATTEMPTS and left_ms is not None and left_ms < needed_s * 1000:
            raise Throttled(
                f"Secrets Manager answered {error.get('Code')} to {operation.name} "
                f"{attempts} time(s), and the invocation's remaining time "
                f"({max(left_ms, 0) / 1000:.0f} s) is shorter than another attempt may take "
                f"({needed_s} s)"
            )

    def map(self, function: Callable, items: Iterable) -> list:
        """function(item) for each item, WORKERS at a time, in order. The items go in chunks of
        a few (four chunks a worker): most of a re-run's items need no call at all, and a task
        per item would cost more than the items."""
        items = list(items)
        if len(items) <= 1:
            return [function(item) for item in items]
        size = -(-len(items) // (self.WORKERS * 4))
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        with ThreadPoolExecutor(min(self.WORKERS, len(chunks))) as pool:
            done = pool.map(lambda chunk: [function(item) for item in chunk], chunks)
            return [result for chunk in done for result in chunk]

    def write(self, operation: str, **kwargs: Any) -> dict:
        self._writes.wait()
        info("aws", call=operation, secret=kwargs.get("SecretId") or kwargs.get("Name"))
        response: dict = getattr(self.client, operation)(**kwargs)
        return response

    def master_secret(self, secret_id: str) -> tuple[dict, str]:
        """The master secret's value and ARN. Nothing is touched yet: a secret that is missing,
        unreadable or malformed is invalid input (InvalidEvent), naming the secret."""
        try:
            response = self.client.get_secret_value(SecretId=secret_id)
        except botocore.exceptions.ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            text = f"{code}: {error.response.get('Error', {}).get('Message', '')}"
            hint = MASTER_SECRET_HINTS.get(code)
            if hint:
                raise InvalidEvent([f"master secret {secret_id!r} {hint} ({text})"]) from None
            raise ApplyError(
                f"could not read the master secret {secret_id!r} ({text}); nothing was "
                "changed, re-run later"
            ) from None
        except botocore.exceptions.BotoCoreError as error:  # no credentials, no endpoint...
            raise ApplyError(
                f"could not reach Secrets Manager to read the master secret {secret_id!r}: "
                f"{error}; nothing was changed"
            ) from None
        REDACT.add(response.get("SecretString"))
        try:
            value = json.loads(response["SecretString"])
        except (KeyError, ValueError, RecursionError):
            raise InvalidEvent([f"master secret {secret_id!r} does not hold JSON"]) from None
        if not isinstance(value, dict):
            raise InvalidEvent([f"master secret {secret_id!r} does not hold a JSON object"])
        if isinstance(value.get("password"), str):
            REDACT.add(value["password"])
        problems = master_value_problems(value)
        if problems:
            raise InvalidEvent([f"master secret {secret_id!r}: {p}" for p in problems])
        return value, response["ARN"]

    def find_managed(self, target: Target, user: str, *, anywhere: bool = False) -> list[str]:
        """The ARNs of the secrets the tool made for `user` on this database (or, `anywhere`,
        on any database of this server), by their tags. ListSecrets can lag writes by a few
        minutes: a delete that finds nothing says so, and its re-run looks again."""
        wanted = identity_tags(target, user)
        if anywhere:
            del wanted[DATABASE_TAG]
        filters = [
            {"Key": "tag-key", "Values": [USER_TAG]},
            {"Key": "tag-value", "Values": [wanted[USER_TAG]]},  # a prefix: checked below
        ]
        found = []
        for page in self.client.get_paginator("list_secrets").paginate(Filters=filters):
            for entry in page["SecretList"]:
                tags = {t["Key"]: t["Value"] for t in entry.get("Tags", [])}
                if tags.get("managed-by") == TOOL and all(
                    tags.get(k) == v for k, v in wanted.items()
                ):
                    found.append(entry["ARN"])
        return sorted(found)

    # Reading the user secrets in bulk. A no-op run must not cost one call per secret, so the
    # state comes from two bulk reads, run concurrently:
    # - BatchGetSecretValue by name, 20 a call: each secret's AWSCURRENT value, its version id
    #   and that version's staging labels. A read by id, as consistent as GetSecretValue; a
    #   secret that does not exist, is scheduled for deletion or has no AWSCURRENT value comes
    #   back in Errors.
    # - ListSecrets filtered on the names' prefixes, 100 a page: each secret's ARN, tags,
    #   rotation, deletion date and version ids with their labels (what DescribeSecret gives).
    #   But ListSecrets is eventually consistent: it "might not reflect changes from the last
    #   five minutes". So it is never believed alone. A secret is taken from the list only when
    #   the batch read returned its value and agrees with it: the same AWSCURRENT version with
    #   the same labels, no deletion date, and no AWSPENDING anywhere. Every other secret is
    #   described individually (DescribeSecret, strongly consistent), which covers:
    #   - a secret created in the last minutes, missing from the list (and any secret the list
    #     did not return: a name filter is a prefix match, pages are capped, ListSecrets may be
    #     denied by the role's policy);
    #   - a secret deleted (scheduled) or restored recently: the batch read's error or value
    #     contradicts the list;
    #   - AWSCURRENT moved recently (a promotion, a rotation): the batch read's version differs;
    #   - an AWSPENDING label anywhere, listed or on the AWSCURRENT version: a pending change
    #     (ours, to finish or undo, or a rotation's) is always read from DescribeSecret, never
    #     from a list that may be minutes old, so a stale AWSPENDING is never acted on.
    #   What a bulk read cannot show is an AWSPENDING put on a separate version in the last
    #   five minutes of a secret whose AWSCURRENT did not move (the batch read returns only
    #   AWSCURRENT). It comes from a rotation that just started (which may as well start a
    #   second after a DescribeSecret: a race the tool never excluded) or from a run of ours
    #   that failed between staging a password and promoting it. A re-run of that event decides
    #   the same change and stages again, superseding it; a run of another event within those
    #   minutes keeps the AWSCURRENT password this once, and the next run, the list caught up,
    #   finishes or undoes the change (the staged password stays in AWSPENDING, never lost).
    #   SECRETS_LIST_READS=false describes every secret, for no such window at all.
    # - One answer is not described at once: a secret the batch read did not find
    #   (ResourceNotFoundException) and the list does not show. A read by id does not lag, but
    #   it answers so for a secret without a value as well as for none. gather describes it
    #   where an existing account or a delete would rest on it; for an account still to be
    #   created, the CreateSecret that follows tells the two apart (SecretWriter.create), so a
    #   first run of N users makes no DescribeSecret (it made N before; its dry run does).
    # Tags and rotation settings may lag in the list the same way: a listed secret for which
    # `recheck` says a write would rest on them (gather: a tag to add, a rotation to change)
    # is described too, so no write is decided from the list alone.

    def read_states(
        self,
        names: list[str],
        recheck: Callable[[SecretState], bool] | None = None,
        *,
        describe_absent: bool = True,
    ) -> dict[str, SecretState]:
        """The state of each named secret: listed and batch-read in bulk, described where the
        two disagree or say nothing, then the values the description found unread. Without
        `describe_absent`, a secret the batch read did not find and the list does not show is
        taken as absent_by_read, not described: the caller describes those it must be sure of
        (see described)."""
        names = list(dict.fromkeys(names))
        chains = name_prefix_chains(names) if self.list_reads and names else []
        batches = [names[i : i + self.BATCH] for i in range(0, len(names), self.BATCH)]
        tasks = [("list", chain) for chain in chains] + [("batch", b) for b in batches]
        listed: dict[str, dict] = {}
        values: dict[str, dict] = {}
        not_found: set[str] = set()
        for kind, response in self.map(self._bulk_read, tasks):
            if kind == "list":
                listed.update((entry["Name"], entry) for entry in response)
            else:
                values.update((item["Name"], item) for item in response.get("SecretValues", []))
                not_found.update(
                    error["SecretId"]
                    for error in response.get("Errors", [])
                    if error.get("ErrorCode") == "ResourceNotFoundException"
                )
        states: dict[str, SecretState] = {}
        doubtful = []
        for name in names:
            entry, item = listed.get(name), values.get(name)
            listed_state = None
            if entry is not None and item is not None and list_agrees(entry, item):
                listed_state = self._listed(name, entry)
            if listed_state and not (recheck and recheck(listed_state)):
                states[name] = listed_state
            elif not describe_absent and entry is None and name in not_found:
                states[name] = SecretState(name=name, absent_by_read=True)
            else:
                doubtful.append(name)
        described = self.map(self._describe, doubtful)
        found = self._with_values([*states.values(), *described], values)
        return {name: found[name] for name in names}

    def described(self, names: list[str]) -> dict[str, SecretState]:
        """Each named secret as DescribeSecret says (strongly consistent), with its values."""
        return self._with_values(self.map(self._describe, names), {})

    def _with_values(
        self, secrets: Iterable[SecretState], values: dict[str, dict]
    ) -> dict[str, SecretState]:
        """The secrets with their AWSCURRENT values (from `values`, the batch read's, where the
        version agrees, else read by ARN) and our own AWSPENDING's."""
        states = {state.name: state for state in secrets}
        unread = []
        for state in states.values():
            item = values.get(state.name)
            if not state.exists or state.scheduled_for_deletion or not state.current_version:
                continue
            if item is not None and item.get("VersionId") == state.current_version:
                state.value = parse_secret_value(item.get("SecretString"))
                state.foreign_value = state.value is None and bool(item.get("SecretString"))
            else:
                unread.append(state)
        self._read_values(unread)
        for state in states.values():
            if state.pending_version and state.pending_is_ours:
                response = self.client.get_secret_value(
                    SecretId=state.arn, VersionId=state.pending_version
                )
                state.pending_value = parse_secret_value(response.get("SecretString"))
        return states

    def _bulk_read(self, task: tuple[str, list[str]]) -> tuple[str, Any]:
        kind, names = task
        if kind == "batch":
            return kind, self._batch_get(names)
        return kind, self._list(names)

    def _batch_get(self, ids: list[str]) -> dict:
        """BatchGetSecretValue of up to 20 secrets; where it is denied (a policy, an SCP or a
        VPC endpoint policy written before the action existed, in 2023), one GetSecretValue
        per secret instead, which answers the same (each secret's AWSCURRENT, or an error)."""
        if not self._batch_denied:
            self._bulk_reads.wait()
            try:
                response: dict = self.client.batch_get_secret_value(SecretIdList=ids)
                return response
            except botocore.exceptions.ClientError as error:
                if error.response.get("Error", {}).get("Code") != "AccessDeniedException":
                    raise
                if not self._batch_denied:
                    log.warning(
                        "BatchGetSecretValue denied: the secrets are read one by one",
                        extra={"fields": {"error": REDACT(str(error))}},
                    )
                self._batch_denied = True
        values, errors = [], []
        for secret_id in ids:
            try:
                values.append(self.client.get_secret_value(SecretId=secret_id))
            except botocore.exceptions.ClientError as error:
                said = error.response.get("Error", {})
                errors.append(
                    {
                        "SecretId": secret_id,
                        "ErrorCode": said.get("Code"),
                        "Message": said.get("Message"),
                    }
                )
        return {"SecretValues": values, "Errors": errors}

    def _list(self, prefixes: list[str]) -> list[dict]:
        """The secrets whose names start with one of `prefixes` (at most 10), up to
        LIST_PAGES pages: a hint, checked by the caller. A failure (ListSecrets denied by the
        role's policy, say) only means that every secret is described instead."""
        entries: list[dict] = []
        kwargs: dict[str, Any] = {
            "Filters": [{"Key": "name", "Values": prefixes}],
            "MaxResults": self.LIST_PAGE,
        }
        try:
            for _ in range(self.LIST_PAGES):
                self._bulk_reads.wait()
                response = self.client.list_secrets(**kwargs)
                entries += response.get("SecretList", [])
                if not response.get("NextToken"):
                    break
                kwargs["NextToken"] = response["NextToken"]
        except botocore.exceptions.ClientError as error:
            log.warning(
                "ListSecrets failed: the secrets are described one by one",
                extra={"fields": {"error": REDACT(str(error))}},
            )
        return entries

    def _read_values(self, states: list[SecretState]) -> None:
        """The AWSCURRENT values of described secrets, by ARN, 20 a call."""
        by_arn = {s.arn: s for s in states}
        arns = list(by_arn)
        batches = [arns[start : start + self.BATCH] for start in range(0, len(arns), self.BATCH)]

        for response in self.map(self._batch_get, batches):
            for item in response["SecretValues"]:
                state = by_arn[item["ARN"]]
                state.value = parse_secret_value(item.get("SecretString"))
                state.foreign_value = state.value is None and bool(item.get("SecretString"))
            if response.get("Errors"):
                failed = ", ".join(e["SecretId"] for e in response["Errors"])
                raise ApplyError(f"could not read secrets {failed}: {response['Errors'][0]}")

    def _listed(self, name: str, entry: dict) -> SecretState:
        """A secret as ListSecrets shows it (checked against the batch read by the caller)."""
        state = SecretState(
            name=name,
            arn=entry["ARN"],
            exists=True,
            tags={t["Key"]: t["Value"] for t in entry.get("Tags") or []},
            rotation=described_rotation(entry),
            kms_key_id=entry.get("KmsKeyId"),
        )
        read_versions(state, entry.get("SecretVersionsToStages") or {})
        return state

    def _describe(self, name: str) -> SecretState:
        try:
            found = self.client.describe_secret(SecretId=name)
        except self.client.exceptions.ResourceNotFoundException:
            return SecretState(name=name)
        state = SecretState(
            name=name,
            arn=found["ARN"],
            exists=True,
            scheduled_for_deletion="DeletedDate" in found,
            tags={t["Key"]: t["Value"] for t in found.get("Tags", [])},
            rotation=described_rotation(found),
            kms_key_id=found.get("KmsKeyId"),
        )
        read_versions(state, found.get("VersionIdsToStages", {}))
        return state

    def random_passwords(self, count: int) -> list[str]:
        """`count` passwords of 32 characters from as few GetRandomPassword calls as possible:
        each call gives up to 4096 characters, cut into passwords; a piece that lacks a
        lowercase letter, an uppercase letter, a digit or a punctuation mark is dropped, as
        the AWS rotation functions' RequireEachIncludedType would have it."""
        passwords: list[str] = []
        while len(passwords) < count:
            wanted = min(4096, PASSWORD_LENGTH * (count - len(passwords) + 2))
            text = self.client.get_random_password(
                PasswordLength=wanted, ExcludeCharacters=PASSWORD_EXCLUDED, IncludeSpace=False
            )["RandomPassword"]
            pieces = (text[i : i + PASSWORD_LENGTH] for i in range(0, len(text), PASSWORD_LENGTH))
            passwords += [p for p in pieces if len(p) == PASSWORD_LENGTH and has_every_type(p)]
        REDACT.add(*passwords)
        return passwords[:count]


def has_every_type(password: str) -> bool:
    return all(
        any(test(c) for c in password)
        for test in (str.islower, str.isupper, str.isdigit, lambda c: not c.isalnum())
    )


# What the master secret's read errors mean to the user (the rest: try again later).
MASTER_SECRET_HINTS = {
    "ResourceNotFoundException": "does not exist (in this region and account)",
    "AccessDeniedException": "may not be read by this function: its role needs "
    "secretsmanager:GetSecretValue on it (and kms:Decrypt on its KMS key)",
    "DecryptionFailure": "cannot be decrypted: the function's role needs kms:Decrypt on the "
    "secret's KMS key",
    "InvalidRequestException": "cannot be read now (scheduled for deletion?)",
    "InvalidParameterException": "is not a valid secret id",
    "ValidationException": "is not a valid secret id",
}


def master_value_problems(value: dict) -> list[str]:
    """What in a master secret's value cannot be used: its keys' types, a NUL anywhere."""
    problems = []
    for key in ("username", "password", "host", "engine", "dbname"):
        item = value.get(key)
        if item is not None and not isinstance(item, str):
            problems.append(f"{key} must be a string, not a JSON {type(item).__name__}")
        elif isinstance(item, str) and "\x00" in item:
            problems.append(f"{key} contains a NUL character")
    port = value.get("port")
    if port is not None and parse_port(port)[1]:
        problems.append("port must be a port number")
    return problems


def parse_secret_value(text: str | None) -> dict | None:
    """A secret's value when it is a JSON object (else None: not ours to use). A password that
    is not a string stays in the value as it is, for secret_value_problems to name."""
    try:
        value = json.loads(text) if text else None
    except (ValueError, RecursionError):
        return None
    if isinstance(value, dict):
        if isinstance(value.get("password"), str):
            REDACT.add(value["password"])
        return value
    return None


def secret_value_problems(user: UserSpec, secret: SecretState) -> list[str]:
    """A user secret whose password no server could take: not a string (a JSON number), empty,
    or holding a NUL or a lone surrogate. Nothing is written for it; fix or delete the value."""
    problems = []
    for stage, value in (("AWSCURRENT", secret.value), ("AWSPENDING", secret.pending_value)):
        if not value or "password" not in value:
            continue
        password = value["password"]
        if not isinstance(password, str):
            why = f"is a JSON {type(password).__name__}, not a string"
        elif not password:
            why = "is empty"
        elif "\x00" in password or any("\ud800" <= c <= "\udfff" for c in password):
            why = "holds a NUL character or a lone surrogate"
        else:
            continue
        problems.append(
            f"user {user.name!r}: secret {secret.name!r} ({stage}): its password {why}; "
            "correct the value or delete the secret"
        )
    return problems


def described_rotation(found: dict) -> Rotation:
    """The rotation DescribeSecret reports. A rotation turned off keeps its function and rules
    there; a secret never rotated has none of these keys."""
    rules = found.get("RotationRules") or {}
    return Rotation(
        enabled=bool(found.get("RotationEnabled")),
        lambda_arn=found.get("RotationLambdaARN") or None,
        schedule=rules.get("ScheduleExpression") or None,
        days=rules.get("AutomaticallyAfterDays") or None,
        duration=rules.get("Duration") or None,
    )


def read_versions(state: SecretState, versions: Mapping[str, list[str]]) -> None:
    """The AWSCURRENT and AWSPENDING versions, from DescribeSecret's VersionIdsToStages or
    ListSecrets' SecretVersionsToStages."""
    for version, stages in versions.items():
        if "AWSCURRENT" in stages:
            state.current_version = version
        # A secret's first version is AWSCURRENT too, even when staged as AWSPENDING; one
        # of ours still labelled AWSPENDING is an unfinished change all the same.
        if "AWSPENDING" in stages and (
            "AWSCURRENT" not in stages or version.startswith(VERSION_PREFIX)
        ):
            state.pending_version = version


def list_agrees(entry: dict, item: dict) -> bool:
    """Whether a ListSecrets entry may be believed: the BatchGetSecretValue item (strongly
    consistent) shows the same AWSCURRENT version with the same labels, the entry has no
    deletion date, and no AWSPENDING is in sight (see SecretsManager.read_states)."""
    versions = entry.get("SecretVersionsToStages") or {}
    current = [v for v, stages in versions.items() if "AWSCURRENT" in stages]
    labels = set(item.get("VersionStages") or [])
    return (
        not entry.get("DeletedDate")
        and current == [item.get("VersionId")]
        and set(versions[current[0]]) == labels
        and not any("AWSPENDING" in stages for stages in versions.values())
    )


def name_prefix_chains(names: list[str], size: int = 100, values: int = 10) -> list[list[str]]:
    """ListSecrets name filters (prefix matches, at most `values` a filter) that cover
    `names` tightly: the names are split on their next character until a group holds at most
    `size` of them, each group is named by its members' longest common prefix, and
    neighbouring groups share a filter while together they hold at most `size` names (a
    page). bench-owner and bench-user0001..bench-user0499 take 5 filters of a page each."""
    groups: list[tuple[str, int]] = []

    def split(members: list[str]) -> None:
        prefix = os.path.commonprefix(members)
        if (len(members) <= size and prefix) or all(len(m) == len(prefix) for m in members):
            groups.append((prefix, len(members)))
            return
        following: dict[str, list[str]] = defaultdict(list)
        for member in members:
            following[member[len(prefix) : len(prefix) + 1]].append(member)
        for key in sorted(following):
            split(following[key])

    split(sorted(names))
    chains: list[list[str]] = []
    count = 0
    for prefix, members in groups:
        if not chains or len(chains[-1]) == values or count + members > size:
            chains.append([])
            count = 0
        chains[-1].append(prefix)
        count += members
    return chains


def unverified(secret: SecretState, record: Record | None, target: Target, event: Event) -> bool:
    """Whether an existing account's password must be tried before the secret is recorded as
    its manager or moved to it: no record names the secret (an account managed before the
    tool kept records, or made by hand), or the secret is moving here from another endpoint."""
    named = record is not None and record.secret == secret.arn
    return not named or secret_use(secret, target, event, record) == "moving"


def needs_probe(secret: SecretState, login_exists: bool, event: Event) -> bool:
    return login_exists and (
        secret.pending_is_ours or (event.verify_logins and bool(secret.password))
    )


def probe_login(target: Target, login: str, secret: SecretState) -> Probe:
    if secret.pending_is_ours:
        pending = (secret.pending_value or {}).get("password")
        if target.login_works(login, pending):
            return Probe(pending_ok=True)
        return Probe(pending_ok=False, current_ok=target.login_works(login, secret.password))
    return Probe(current_ok=target.login_works(login, secret.password))


def probe_logins(
    users: list[UserSpec],
    secrets: dict[str, SecretState],
    state: EngineState,
    event: Event,
    target: Target,
    aws: SecretsManager,
    aliases: frozenset[Endpoint] = frozenset(),
) -> dict[str, Probe]:
    """Log in, concurrently, where a password's fate depends on whether it works (never with
    a secret that is not the user's to use)."""

    def needed(user: UserSpec) -> bool:
        secret, record = secrets[user.secret_name or ""], state.record_of(user)
        if secret_problems(user, secret, target, event, record, aliases):
            return False
        exists = state.has_user(user)
        return needs_probe(secret, exists, event) or (
            exists and bool(secret.password) and unverified(secret, record, target, event)
        )

    def one(user: UserSpec) -> Probe:
        secret = secrets[user.secret_name or ""]
        return probe_login(target, login_of(user, secret, state), secret)

    probed = [u for u in users if needed(u)]  # on a re-run, usually none
    found = dict(zip([u.name for u in probed], aws.map(one, probed), strict=True))
    return {u.name: found.get(u.name, Probe()) for u in users}


# ---------------------------------------------------------------------------------------------
# 6. Planning: event + state -> the whole plan (SQL steps, secret writes, rotation calls).
#    Pure: no AWS call, thread, log or clock; run() draws and hashes the new passwords.
# ---------------------------------------------------------------------------------------------


def make_plan(event: Event, target: Target, facts: Facts, problems: Iterable[str] = ()) -> Plan:
    """The event and what was read -> every decision of the run: each user's credential (a
    new password still to be drawn: None), what happens to each secret, the rotation calls,
    the warnings. Every problem (the ones given, and those found here against the state and
    the secrets) is raised at once: a user fixes everything in one round. Pure: no AWS call,
    thread, log or clock; the SQL steps come once the new passwords are drawn and hashed
    (with_steps)."""
    dialect, state, secrets = target.dialect, facts.state, facts.secrets
    event, found_problems = with_found_secrets(event, facts.found)
    problems = [
        *read_only_problems(target, state),
        *problems,
        *found_problems,
        *dialect.state_problems(event, state),
    ]
    for user in event.users:
        record = state.record_of(user)
        if user.secret_name:
            secret = secrets[user.secret_name]
            problems += secret_problems(user, secret, target, event, record, facts.aliases)
            problems += ownership_problems(user, secret, record, secrets)
        problems += deletion_problems(user, record, state, event)
        problems += [
            f"user {user.name!r}: its account exists and is managed through secret {other!r}, "
            f"and an account has one password (roles and accounts span the server): giving it "
            f"secret {user.secret_name!r} would leave that one unable to log in. Nothing was "
            "changed; manage each account through one secret, in one event"
            for other in facts.elsewhere.get(user.name, [])
        ]
    problems += [
        f"user {user.name!r}: its rotation clone {user.clone!r} exists, and a member of an IAM "
        "user authenticates with IAM too: drop the clone (REASSIGN OWNED BY it, DROP USER or "
        "DROP ROLE) before making the user an IAM user"
        for user in event.users
        if user.iam and state.has_clone(user)
    ]
    staying = [u for u in event.users if u.has_password]
    credentials = {}
    for user in staying:
        secret = secrets[user.secret_name or ""]
        login = login_of(user, secret, state)
        # Converted to a password (auth password; it authenticated another way), the account
        # has no password that works: it gets one as a new user does.
        password_login = state.has_user(user) and not state.other_auth(user)
        use = secret_use(secret, target, event, state.record_of(user), facts.aliases)
        credential = decide_credential(
            user,
            login,
            secret,
            password_login,
            facts.probes.get(user.name, Probe()),
            target,
            use,
            expired=state.password_expired(user, login),
        )
        problems += credential_problems(credential, secret)
        problems += downgrade_problems(user, state)
        problems += moving_problems(
            credential, secret, use, facts.probes.get(user.name, Probe()), target
        )
        credentials[user.name] = credential
    rotations = rotation_calls(staying, secrets, dialect, target.settings)
    problems += rotation_call_problems(staying, rotations, secrets)
    if problems:
        raise InvalidEvent(problems)
    results = {
        u.name: secret_result(
            u,
            credentials.get(u.name),
            secrets[u.secret_name],
            secret_tags(event, target, u.name, credentials.get(u.name)),
            secret_key_change(secrets[u.secret_name], event, credentials.get(u.name)),
        )
        for u in event.users
        if u.secret_name
    }
    records = {}
    for user in event.users:
        held = state.record_of(user)
        if user.deleting and not user.dropping and held and event.database in held.databases:
            others = tuple(d for d in held.databases if d != event.database)
            records[user.name] = replace(held, databases=others)
    for user in staying:
        record = wanted_record(
            user, credentials[user.name], secrets[user.secret_name or ""], state, event
        )
        if record != state.record_of(user):
            records[user.name] = record
    return Plan(
        event,
        target,
        state,
        secrets,
        credentials,
        results,
        rotations,
        tuple(dialect.warnings(event, state)),
        records=records,
    )


def with_steps(plan: Plan, identified_by: Mapping[str, str]) -> Plan:
    """The plan with its SQL steps, given what each login that gets a password now is
    identified by (the form the engine stores: Dialect.identified_by). Pure."""
    steps = plan.target.dialect.plan(plan.event, plan.state, dict(identified_by))
    return replace(plan, steps=tuple(steps))


def read_only_problems(target: Target, state: EngineState) -> list[str]:
    """A server that refuses writes is refused before anything is written: every secret the
    run would write would name an endpoint where its user can never be made, and each
    statement would fail. First among the problems: it is likely the one that explains the
    others (a reader's endpoint differs from the writer's, so existing secrets "describe
    another database")."""
    if state.read_only is None:
        return []
    reader = (
        f" The host name {target.host!r} contains '-ro-': an Aurora cluster's reader endpoint "
        "(cluster-ro-), which only ever reaches readers."
        if "-ro-" in target.host.lower()
        else ""
    )
    return [
        f"the {target.dialect.label} server at {target.host}:{target.port} does not accept "
        f"writes: {state.read_only}. Likely rds_host (or the master secret's host) names a "
        "reader endpoint or a replica: use the writer (cluster) endpoint of the primary; for "
        "an Aurora global database, the primary cluster's or the global writer endpoint; "
        "during a failover, re-run once it is over." + reader + " Nothing was changed"
    ]


def with_found_secrets(event: Event, found: dict[str, list[str]]) -> tuple[Event, list[str]]:
    """The event with each delete that names no secret given the one found by its tags."""
    users, problems = [], []
    for user in event.users:
        arns = found.get(user.name, [])
        if len(arns) > 1:
            problems.append(
                f"user {user.name!r}: several secrets of the tool's describe it on this database "
                f"({', '.join(arns)}); name the one to delete in user_secret_name"
            )
        if len(arns) == 1:
            user = replace(user, secret_name=arns[0], secret_found=True)
        users.append(user)
    return replace(event, users=tuple(users)), problems


def secret_problems(
    user: UserSpec,
    secret: SecretState,
    target: Target,
    event: Event,
    record: Record | None = None,
    aliases: frozenset[Endpoint] = frozenset(),
) -> list[str]:
    """A secret is one account's: never taken from another account. It describes the
    database it was made for, and is never repointed to another one (nor, unless the event
    says so, to another endpoint); but where the server's own record says it manages the
    account, it serves every database of the server, under any name the server is reached by
    (see secret_use)."""
    if not secret.exists:
        return []
    if secret.foreign_value:
        return [
            f"user {user.name!r}: secret {secret.name!r} holds a value that is not a "
            "JSON object: it is somebody else's and is not overwritten"
        ]
    value = secret.value or {}
    owner = value.get("username")
    if owner not in (None, user.name, user.clone):
        return [
            f"user {user.name!r}: secret {secret.name!r} belongs to user {owner!r} "
            "and is not overwritten"
        ]
    differs = described_elsewhere(value, target, moving=event.move_secrets)
    if secret_use(secret, target, event, record, aliases) == "elsewhere":
        return [
            f"user {user.name!r}: secret {secret.name!r} describes another database "
            f"({'; '.join(differs)}); a secret is one database's, so it is not taken over. "
            "Nothing was changed"
            + (
                "; if the database moved to this endpoint, give move_secrets: true"
                if not event.move_secrets or described_elsewhere(value, target, moving=False)
                else ""
            )
        ]
    return secret_value_problems(user, secret)


def described_elsewhere(value: dict, target: Target, *, moving: bool) -> list[str]:
    """How the database a secret value describes differs from the target (what is absent
    does not differ: a secret made by hand may say less). With `moving`, only the endpoint
    (host, port) may differ."""
    said = {
        "engine": ENGINES.get(str(value.get("engine", "")).lower(), value.get("engine")),
        "dbname": value.get("dbname"),
        "host": str(value["host"]).lower() if value.get("host") else None,
        "port": str(value["port"]) if value.get("port") else None,
    }
    wanted = {
        "engine": target.engine,
        "dbname": target.database,
        "host": target.host.lower(),
        "port": str(target.port),
    }
    keys = ("engine", "dbname") if moving else ("engine", "dbname", "host", "port")
    return [
        f"{key} {said[key]!r}, not {wanted[key]!r}"
        for key in keys
        if said[key] is not None and said[key] != wanted[key]
    ]


SecretUse = Literal["own", "moving", "shared", "elsewhere"]


def secret_use(
    secret: SecretState,
    target: Target,
    event: Event,
    record: Record | None,
    aliases: frozenset[Endpoint] = frozenset(),
) -> SecretUse:
    """How this event may use the user's secret:
    - own: it describes this database at this endpoint (or is new): it is written to say so;
    - moving: it describes this database at another endpoint, and move_secrets follows it;
    - shared: the server's record says it manages the account, and it describes another
      database of this server, or this one under another name of the server (`aliases`,
      proven by same_server): it serves this database as it is, never repointed (its value
      and tags are left as they are);
    - elsewhere: anything else, refused (secret_problems)."""
    value = secret.value or {}
    if not described_elsewhere(value, target, moving=False):
        return "own"
    if event.move_secrets and not described_elsewhere(value, target, moving=True):
        return "moving"
    recorded = record is not None and record.secret == secret.arn
    engine_agrees = not described_elsewhere({"engine": value.get("engine")}, target, moving=True)
    here = not described_elsewhere({**value, "dbname": None}, target, moving=False)
    if recorded and engine_agrees and (here or endpoint_of(value) in aliases):
        return "shared"
    return "elsewhere"


Endpoint = tuple[str, str]  # (host in lower case, port): where a secret says its server is


def endpoint_of(value: dict) -> Endpoint:
    return (str(value.get("host") or "").lower(), str(value.get("port") or ""))


def ownership_problems(
    user: UserSpec, secret: SecretState, record: Record | None, secrets: dict[str, SecretState]
) -> list[str]:
    """The server's record names the one secret that manages the account; another secret is
    refused while that one exists (a deleted one no longer manages anything: the event's
    secret then takes over)."""
    if record is None or (secret.exists and secret.arn == record.secret):
        return []
    manager = secrets.get(record.secret)
    if manager is None or not manager.exists or manager.scheduled_for_deletion:
        return []
    used_in = ", ".join(map(repr, record.databases)) or "no database"
    if user.deleting:
        return [
            f"user {user.name!r}: the server's record says secret {record.secret!r} manages "
            f"its account, not {user.secret_name!r}; name that one in user_secret_name (or "
            "none: the delete then deletes that one). Nothing was changed"
        ]
    return [
        f"user {user.name!r}: its account is managed through secret {record.secret!r} (the "
        f"server's record; used in {used_in}), and an account has one password, so one "
        f"secret: giving it {user.secret_name!r} would leave that one unable to log in. "
        f"Nothing was changed; name {record.secret!r} in user_secret_name (one secret serves "
        "every database of the server), or give this database another user"
    ]


def deletion_problems(
    user: UserSpec, record: Record | None, state: EngineState, event: Event
) -> list[str]:
    """A delete drops the account on the whole server, and its secret with it: refused while
    the record says other databases use it, and when the secret cannot be known for certain
    (no record names it, none is named, and ListSecrets, which may lag minutes behind a
    create, found none by its tags): the secret would be left with a dead password."""
    if not user.dropping or not state.has_user(user):
        return []
    others = [
        d
        for d in (record.databases if record else ())
        if d != event.database and d in state.existing_databases
    ]
    problems = []
    if others:
        problems.append(
            f"user {user.name!r} cannot be deleted: the server's record says database(s) "
            f"{', '.join(map(repr, others))} use it too (their events declare it), and a "
            "delete drops the account on the whole server. Nothing was changed; first take "
            f"it out of {', '.join(map(repr, others))} (a delete there, with keep_account: "
            "true, revokes what it holds there and keeps the account)"
        )
    # An account that logs in another way (IAM) has no password a secret could hold.
    if not user.secret_name and not state.other_auth(user):
        problems.append(
            f"user {user.name!r}: no secret of the tool's is known for it: the server holds no "
            "record of one, and none was found by its tags (ListSecrets may lag a few minutes "
            "behind a create, and tags can be edited). Deleting it would leave its secret, if "
            "it has one, with a dead password. Nothing was changed; name its secret in "
            "user_secret_name (for an account that never had one, a name no secret has)"
        )
    return problems


def moving_problems(
    credential: Credential, secret: SecretState, use: SecretUse, probe: Probe, target: Target
) -> list[str]:
    """A moving secret is moved only onto an account its password logs in to (one recorded
    for another secret is refused by ownership_problems)."""
    value = secret.value or {}
    where = f"{value.get('host')}:{value.get('port')}"
    if use == "moving" and probe.current_ok is False and not probe.pending_ok:
        return [
            f"user {credential.user!r}: move_secrets: the account exists at "
            f"{target.host}:{target.port} and does not log in with the password of secret "
            f"{secret.name!r} (which describes {where}); moved, the secret would hold a "
            "password that does not log in. Nothing was changed; move it only to the server "
            "its account lives on"
        ]
    return []


def wanted_record(
    user: UserSpec,
    credential: Credential,
    secret: SecretState,
    state: EngineState,
    event: Event,
) -> Record:
    """The record the account gets in this run: its secret (its ARN, "" until a new one is
    created), every database that declares it, and our password change while it is under
    way ("" until it is staged; settled once it is promoted)."""
    held = state.record_of(user)
    kept = [d for d in (held.databases if held else ()) if d in state.existing_databases]
    databases = tuple(sorted({*kept, event.database}))  # a dropped database uses nothing
    pending = None
    if credential.mode == "change":
        pending = ""
    elif credential.mode == "finish":
        pending = secret.pending_version
    return Record(secret.arn or "", databases, pending)


def login_of(user: UserSpec, secret: SecretState, state: EngineState) -> str:
    """The account the secret's password belongs to: the rotation clone once an AWS rotation
    switched the secret to it (while both accounts exist), else the user itself."""
    named = (secret.value or {}).get("username")
    if named == user.clone and state.has_user(user) and state.has_clone(user):
        return user.clone
    return user.name


def secret_value(existing: dict | None, login: str, target: Target) -> dict:
    """The AWS credentials structure (what the rotation functions read), other keys kept."""
    return {
        **(existing or {}),
        "engine": target.engine,
        "host": target.host,
        "port": target.port,
        "username": login,
        "dbname": target.database,
        "masterarn": target.master_arn,
    }


def decide_credential(
    user: UserSpec,
    login: str,
    secret: SecretState,
    login_exists: bool,
    probe: Probe,
    target: Target,
    use: SecretUse = "own",
    *,
    expired: bool = False,
) -> Credential:
    """`use`: how the event uses the secret (secret_use): a shared one is never rewritten.
    `expired`: the login's password expired (MySQL, MariaDB): the secret's password is set
    again, which makes it work again without a change the applications would see."""
    shared = use == "shared"
    value = dict(secret.value or {}) if shared else secret_value(secret.value, login, target)
    if secret.pending_is_ours and login_exists and probe.pending_ok:
        pending = (secret.pending_value or {}).get("password")
        return Credential(
            user.name, login, "finish", pending, value, set_in_database=False, shared=shared
        )
    undo = secret.pending_is_ours
    current = secret.password
    if not login_exists:
        if current and not user.wants_new_password:
            return Credential(
                user.name, login, "keep", current, value, set_in_database=True, undo_pending=undo
            )
        return Credential(
            user.name, login, "new-user", None, value, set_in_database=True, undo_pending=undo
        )
    if user.wants_new_password or not current or probe.current_ok is False:
        return Credential(
            user.name,
            login,
            "change",
            None,
            value,
            set_in_database=True,
            undo_pending=undo,
            shared=shared,
        )
    return Credential(
        user.name,
        login,
        "keep",
        current,
        value,
        set_in_database=expired,
        undo_pending=undo,
        shared=shared,
    )


def downgrade_problems(user: UserSpec, state: EngineState) -> list[str]:
    """An existing account that authenticates another way (IAM, another plugin) is managed
    only as the event declares it: never given a password by default (adopting it, a new
    password, verify_logins repairing it), which would lock out whatever logs in that way
    (MySQL's ALTER USER ... IDENTIFIED BY also replaces the account's plugin)."""
    method = state.other_auth(user)
    if not method or user.auth is not None:
        return []
    return [
        f"user {user.name!r} authenticates with {method}: the tool never gives such an "
        "account a password unless the event says so. Nothing was changed. Declare "
        '"auth": "iam" to keep it an IAM user (no password; its secret retired), or '
        '"auth": "password" to make it a password user'
    ]


def credential_problems(credential: Credential, secret: SecretState) -> list[str]:
    foreign_pending = secret.pending_version and not secret.pending_is_ours
    if foreign_pending and credential.mode in ("new-user", "change"):
        return [
            f"user {credential.user!r}: secret {secret.name!r} has a rotation in progress "
            f"(AWSPENDING {secret.pending_version}); its password is not changed now"
        ]
    return []


ROTATION_RESULTS = {"enable": "enabled", "update": "updated", "disable": "disabled"}


def rotation_change(
    wanted: Rotation | None, secret: SecretState, function_arn: str | None
) -> RotationChange | None:
    """What brings the secret's rotation to the wanted one: "enable" or "update" (a
    rotate_secret call), "disable" (cancel_rotate_secret), or None when it already is."""
    current = secret.rotation
    if wanted is None:
        return None
    if not wanted.enabled:
        return "disable" if current.enabled else None
    if not current.enabled:
        return "enable"
    same = (current.lambda_arn, current.interval, current.duration) == (
        function_arn,
        wanted.interval,
        wanted.duration,
    )
    return None if same else "update"


def rotation_calls(
    users: list[UserSpec],
    secrets: dict[str, SecretState],
    dialect: Dialect[Any],
    settings: Settings,
) -> dict[str, RotationCall]:
    """By user: the call its secret's rotation needs, for the users whose rotation differs."""
    calls = {}
    for user in users:
        if user.rotation:
            function = rotation_function(user.rotation, dialect, settings)
            change = rotation_change(user.rotation, secrets[user.secret_name or ""], function)
            if change:
                calls[user.name] = RotationCall(change, user.rotation, function)
    return calls


def rotation_call_problems(
    users: list[UserSpec], calls: dict[str, RotationCall], secrets: dict[str, SecretState]
) -> list[str]:
    """AWS refuses rotate_secret while another version than AWSCURRENT is AWSPENDING: a
    rotation in progress, or one that failed or was cancelled half-way. Refused here, before
    anything changes. Turning rotation off is not refused: it cancels that rotation."""
    problems = []
    for user in users:
        call, secret = calls.get(user.name), secrets[user.secret_name or ""]
        foreign_pending = secret.pending_version and not secret.pending_is_ours
        if call and call.change != "disable" and foreign_pending:
            problems.append(
                f"user {user.name!r}: secret {secret.name!r} has a rotation in progress "
                f"(AWSPENDING {secret.pending_version}), so its rotation is not "
                f"{ROTATION_RESULTS[call.change]} now. Re-run once it is over; if it was "
                "abandoned, remove that label: aws secretsmanager update-secret-version-stage "
                f"--secret-id {secret.name} --version-stage AWSPENDING --remove-from-version-id "
                f"{secret.pending_version}"
            )
    return problems


def secret_tags(
    event: Event, target: Target, user: str, credential: Credential | None
) -> dict[str, str]:
    """The tags this run wants on the user's secret: none for a shared one (its tags say
    what it was made for, and stay)."""
    return {} if credential and credential.shared else wanted_tags(event, target, user)


def wanted_tags(event: Event, target: Target, user: str) -> dict[str, str]:
    """The tags of a user's secret: the tool's mark, what the secret is for (so that it can be
    found by them), and the event's own."""
    return {"managed-by": TOOL, **identity_tags(target, user), **event.secret_tags}


def identity_tags(target: Target, user: str) -> dict[str, str]:
    """Whose secret it is, and for which database on which server."""
    return {
        USER_TAG: tag_value(user),
        SERVER_TAG: tag_value(f"{target.engine}/{target.host.lower()}:{target.port}"),
        DATABASE_TAG: tag_value(target.database),
    }


def tag_value(text: str) -> str:
    """`text` as a tag value may hold it (letters, digits, blanks and _.:/=+-@, at most 256),
    else a digest of it: a name of any characters still finds its secret."""
    if TAG_VALUE.fullmatch(text):
        return text
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def missing_tags(secret: SecretState, wanted: dict[str, str]) -> dict[str, str]:
    """The tags the secret lacks or has another value for (tags others added are kept)."""
    return {k: v for k, v in wanted.items() if secret.tags.get(k) != v}


def secret_result(
    user: UserSpec,
    credential: Credential | None,
    secret: SecretState,
    tags: dict[str, str],
    key: str | None = None,
) -> str:
    """What happens to the user's secret; the same answer for a run and for its dry run. An
    IAM user's password secret is retired as a delete's is. `key`: the KMS key it is to be
    encrypted with from now on (key_change)."""
    if user.deleting and not user.dropping:
        return "unchanged" if secret.exists else "absent"
    if user.deleting or user.iam:
        return "deleted" if secret.exists and not secret.scheduled_for_deletion else "absent"
    if not secret.exists:
        return "created"
    if (
        secret.scheduled_for_deletion
        or credential is None
        or credential.mode != "keep"
        or credential.undo_pending
        or credential.final_value != secret.value
        or missing_tags(secret, tags)
        or key is not None
    ):
        return "updated"
    return "unchanged"


def secret_key_change(
    secret: SecretState, event: Event, credential: Credential | None
) -> str | None:
    """key_change, but none for a shared secret (its settings are its home's: secret_use)."""
    return None if credential and credential.shared else key_change(secret, event)


def key_change(secret: SecretState, event: Event) -> str | None:
    """The event's kms_key_id, where an existing secret is encrypted with another key (None:
    no change). An event without one leaves every secret's key as it is. DescribeSecret
    reports a key by its id or its alias ARN: compared by what follows the ARN's last ':'
    (key/ID, alias/NAME), with key/ dropped, so that a key's ARN and its id, or an alias and
    its ARN, are the same key; a key named once by alias and once by id is changed to what
    the event says, once."""
    wanted = event.kms_key_id
    if not wanted or not secret.exists:
        return None

    def short(key: str | None) -> str:
        return (key or "").rsplit(":", 1)[-1].removeprefix("key/")

    return None if short(secret.kms_key_id) == short(wanted) else wanted


def local_passwords(count: int) -> list[str]:
    """A dry run's passwords: never stored, never set, so drawn here without an AWS call."""
    return [base64.b64encode(os.urandom(24)).decode() for _ in range(count)]


# ---------------------------------------------------------------------------------------------
# 7. Applying the plan. The secret is the source of truth for every password:
#    - a new user's password is stored (AWSCURRENT) before its role is created;
#    - a new password for an existing user is stored as AWSPENDING (under a version id of our
#      own), set in the database, checked by logging in, and only then promoted to AWSCURRENT.
#    An interrupted change is finished or undone by the next run, by trying which one logs in.
# ---------------------------------------------------------------------------------------------


def write_secrets_first(
    plan: Plan, aws: SecretsManager, deadline: Deadline
) -> dict[str, tuple[SecretState, str | None]]:
    """What the database change needs in the secrets first (restored, created, a new
    password stored or staged), by user: the secret as written, and the version id of a
    staged AWSPENDING password."""
    deadline.check("writing the secrets")
    writer = SecretWriter(aws, plan.event, plan.target)
    # Only the users whose secret changes: a re-run's hundreds of unchanged secrets need no
    # thread of the pool to learn that there is nothing to write.
    staying = [
        u for u in plan.event.users if u.name in plan.credentials and plan.writes_secret_of(u)
    ]
    check_write_time(len(staying), aws.paces["writes_per_second"], deadline)

    def before(user: UserSpec) -> tuple[SecretState, str | None]:
        return writer.before_database(plan.credentials[user.name], plan.secret_of(user))

    return dict(zip([u.name for u in staying], aws.map(before, staying), strict=True))


def check_write_time(writes: int, pace: float, deadline: Deadline) -> None:
    """Refuse, before the first write, a run whose secret writes cannot fit the invocation's
    remaining time at its pace (each user whose secret changes writes at least once): a small
    share of a fleet's pace and a large event would otherwise be stopped by Lambda half-way."""
    left = deadline.remaining_ms()
    needed_s = (writes - 1) / pace if writes > 1 else 0.0
    if left is not None and needed_s * 1000 > left:
        raise ApplyError(
            f"stopped before writing the secrets: {writes} secret writes at "
            f"{pace:g} a second take at least {needed_s:.0f} s, and the invocation has "
            f"{max(left, 0) / 1000:.0f} s left. Nothing was changed: give this event a higher "
            "secrets_writes_per_second (or run fewer invocations at a time), or split its "
            "users over several events."
        )


def apply_plan(
    connection: Any,
    plan: Plan,
    first: dict[str, tuple[SecretState, str | None]],
    aws: SecretsManager,
    deadline: Deadline,
) -> Applied:
    """The database, then the secrets that wait for it (`first`: what write_secrets_first
    wrote). Returns what was done. A deleted user's secret is deleted once the statements have
    run, before PostgreSQL commits them: a delete that cannot delete the secret changes
    nothing there. MySQL's statements are final as they run: its records of deleted accounts
    are forgotten only after their secrets are deleted, so that a re-run still finds them."""
    writer = SecretWriter(aws, plan.event, plan.target)
    # A deleted user's secret, and the password secret of a user that became an IAM user.
    doomed = [u for u in plan.event.users if (u.dropping or u.iam) and u.secret_name]

    def delete_secrets() -> None:
        try:
            aws.map(lambda user: writer.delete(user, plan.secret_of(user)), doomed)
        except (Throttled, botocore.exceptions.ClientError) as error:
            raise ApplyError(
                "deleting the secrets of the deleted users failed: "
                f"{throttled_text(error) or REDACT(str(error))}. "
                "A delete does not succeed without its secret; a re-run converges."
            ) from None

    deadline.check("changing the database")
    if doomed:
        stats = plan.target.dialect.apply(connection, plan.target, plan.steps, then=delete_secrets)
    else:
        stats = plan.target.dialect.apply(connection, plan.target, plan.steps)

    def after(user: str) -> SecretState:
        secret, staged = first[user]
        rotation = plan.rotations.get(user)
        writer.after_database(plan.credentials[user], secret, staged, rotation)
        return secret

    try:
        deadline.check("promoting the new passwords")
        written = dict(zip(first, aws.map(after, list(first)), strict=True))
    except (ApplyError, Throttled, botocore.exceptions.ClientError) as error:
        raise ApplyError(
            f"{throttled_text(error) or REDACT(str(error))}. The database changes are committed "
            f"({len(plan.steps)} statements); some secrets are not yet final. A re-run converges."
        ) from None
    return Applied(stats + settle_records(connection, plan, written), written)


def settle_records(connection: Any, plan: Plan, written: Mapping[str, SecretState]) -> SqlStats:
    """Once the new passwords are promoted, the records say no change is under way any more
    (until then a re-run reads those secrets by id); once the deleted users' secrets are
    deleted, their records (where they outlive the account) are forgotten. A run stopped
    before this leaves the records as they were, and the next run settles them."""
    settled = []
    for credential in plan.credentials.values():
        user = plan.event.user(credential.user)
        if user is None or credential.mode not in ("change", "finish"):
            continue
        record = plan.records.get(user.name) or plan.state.record_of(user)
        if record is not None:
            secret = written.get(user.name, plan.secret_of(user)).arn or record.secret
            settled.append((user, replace(record, secret=secret, pending=None)))
    dialect = plan.target.dialect
    steps = dialect.record_steps(settled, plan.state) if settled else []
    steps += dialect.forget_records([u for u in plan.event.users if u.dropping], plan.state)
    return dialect.apply(connection, plan.target, steps) if steps else SqlStats()


def with_record_steps(plan: Plan, first: Mapping[str, tuple[SecretState, str | None]]) -> Plan:
    """The plan with the records written among its steps (see Dialect.with_records), each
    naming its secret's ARN and the version staged for it, known once the secrets are written
    (`first`: what write_secrets_first wrote; a dry run shows them as they would be)."""
    if not plan.records:
        return plan
    records = []
    for name, record in plan.records.items():
        user = plan.event.user(name)
        if user is None:
            continue
        secret, staged = first.get(name, (plan.secrets.get(user.secret_name or ""), None))
        pending = record.pending
        if pending == "":
            pending = staged or ""
        arn = (secret.arn if secret else None) or record.secret
        records.append((user, replace(record, secret=arn, pending=pending)))
    dialect = plan.target.dialect
    steps = dialect.with_records(
        list(plan.steps), dialect.record_steps(records, plan.state), plan.state
    )
    return replace(plan, steps=tuple(steps))


class SecretWriter:
    """The secret writes of one run, before and after the database transaction. They are made
    on a copy of the secret's state (before_database makes it), which then says what was
    written; the state read stays as it was."""

    def __init__(self, aws: SecretsManager, event: Event, target: Target):
        self.aws, self.event, self.target = aws, event, target

    def tags(self, user: str) -> dict[str, str]:
        return wanted_tags(self.event, self.target, user)

    def create(self, user: str, secret: SecretState, value: dict | None) -> bool:
        """Create the secret, with `value` when one is given. False when the name turns out to
        be taken by a secret without a value, which a read by id takes for none (see gather):
        `secret` then describes it, for the caller to put the value in, as it would have
        had the run described it."""
        kwargs: dict[str, Any] = {
            "Name": secret.name,
            "Description": f"Credentials of {self.target.engine} user {user} in database "
            f"{self.target.database} on {self.target.host}, managed by {TOOL}",
            "Tags": [{"Key": k, "Value": v} for k, v in self.tags(user).items()],
        }
        if self.event.kms_key_id:
            kwargs["KmsKeyId"] = self.event.kms_key_id
        if value is not None:
            kwargs["SecretString"] = json.dumps(value)
        try:
            response = self.aws.write("create_secret", **kwargs)
        except botocore.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ResourceExistsException":
                raise
            self.take_valueless(user, secret)
            return False
        secret.arn, secret.exists, secret.tags = response["ARN"], True, self.tags(user)
        secret.kms_key_id = self.event.kms_key_id
        secret.current_version = response.get("VersionId")
        return True

    def take_valueless(self, user: str, secret: SecretState) -> None:
        """`secret` as DescribeSecret shows the one that holds its name, when it has no value
        (nothing a password could be lost from). Any other secret there was made after this
        run read the name: nothing is decided from a read it contradicts."""
        found = self.aws.described([secret.name])[secret.name]
        if not found.exists or found.scheduled_for_deletion or found.current_version:
            raise ApplyError(
                f"user {user!r}: secret {secret.name!r} was made by someone else after this run "
                "found no secret by that name, so it was not overwritten. Nothing was changed "
                "in the database; the secrets written before it are listed in the log ('aws'), "
                "each with a password that works once the database has it. A re-run reads "
                "the secret and decides."
            )
        secret.arn, secret.exists, secret.tags = found.arn, True, found.tags
        secret.kms_key_id, secret.rotation = found.kms_key_id, found.rotation
        secret.found_without_value = True

    def put(self, secret: SecretState, value: dict, pending: bool = False) -> str:
        kwargs: dict[str, Any] = {"SecretId": secret.arn, "SecretString": json.dumps(value)}
        if pending:
            kwargs["ClientRequestToken"] = f"{VERSION_PREFIX}{uuid.uuid4()}"
            kwargs["VersionStages"] = ["AWSPENDING"]
        response = self.aws.write("put_secret_value", **kwargs)
        if secret.current_version is None:
            # The first version of a secret is always made AWSCURRENT, staged or not: a
            # secret created without a value had no working password to keep.
            secret.current_version = response["VersionId"]
        version: str = response["VersionId"]
        return version

    def promote(self, secret: SecretState, version: str) -> None:
        if secret.current_version != version:
            self.aws.write(
                "update_secret_version_stage",
                SecretId=secret.arn,
                VersionStage="AWSCURRENT",
                MoveToVersionId=version,
                RemoveFromVersionId=secret.current_version,
            )
            secret.current_version = version
        self.drop_pending_label(secret, version)

    def drop_pending_label(self, secret: SecretState, version: str) -> None:
        self.aws.write(
            "update_secret_version_stage",
            SecretId=secret.arn,
            VersionStage="AWSPENDING",
            RemoveFromVersionId=version,
        )

    def before_database(
        self, credential: Credential, secret: SecretState
    ) -> tuple[SecretState, str | None]:
        """Restore, create, or stage what the database change needs; returns the secret as
        written (a copy: the one read stays as it was) and the version id of a staged
        AWSPENDING password."""
        user, secret = credential.user, replace(secret)
        if secret.scheduled_for_deletion:
            self.aws.write("restore_secret", SecretId=secret.arn)
        if credential.undo_pending and secret.pending_version:
            self.drop_pending_label(secret, secret.pending_version)
        if credential.mode == "new-user":
            if secret.exists or not self.create(user, secret, credential.final_value):
                self.put(secret, credential.final_value)
        elif credential.mode == "change":
            if not secret.exists:
                self.create(user, secret, None)
            return secret, self.put(secret, credential.final_value, pending=True)
        return secret, None

    def after_database(
        self,
        credential: Credential,
        secret: SecretState,
        staged: str | None,
        rotation: RotationCall | None,
    ) -> None:
        """Promote a checked password; converge the value's other keys, the tags, and then the
        rotation, which may start at once and must find the final password in AWSCURRENT."""
        if credential.mode == "change":
            if not self.target.login_works(credential.login, credential.password):
                raise ApplyError(
                    f"user {credential.login!r} got its new password but cannot log in with "
                    "it; its secret keeps the new one as AWSPENDING, and the next "
                    "run finishes or undoes the change"
                )
            self.promote(secret, cast(str, staged))  # before_database staged it
        elif credential.mode == "finish":
            self.promote(secret, cast(str, secret.pending_version))  # the mode says so
            if credential.final_value != secret.pending_value:
                self.put(secret, credential.final_value)
        elif credential.mode == "keep" and credential.final_value != secret.value:
            self.put(secret, credential.final_value)
        missing = missing_tags(
            secret, secret_tags(self.event, self.target, credential.user, credential)
        )
        if missing:
            tags = [{"Key": k, "Value": v} for k, v in missing.items()]
            self.aws.write("tag_resource", SecretId=secret.arn, Tags=tags)
        key = secret_key_change(secret, self.event, credential)
        if key:
            # New versions are encrypted with it, and AWSCURRENT, AWSPENDING and AWSPREVIOUS
            # are re-encrypted (which needs kms:Encrypt on it, and Decrypt on the old key).
            self.aws.write("update_secret", SecretId=secret.arn, KmsKeyId=key)
            secret.kms_key_id = key
        if rotation:
            self.set_rotation(secret, rotation)

    def set_rotation(self, secret: SecretState, call: RotationCall) -> None:
        if call.change == "disable":
            self.aws.write("cancel_rotate_secret", SecretId=secret.arn)
            return
        # No ClientRequestToken: the rotation's AWSPENDING version takes it as its id, and a
        # version id of ours would make the next run finish or undo that rotation as our own.
        self.aws.write(
            "rotate_secret",
            SecretId=secret.arn,
            RotationLambdaARN=call.function_arn,
            RotationRules=call.rotation.rules,
            RotateImmediately=call.rotation.rotate_immediately,
        )

    def delete(self, user: UserSpec, secret: SecretState) -> None:
        if not secret.exists or secret.scheduled_for_deletion:
            return
        days = self.event.recovery_days
        window = (
            {"ForceDeleteWithoutRecovery": True} if days == 0 else {"RecoveryWindowInDays": days}
        )
        self.aws.write("delete_secret", SecretId=secret.arn, **window)


def another_invocation(wait_ms: int) -> ApplyError:
    return ApplyError(
        f"another {TOOL} invocation is running on this cluster (waited {wait_ms / 1000:.1f} s); "
        "nothing was changed, re-run later"
    )


# ---------------------------------------------------------------------------------------------
# 8. The report.
# ---------------------------------------------------------------------------------------------


def report(plan: Plan, applied: Applied, aws: SecretsManager) -> dict:
    event = plan.event
    users = [user_report(user, plan, applied) for user in event.users]
    changed = (
        bool(plan.steps)
        or bool(plan.rotations)
        or any(u["secret"] and u["secret"]["result"] not in ("unchanged", "absent") for u in users)
    )
    result: dict[str, Any] = {
        "status": "dry_run" if event.dry_run else "success",
        "dry_run": event.dry_run,
        "changed": changed,
        "engine": plan.target.engine,
        "host": plan.target.host,
        "database": plan.target.database,
        "users": users,
        # and what the server said while the run's statements ran (a Blue/Green
        # deployment's warning that DCL is not replicated, say)
        "warnings": [*plan.warnings, *applied.sql.notices],
        "stats": {
            "sql_statements": applied.sql.statements,
            "sql_ms": applied.sql.sql_ms,
            "catalog_queries": plan.state.catalog_queries,
            "aws_calls": dict(sorted(aws.calls.items())),
            "aws_throttled": dict(sorted(aws.throttled.items())),
            "secrets_paces": aws.paces,
        },
    }
    if event.dry_run:
        result["sql"] = [plan.target.dialect.render(step) for step in plan.steps]
    return result


# A synchronous Lambda response is at most 6 MB (6,291,556 bytes): a report larger than this
# is compacted (fit_report), with room left for what the runtime wraps around it.
REPORT_LIMIT_BYTES = 4_000_000

SQL_LOG_LINE = 100  # statements a 'sql' log line holds: CloudWatch takes 256 KB a line


def fit_report(result: dict, limit: int | None = None) -> dict:
    """The report as it is when its JSON fits `limit` bytes (REPORT_LIMIT_BYTES). Otherwise
    the details go to the log (one 'user' line per user, the dry run's SQL in 'sql' lines of
    SQL_LOG_LINE statements), and the report keeps each user's name, action and result, the
    counts by result, and as much of the SQL as fits, saying what it left out."""
    limit = REPORT_LIMIT_BYTES if limit is None else limit
    size = len(json.dumps(result))
    if size <= limit:
        return result
    users, sql = result["users"], result.get("sql") or []
    for user in users:
        info("user", **user)
    for start in range(0, len(sql), SQL_LOG_LINE):
        info("sql", first=start + 1, statements=sql[start : start + SQL_LOG_LINE])
    compact = {
        **result,
        "users": [{key: user[key] for key in ("db_user", "action", "result")} for user in users],
        "user_results": dict(sorted(Counter(user["result"] for user in users).items())),
        "warnings": [
            *result["warnings"],
            f"the report ({size:,} bytes) is larger than {limit:,} bytes: each user's changes "
            "and secret, and the SQL, are in the function's log ('user' and 'sql' lines)",
        ],
        "compacted": {"full_bytes": size, "limit_bytes": limit},
    }
    if "sql" in result:
        compact["sql"] = []
        room = limit - len(json.dumps(compact)) - 64  # 64: the "sql_omitted" key and number
        kept = 0
        for statement in sql:
            room -= len(json.dumps(statement)) + 2
            if room < 0:
                break
            kept += 1
        compact["sql"], compact["sql_omitted"] = sql[:kept], len(sql) - kept
    if len(json.dumps(compact)) > limit:  # even a line per user is too much: counts only
        compact["users"], compact["users_omitted"] = [], len(users)
    return compact


def user_report(user: UserSpec, plan: Plan, applied: Applied) -> dict:
    credential = plan.credentials.get(user.name)
    changes = [s.summary for s in plan.steps if user.name in s.users and not s.record]
    if credential and credential.mode == "finish":
        changes.append("finish an interrupted password change")
    if credential and credential.undo_pending:
        changes.append("undo an interrupted password change")
    secret: dict[str, Any] | None = None
    if user.secret_name:
        written = applied.secrets.get(user.name, plan.secret_of(user))
        result = "updated" if written.found_without_value else plan.secret_results[user.name]
        secret = {"name": user.secret_name, "arn": written.arn, "result": result}
        if user.secret_found:
            secret["found_by_tags"] = True
        if result not in ("unchanged", "absent"):
            changes.append(f"secret {result}")
    elif user.dropping:
        changes.append("no secret of the tool's found for it by its tags")
    if user.deleting and not user.dropping and user.name in plan.records:
        changes.append(f"taken out of database {plan.target.database}; the account stays")
    rotation = plan.rotations.get(user.name)
    if rotation:
        changes.append(rotation_summary(rotation))
    entry = {
        "db_user": user.name,
        "action": user.action,
        "grantor": user.grantor,  # the order the users were created in follows it
        "result": user_result(user, plan.state, changes, secret),
        "changes": changes,
        "secret": secret,
        "rotation": ROTATION_RESULTS[rotation.change] if rotation else "unchanged",
    }
    if user.iam:
        entry["auth"] = "iam"
        entry["iam_policy"] = iam_connect_policy(user, plan.target)
    return entry


# The part of an rds-db:connect resource the tool cannot know: RDS's resource id is not in
# the endpoint's name, and reading it would take rds:Describe* rights the function lacks.
RESOURCE_ID = "<resource-id>"


def iam_connect_policy(user: UserSpec, target: Target) -> dict[str, str]:
    """What an IAM user's principal must be allowed: rds-db:connect on the user of this
    database. The partition, region and account come from the master secret's ARN (the
    secret of an RDS database lives in its region and account)."""
    parts = target.master_arn.split(":")
    if len(parts) > 5 and parts[0] == "arn":
        partition, region, account = parts[1], parts[3], parts[4]
    else:
        partition, region, account = "aws", "<region>", "<account-id>"
    return {
        "action": "rds-db:connect",
        "resource": f"arn:{partition}:rds-db:{region}:{account}:dbuser:{RESOURCE_ID}/{user.name}",
        RESOURCE_ID: "not known to the tool: the DbiResourceId of the DB instance (db-...), "
        "or for an Aurora cluster the DbClusterResourceId (cluster-...), as aws rds "
        "describe-db-instances or describe-db-clusters shows it",
    }


def user_result(user: UserSpec, state: EngineState, changes: list[str], secret: dict | None) -> str:
    existed = state.has_user(user)
    outcome = secret["result"] if secret else "unchanged"
    if user.deleting and not user.dropping:
        return ("updated" if changes else "unchanged") if existed else "absent"
    if user.deleting:
        return "deleted" if existed or outcome == "deleted" else "absent"
    if not existed:
        return "created"
    return "updated" if changes or outcome not in ("unchanged", "absent") else "unchanged"


SUMMARY_CHANGES_WIDTH = 72  # characters of the changes column before it is cut


def summary_table(result: dict) -> str:
    """The report for a person at a terminal, after the JSON: a heading, then one line per
    user (user, result, changes: how many, and the first ones)."""
    if result["dry_run"]:
        verdict = "dry run, nothing was changed; a run would do this"
    else:
        verdict = "changed" if result["changed"] else "nothing to change"
    where = f"{result['database']} on {result['host']} ({result['engine']})"
    rows = [("user", "result", "changes")]
    for user in result["users"]:
        changes = user["changes"]
        listed = f"{len(changes)}: {'; '.join(changes)}" if changes else "-"
        if len(listed) > SUMMARY_CHANGES_WIDTH:
            listed = listed[: SUMMARY_CHANGES_WIDTH - 3] + "..."
        rows.append((user["db_user"], user["result"], listed))
    widths = [max(len(row[column]) for row in rows) for column in (0, 1)]
    lines = [f"{where}: {verdict}"] + [
        f"  {name.ljust(widths[0])}  {outcome.ljust(widths[1])}  {changes}".rstrip()
        for name, outcome, changes in rows
    ]
    if result["warnings"]:
        lines.append(f'  {len(result["warnings"])} warning(s): see "warnings" in the report')
    return "\n".join(lines)


def rotation_summary(call: RotationCall) -> str:
    """The change line: rotation enabled (every 30 days, function ...), rotation disabled."""
    if call.change == "disable":
        return "rotation disabled"
    wanted = call.rotation
    details = [wanted.schedule or f"every {wanted.days} days"]
    if wanted.duration:
        details.append(f"window {wanted.duration}")
    if wanted.rotate_immediately:
        details.append("rotating now")
    details.append(f"function {call.function_arn}")
    return f"rotation {ROTATION_RESULTS[call.change]} ({', '.join(details)})"


# ---------------------------------------------------------------------------------------------
# 9. The engines' interface, and what both engines share.
# ---------------------------------------------------------------------------------------------


StateT = TypeVar("StateT")


class Dialect(Protocol[StateT]):
    """What the engine-neutral stages ask of an engine: its rules, and its I/O. StateT is the
    engine's own state (PgState, MyState), which only the engine's methods look into."""

    engine: str  # the name secrets and the AWS rotation functions use
    label: str  # the name messages use
    default_port: int
    table_privileges: tuple[str, ...]  # what grant_privileges may name; ALL is all of them
    # Other names grant_privileges may use, and the privilege each one means on the engine.
    privilege_aliases: Mapping[str, str]
    rotation_variable: str  # the variable holding the ARN of the AWS rotation function
    rotation_template: str  # the Serverless Application Repository template it comes from
    clone_limit: CloneLimit | None  # None: the function takes any clone name the server does

    def name_problems(self, name: str, what: str) -> list[str]: ...
    def event_problems(self, event: Event) -> list[str]: ...
    def user_problems(self, user: UserSpec, settings: Settings) -> list[str]: ...
    def for_engine(self, user: UserSpec) -> UserSpec: ...
    def connect(self, target: Target, lock: HeldLock | None = None) -> Any: ...
    def login_works(self, target: Target, user: str, password: str | None) -> bool: ...
    def same_server(self, connection: Any, elsewhere: Target | None, login: dict) -> bool: ...
    def lock(self, target: Target, deadline: Deadline) -> AbstractContextManager[HeldLock]: ...
    def read_state(
        self, connection: Any, target: Target, event: Event, deadline: Deadline
    ) -> StateT: ...
    def state_problems(self, event: Event, state: StateT) -> list[str]: ...
    def warnings(self, event: Event, state: StateT) -> list[str]: ...
    def identified_by(self, password: str, state: StateT) -> str: ...
    def plan(self, event: Event, state: StateT, identified_by: dict[str, str]) -> list[Step]: ...
    def apply(
        self,
        connection: Any,
        target: Target,
        steps: Sequence[Step],
        then: Callable[[], None] | None = None,
    ) -> SqlStats: ...
    def rehearse(self, connection: Any, steps: Sequence[Step]) -> SqlStats: ...
    def render(self, step: Step) -> str: ...
    def record_steps(self, records: list[tuple[UserSpec, Record]], state: StateT) -> list[Step]: ...
    def with_records(self, steps: list[Step], records: list[Step], state: StateT) -> list[Step]: ...
    def forget_records(self, users: list[UserSpec], state: StateT) -> list[Step]: ...


def step_applied(step: Step, target: Target) -> None:
    """The audit line of one applied statement: what, for whom, where (never its SQL); a
    write of the tool's record says so (the report lists the changes to the accounts)."""
    info(
        "applied",
        change=step.summary,
        users=list(step.users),
        database=target.database,
        host=target.host,
        **({"record": True} if step.record else {}),
    )


def step_failed(
    steps: Sequence[Step], number: int, error: Exception, outcome: str, *, read_only: bool = False
) -> ApplyError:
    """The error of a statement that failed: which step, why, and what that left (outcome:
    what the engine did with the steps before it). `read_only`: the server refused it for
    being read-only, which it was not when the run began (read_only_problems): a failover or
    a switchover, or an endpoint that now reaches a replica. A re-run converges only once the
    endpoint reaches a writable primary again, and is refused before writing until then."""
    step = steps[number - 1]
    said = f"step {number} of {len(steps)} ({step.who}: {step.summary}) failed: "
    said += f"{REDACT(str(error)).strip()}. {outcome} New users' passwords and staged "
    said += "(AWSPENDING) passwords already stored in their secrets are reused by the next run"
    if read_only:
        return ApplyError(
            said + ". The server turned read-only during the run (a failover or a Blue/Green "
            "switchover in progress, or the endpoint now reaches a replica): a re-run is "
            "refused before it writes anything while the endpoint reaches a read-only server, "
            "and converges once it reaches a writable primary again (a cluster's writer "
            "endpoint does after the failover)."
        )
    return ApplyError(said + ": a re-run converges.")


@dataclass(frozen=True)
class CloneLimit:
    """The longest rotation clone name an engine's AWS rotation function takes, where that
    function's environment can change it: the deployment then declares the value it set."""

    variable: str  # where the deployment declares it (Settings.clone_limits)
    default: int  # the function's own
    largest: int  # the server's limit on names: no larger value means anything
    what: str  # the function's setting, as messages name it


SECONDS = re.compile(r"^[0-9]{1,6}(?:\.[0-9]{1,3})?$")  # 10, 2.5: plain decimal seconds

TIMEOUT_MAX_S = 900  # Lambda's longest invocation: no wait may be longer


def record_summary(record: Record) -> str:
    """The change a record write is reported as."""
    if record.pending:
        return "record the password change under way"
    secret = record.secret or "the secret this run creates"
    return f"record that secret {secret} manages it, in {', '.join(record.databases)}"


def parse_record(value: Any) -> Record | None:
    """A record read from the server (its JSON document, or that document's text), or None
    when it is not one the tool wrote: then the account has no record."""
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return None
    if not isinstance(value, dict):
        return None
    secret, databases, pending = value.get("secret"), value.get("databases"), value.get("pending")
    if (
        not isinstance(secret, str)
        or not secret.startswith("arn:")
        or not isinstance(databases, list)
        or not all(isinstance(d, str) for d in databases)
        or not isinstance(pending, str | None)
    ):
        return None
    return Record(secret, tuple(databases), pending)


@dataclass(frozen=True)
class Settings:
    """The function's environment, read and checked once, at the start of every run (run()),
    and passed where it is needed: nothing else reads the environment. A bad value is invalid
    input naming the variable, reported with the event's other problems; its default stands
    in meanwhile, so what reads a setting never fails on it."""

    # DB_CONNECT_TIMEOUT: connecting, and each login probe. Long enough for an Aurora
    # Serverless v2 instance that auto-paused (0 ACU) to resume: it answers the first
    # connection only once it has, after about 15 s (30 s after a day paused), and AWS
    # advises client timeouts above that. One long wait, not a short one retried: the paused
    # instance and a dead endpoint then both take a single attempt, and a run never gives up
    # on an instance that is waking up.
    connect_timeout: float = 40.0
    lock_timeout: float = 10.0  # DB_LOCK_TIMEOUT: each wait for an application's lock
    log_level: str = "INFO"
    ssl_mode: SslMode = "require"  # DB_SSL_MODE; else verify-full when there is a CA bundle
    ca_bundle: str | None = None  # DB_SSL_CA, else the one build.sh --ca-bundle put in the zip
    rotation_functions: Mapping[str, str] = field(default_factory=dict)  # by variable: an ARN
    clone_limits: Mapping[str, int] = field(default_factory=dict)  # by variable: CloneLimit
    secrets_writes_per_second: float = SECRETS_PACES["SECRETS_WRITES_PER_SECOND"]
    secrets_reads_per_second: float = SECRETS_PACES["SECRETS_READS_PER_SECOND"]
    secrets_list_reads: bool = True  # SECRETS_LIST_READS=false describes every secret
    region: str | None = None  # AWS_REGION: where the secrets are when the event names none
    problems: tuple[str, ...] = ()
    rejected: frozenset[str] = frozenset()  # the variables whose values were refused

    @classmethod
    def read(cls, environ: Mapping[str, str]) -> Settings:
        problems: list[str] = []
        rejected: set[str] = set()

        def given(name: str) -> str:
            return environ.get(name, "").strip()

        def refuse(name: str, problem: str) -> None:
            """`problem`: what follows the variable's name ("must be...", ": ...")."""
            problems.append(f"environment variable {name}{problem}")
            rejected.add(name)

        def seconds(name: str, default: float) -> float:
            text = given(name)
            if not text:
                return default
            if not SECONDS.match(text) or not 0 < float(text) <= TIMEOUT_MAX_S:
                refuse(
                    name,
                    f" must be a number of seconds above 0 and at most {TIMEOUT_MAX_S}, such as "
                    f"10 or 2.5, not {environ[name]!r}",
                )
                return default
            return float(text)

        def pace(name: str) -> float:
            value, problem = calls_per_second(environ, name)
            if problem:
                refuse(name, f" {problem}")
            return value

        connect = seconds("DB_CONNECT_TIMEOUT", cls.connect_timeout)
        lock = seconds("DB_LOCK_TIMEOUT", cls.lock_timeout)
        level = given("LOG_LEVEL").upper()
        if level and level not in LOG_LEVELS:
            refuse(
                "LOG_LEVEL",
                f" must be one of {', '.join(LOG_LEVELS)}, not {environ['LOG_LEVEL']!r}",
            )
        ca = given("DB_SSL_CA")
        if ca and not (os.path.isfile(ca) and os.access(ca, os.R_OK)):
            refuse("DB_SSL_CA", f": {ca!r} is not a readable file")
            ca = ""
        bundle = ca or (BUNDLED_CA if os.path.isfile(BUNDLED_CA) else None)
        mode = given("DB_SSL_MODE")
        if mode and mode not in SSL_MODES:
            refuse(
                "DB_SSL_MODE",
                f" must be one of {', '.join(SSL_MODES)}, not {environ['DB_SSL_MODE']!r}",
            )
            mode = ""
        functions = {}
        for dialect in DIALECTS.values():
            arn = given(dialect.rotation_variable)
            if arn and not LAMBDA_ARN.match(arn):
                refuse(
                    dialect.rotation_variable,
                    f" must be a Lambda function ARN (arn:aws:lambda:REGION:ACCOUNT:function:NAME),"
                    f" not {arn!r}",
                )
            elif arn:
                functions[dialect.rotation_variable] = arn
        clone_limits = {}
        for declared in (d.clone_limit for d in DIALECTS.values() if d.clone_limit):
            limit = given(declared.variable)
            if limit.isascii() and limit.isdigit() and 0 < int(limit) <= declared.largest:
                clone_limits[declared.variable] = int(limit)
            elif limit:
                refuse(
                    declared.variable,
                    f" must be a whole number of characters from 1 to {declared.largest} (the "
                    f"{declared.what}), not {environ[declared.variable]!r}",
                )
        return cls(
            connect_timeout=connect,
            lock_timeout=lock,
            log_level=level if level in LOG_LEVELS else cls.log_level,
            ssl_mode=cast(SslMode, mode or ("verify-full" if bundle else "require")),
            ca_bundle=bundle,
            rotation_functions=functions,
            clone_limits=clone_limits,
            secrets_writes_per_second=pace("SECRETS_WRITES_PER_SECOND"),
            secrets_reads_per_second=pace("SECRETS_READS_PER_SECOND"),
            secrets_list_reads=given("SECRETS_LIST_READS").lower() not in FALSE_WORDS,
            region=given("AWS_REGION") or None,
            problems=tuple(problems),
            rejected=frozenset(rejected),
        )


# What a driver's connection error means to the user: (words of the error, meaning), the first
# match wins. Each engine has its table (PG_CONNECT_FAILURES, MY_CONNECT_FAILURES).
ConnectFailures = tuple[tuple[tuple[str, ...], str], ...]

AUTHENTICATION_FAILED = (
    "authentication failed: the master secret's username and password do not log in "
    "(changed outside the secret, or the wrong secret?)"
)

HOST_UNKNOWN = (
    "the host name does not resolve: check rds_host (or the master secret's host) and the DNS "
    "of the function's VPC"
)

# The three ways a TCP connection fails, told apart because their causes differ: a refused
# connection was answered by the host (a reset: nothing listens on the port); no route was
# answered on the way (this machine or a router knows no path to the address); a timeout got
# no answer at all (what a security group or network ACL does with what it does not let in).
CONNECTION_REFUSED = (
    "connection refused: nothing accepts connections on that port: check rds_port (or the "
    "master secret's port) and that the database is running"
)

NO_ROUTE = (
    "no route to host: the network has no path to that address: check rds_host (or the "
    "master secret's host), and that the function runs in the database's VPC or one routed "
    "to it"
)

TIMED_OUT = "timed out"  # what to check follows from no_answer, which knows the time waited

TLS_FAILED = "the TLS connection failed: check ssl_mode and DB_SSL_CA"


def connect_failure(where: str, error: str, failures: ConnectFailures, settings: Settings) -> str:
    """A connection error as what the user can do about it, the driver's own words attached."""
    meaning = next((text for needles, text in failures if any(n in error for n in needles)), None)
    if meaning is None:
        return (
            f"cannot connect to {where}: {error}{no_answer(error, settings)}. Nothing was changed."
        )
    return (
        f"cannot connect to {where}: {meaning}{no_answer(error, settings)}. Nothing was "
        f"changed. (The driver said: {error})"
    )


def no_answer(error: str, settings: Settings) -> str:
    """What a driver's timeout while connecting means, in the tool's terms."""
    if "timed out" in error or "timeout expired" in error:
        return (
            f" (no answer within DB_CONNECT_TIMEOUT, {settings.connect_timeout:g} s: check the "
            "host and the port, that the function runs in the database's VPC, and that the "
            "database's security group lets this function in; an Aurora Serverless v2 instance "
            "that auto-paused answers only once it has resumed, 15 to 30 s or more: raise "
            "DB_CONNECT_TIMEOUT if it takes longer)"
        )
    return ""


def database_missing(database: str) -> str:
    """The problem of an event whose database_name the server does not have: a typo, as a
    rule, so invalid input on every engine (no connection error, no secret's complaint)."""
    return f"database {database!r} does not exist on this server"


class HeldLock:
    """The lock that keeps invocations apart, as the run holds it. `check` asks the server
    whether it still holds it: the server may end the session that holds it (an idle-session
    timeout, an administrator), and another invocation would then run beside this one."""

    def __init__(self, what: str, held: Callable[[], bool]):
        self.what, self._held = what, held

    def check(self, before: str) -> None:
        try:
            held, why = self._held(), "the server no longer holds it for this run"
        except Exception as error:  # the session is gone: whatever the driver says
            held, why = False, f"its session ended: {REDACT(str(error)).strip()}"
        if not held:
            raise ApplyError(
                f"lost {self.what} before {before} ({why}), so another invocation may be "
                "running beside this one. The database transaction was rolled back: nothing "
                "changed in the database. New users' passwords and staged (AWSPENDING) "
                "passwords already stored in their secrets are reused by the next run: a "
                "re-run converges."
            )


def other_endpoint(target: Target, value: dict) -> Target | None:
    """The target at the endpoint a secret's value names (None: a port that is no number)."""
    port = value.get("port")
    try:
        return replace(target, host=str(value["host"]), port=int(port) if port else target.port)
    except (ValueError, TypeError):
        return None


def server_notices(said: Iterable[str]) -> tuple[str, ...]:
    """What the server said while the steps ran, each once, scrubbed, as "server ..."."""
    return tuple(f"server {' '.join(REDACT(text).split())}" for text in dict.fromkeys(said))


def trusted_cas(bundle: str | None) -> str | None:
    """The one file verify-full checks certificates against (libpq takes one file): the CA
    bundle (Settings.ca_bundle) and Amazon's root CAs, joined into a file of their own."""
    if not bundle or not os.path.isfile(AMAZON_ROOT_CAS):
        return bundle
    stamps = tuple((path, os.stat(path).st_mtime_ns) for path in (bundle, AMAZON_ROOT_CAS))
    return joined_cas(stamps)


@cache
def joined_cas(stamps: tuple[tuple[str, int], ...]) -> str:
    """The files joined in one, once per process and content: a file of this process's own
    (mkstemp: a random name, private), never one found under a name another local user could
    have guessed and planted first; removed when the process ends."""
    parts = []
    for path, _ in stamps:
        with open(path) as file:
            parts.append(file.read().strip() + "\n")
    descriptor, joined = tempfile.mkstemp(prefix=f"{TOOL}-trusted-cas-", suffix=".pem")
    with os.fdopen(descriptor, "w") as out:
        out.write("".join(parts))

    def remove() -> None:
        with suppress(FileNotFoundError):
            os.remove(joined)

    atexit.register(remove)
    return joined


# ---------------------------------------------------------------------------------------------
# 10. PostgreSQL: names, catalog state, the plan, and the I/O. Only pg_roles and ACLs are read
#     (never pg_authid, which RDS denies to its master).
# ---------------------------------------------------------------------------------------------

PG_TABLE_PRIVILEGES = (
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
    "MAINTAIN",
)

PG_MAINTAIN_SINCE = 17  # ALL means MAINTAIN too from 17 on; before, it does not exist

PG_NAME_LIMIT = 63  # bytes; PostgreSQL silently truncates longer names, so they are refused

# Besides public and pg_*: names CREATE ROLE refuses even quoted (none), and the keywords that
# stand for a role in RoleSpec and in GRANT/ALTER statements (current_user, current_role,
# session_user; user and system_user are the same functions). Quoted, the server accepts them,
# but any script or tool writing them unquoted would act on another role: never managed.
PG_RESERVED_ROLE_NAMES = frozenset(
    {"none", "current_user", "current_role", "session_user", "system_user", "user"}
)

LOCK_KEY = 0x7264735F696E6974  # "rds_init": one key for every invocation on a cluster

LOCK_DATABASE = "postgres"  # advisory locks are per database; this one exists on every RDS

# pg_advisory_lock(bigint) shows in pg_locks as classid (high half), objid (low half), objsubid 1
PG_LOCK_HELD_QUERY = """
SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()
               AND granted AND classid = %s::oid AND objid = %s::oid AND objsubid = 1)
"""

PG_SESSION_SEEN_QUERY = (
    "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = %s AND application_name = %s)"
)

PG_KEEPALIVE_S = 10  # TCP keepalive: idle seconds before the first probe, and between probes

# libpq's words for what went wrong while connecting (see connect_failure).
PG_CONNECT_FAILURES: ConnectFailures = (
    (
        # pg_hba.conf turning away a session without TLS (RDS for PostgreSQL 15 and later,
        # whose rds.force_ssl is on by default). First: the message starts "no pg_hba.conf
        # entry", which the entry for permission denied looks for.
        ("no encryption",),
        "the server requires TLS (RDS for PostgreSQL 15 and later by default, rds.force_ssl): "
        "use ssl_mode require or verify-full",
    ),
    (("could not translate host name", "Name or service not known"), HOST_UNKNOWN),
    (("password authentication failed", "authentication failed"), AUTHENTICATION_FAILED),
    (
        ("permission denied", "not permitted to log in", "no pg_hba.conf entry"),
        "permission denied: the master may not connect to this database (its CONNECT "
        "privilege, pg_hba.conf, or TLS required by the server: see ssl_mode)",
    ),
    (("server does not support SSL", "SSL", "certificate"), TLS_FAILED),
    (("Connection refused",), CONNECTION_REFUSED),
    (("No route to host", "Network is unreachable"), NO_ROUTE),
    (("timeout expired", "timed out"), TIMED_OUT),
)


class StepFailedError(Exception):
    """A statement the server refused, on its way to becoming an ApplyError that says what the
    transaction's rollback means for the statements before it."""

    def __init__(self, number: int, error: Exception):
        super().__init__(number, error)
        self.number, self.error = number, error


class PgConnection(psycopg2.extensions.connection):
    """The master's connection, and the lock the run holds while it uses it."""

    cluster_lock: HeldLock | None = None


def set_pg_session(cursor: Any, **settings: int) -> None:
    """SET each setting for the session, in milliseconds (0: off), in one statement."""
    calls = sql.SQL(", ").join(
        sql.SQL("set_config({}, {}, false)").format(sql.Literal(name), sql.Literal(str(value)))
        for name, value in settings.items()
    )
    cursor.execute(sql.SQL("SELECT ") + calls)


class Postgres:
    """All the SQL of a run in ONE transaction, under a session advisory lock. A dry run
    executes the plan and rolls it back, so that permission errors surface."""

    engine = "postgres"
    label = "PostgreSQL"
    default_port = 5432
    table_privileges: tuple[str, ...] = PG_TABLE_PRIVILEGES
    privilege_aliases: Mapping[str, str] = {}
    rotation_variable = "ROTATION_LAMBDA_ARN_POSTGRES"
    rotation_template = "SecretsManagerRDSPostgreSQLRotationMultiUser"
    clone_limit: CloneLimit | None = None

    def name_problems(self, name: str, what: str) -> list[str]:
        """Over the limit (PostgreSQL would truncate it silently), or never managed."""
        problems, lowered = [], name.lower()
        if len(name.encode()) > PG_NAME_LIMIT:
            problems.append(f"{what} {name!r} is longer than PostgreSQL's {PG_NAME_LIMIT} bytes")
        if lowered == "public" or lowered.startswith(("pg_", "rds")):
            problems.append(f"{what} {name!r} is reserved (PUBLIC, pg_*, rds*): never managed")
        elif lowered in PG_RESERVED_ROLE_NAMES:
            problems.append(
                f"{what} {name!r} is reserved: where SQL expects a role, {lowered} unquoted "
                "means something else (CREATE ROLE refuses none; current_user, current_role, "
                "session_user, system_user and user name the session's own roles)"
            )
        return problems

    def event_problems(self, event: Event) -> list[str]:
        if len(event.database.encode()) > PG_NAME_LIMIT:
            return [f"database_name {event.database!r} is longer than {PG_NAME_LIMIT} bytes"]
        return []

    def user_problems(self, user: UserSpec, settings: Settings) -> list[str]:
        if user.host is not None:
            return ["host applies only to MySQL/MariaDB users"]
        return []

    def for_engine(self, user: UserSpec) -> UserSpec:
        privileges = engine_privileges(user, self)
        return user if privileges == user.privileges else replace(user, privileges=privileges)

    def connect_args(
        self, target: Target, user: str, password: str, database: str | None = None
    ) -> dict:
        args = {
            "host": target.host,
            "port": target.port,
            "dbname": database or target.database,
            "user": user,
            "password": password,
            "sslmode": target.ssl_mode,
            # libpq counts whole seconds, 2 at least; it bounds the whole connection attempt
            # (TCP, TLS, the server's answers to the startup and the authentication).
            "connect_timeout": max(2, int(-(-target.settings.connect_timeout // 1))),
            "application_name": TOOL,
            # A peer that vanished (no FIN, no RST) is noticed while a session waits idle.
            "keepalives": 1,
            "keepalives_idle": PG_KEEPALIVE_S,
            "keepalives_interval": PG_KEEPALIVE_S,
            "keepalives_count": 3,
        }
        if target.ssl_mode == "verify-full" and target.settings.ca_bundle:
            args["sslrootcert"] = trusted_cas(target.settings.ca_bundle)
        return args

    def connect(
        self, target: Target, lock: HeldLock | None = None, database: str | None = None
    ) -> Any:
        """The master's connection; the lock the run holds goes with it, for apply to check
        just before it commits."""
        args = self.connect_args(target, target.master_user, target.master_password, database)
        try:
            connection = psycopg2.connect(connection_factory=PgConnection, **args)
        except psycopg2.OperationalError as error:
            if f'database "{target.database}" does not exist' in str(error):
                raise InvalidEvent([database_missing(target.database)]) from None
            # Named as the event names it; another database the connection went through (the
            # lock's) is said too, since the failure may be that one's (its CONNECT privilege).
            where = f"{args['host']}:{args['port']}/{target.database} as {args['user']!r}"
            if args["dbname"] != target.database:
                where += f" (through database {args['dbname']}, where the run takes its lock)"
            said = REDACT(str(error)).strip()
            failure = connect_failure(where, said, PG_CONNECT_FAILURES, target.settings)
            raise ApplyError(failure) from None
        connection.cluster_lock = lock
        return connection

    def login_works(self, target: Target, user: str, password: str | None) -> bool:
        """Log in as the user; False when the server refuses the password. A probe runs no
        statement: connect_timeout bounds all of it."""
        if not password:
            return False
        try:
            psycopg2.connect(**self.connect_args(target, user, password)).close()
        except psycopg2.OperationalError as error:
            message = str(error)
            if "authentication failed" in message or "not permitted to log in" in message:
                return False
            raise ApplyError(
                f"could not log in as {user!r} to check its password: {REDACT(message)}"
            ) from None
        return True

    def same_server(self, connection: Any, elsewhere: Target | None, login: dict) -> bool:
        """Whether `elsewhere` reaches the server `connection` is on: a session opened there
        with `login` (a secret's value), under a name of its own, is looked for among this
        server's sessions (pid and application_name are shown to every role). A name that
        does not answer, or refuses the login, is not this one."""
        marker = f"{TOOL}-{uuid.uuid4()}"
        if elsewhere is None:
            return False
        database = login.get("dbname") if isinstance(login.get("dbname"), str) else None
        args = self.connect_args(elsewhere, str(login.get("username")), login["password"], database)
        args["application_name"] = marker
        try:
            other = psycopg2.connect(**args)
        except psycopg2.Error:
            return False
        try:
            with other.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pid = cursor.fetchone()[0]
            with connection.cursor() as cursor:
                # A transaction sees the sessions as they were when it first looked.
                cursor.execute("SELECT pg_stat_clear_snapshot()")
                cursor.execute(PG_SESSION_SEEN_QUERY, (pid, marker))
                seen = bool(cursor.fetchone()[0])
        finally:
            close_quietly(other)
        info("same server", host=elsewhere.host, port=elsewhere.port, same=seen)
        return seen

    @contextmanager
    def lock(self, target: Target, deadline: Deadline) -> Iterator[HeldLock]:
        """A session advisory lock, taken in the `postgres` database so that invocations on
        any database of the cluster wait for each other (roles are cluster-wide, advisory
        locks per database). Closing the connection releases it, even if the Lambda dies.
        Waiting for another invocation is the point of the lock, so this wait is not the
        short DB_LOCK_TIMEOUT meant for an application's locks: a duplicate invocation (a CLI
        retry) thus queues, runs, and finds nothing left to do. The session sits idle while it
        holds the lock, so the timeouts that end idle sessions are off for it (whatever the
        master role or the parameter group sets), and apply checks it still holds the lock
        just before committing."""
        wait_ms = deadline.lock_wait_ms()
        connect_ms = round(target.settings.connect_timeout * 1000)
        connection = self.connect(target, database=LOCK_DATABASE)
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                set_pg_session(
                    cursor,
                    idle_session_timeout=0,
                    idle_in_transaction_session_timeout=0,
                    lock_timeout=wait_ms,
                    statement_timeout=wait_ms + connect_ms,
                )
                try:
                    cursor.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
                except (psycopg2.errors.LockNotAvailable, psycopg2.errors.QueryCanceled):
                    raise another_invocation(wait_ms) from None
                set_pg_session(cursor, statement_timeout=connect_ms)

            def held() -> bool:
                with connection.cursor() as cursor:
                    cursor.execute(PG_LOCK_HELD_QUERY, (LOCK_KEY >> 32, LOCK_KEY & 0xFFFFFFFF))
                    return bool(cursor.fetchone()[0])

            yield HeldLock(f"the cluster lock (an advisory lock in database {LOCK_DATABASE})", held)
        finally:
            connection.close()

    def read_state(
        self, connection: Any, target: Target, event: Event, deadline: Deadline
    ) -> PgState:
        """Every statement of the run's session is bounded: a wait for an application's lock
        by DB_LOCK_TIMEOUT, any statement by the Lambda's remaining time; the transaction may
        stay idle while the secrets are written, as long as the Lambda runs."""
        with connection.cursor() as cursor:
            remaining = deadline.remaining_ms()
            bounds = {"lock_timeout": round(target.settings.lock_timeout * 1000)}
            if remaining:
                bounds["statement_timeout"] = max(remaining, 1000)
            # 0 (off) for the command line, which has no time limit
            bounds["idle_in_transaction_session_timeout"] = max(remaining or 0, 0)
            set_pg_session(cursor, **bounds)
            state = read_pg_state(cursor, event)
            if state.self_grant:
                # Off for this session (a user setting): the roles the run creates are not
                # granted back to the master, whose memberships stay as they were.
                cursor.execute("SELECT set_config('createrole_self_grant', '', false)")
            return state

    def state_problems(self, event: Event, state: PgState) -> list[str]:
        return pg_state_problems(event, state)

    def warnings(self, event: Event, state: PgState) -> list[str]:
        untested = [
            f"PostgreSQL {state.server_major} is newer than the majors the tool is tested on "
            f"({PG_OLDEST} to {PG_NEWEST_TESTED}): check its dry run before relying on it"
        ]
        newer = state.server_major > PG_NEWEST_TESTED
        return (
            (untested if newer else []) + self_grant_warnings(state) + public_warnings(event, state)
        )

    def identified_by(self, password: str, state: PgState) -> str:
        """Always the SCRAM verifier, whatever the password's characters: the password itself
        never reaches the server (whose statement log would keep it)."""
        verifier = scram_verifier(password)
        REDACT.add(verifier)
        return verifier

    def plan(self, event: Event, state: PgState, identified_by: dict[str, str]) -> list[Step]:
        return plan_postgres(event, state, identified_by)

    def record_steps(self, records: list[tuple[UserSpec, Record]], state: PgState) -> list[Step]:
        return pg_record_steps(records, state)

    def with_records(self, steps: list[Step], records: list[Step], state: PgState) -> list[Step]:
        """Last, in the same transaction: a new role exists by then."""
        return steps + records

    def forget_records(self, users: list[UserSpec], state: PgState) -> list[Step]:
        """Nothing: a role's comment goes with the role."""
        return []

    def apply(
        self,
        connection: Any,
        target: Target,
        steps: Sequence[Step],
        then: Callable[[], None] | None = None,
    ) -> SqlStats:
        """The steps in one transaction, committed only while the run still holds the cluster
        lock; each gets its audit line once they are committed. `then` runs once the steps
        have, before the commit: if it fails, nothing changes in the database."""
        try:
            stats = self.execute(connection, steps)
            if then:
                then()
            lock = getattr(connection, "cluster_lock", None)
            if lock:
                lock.check("committing")
            connection.commit()
        except ApplyError:
            connection.rollback()
            raise
        except StepFailedError as failed:
            rollback_quietly(connection)
            raise step_failed(
                steps,
                failed.number,
                failed.error,
                "The database transaction was rolled back: nothing changed in the database.",
                read_only=self.read_only_error(failed.error),
            ) from None
        except psycopg2.Error as error:
            rollback_quietly(connection)
            raise ApplyError(
                f"applying the {len(steps)} statements failed at a role switch or at the "
                f"commit: {REDACT(str(error)).strip()}. The database transaction was "
                "rolled back (if the connection dropped during the commit itself, the server "
                "may have committed it); either way a re-run converges."
            ) from None
        for step in steps:
            step_applied(step, target)
        return stats

    def render(self, step: Step) -> str:
        """The statement as a person reads it, passwords blanked, with the role it runs as."""
        text = pg_text(step.shown or step.statement)
        if step.as_role:
            return f"SET ROLE {pg_text(sql.Identifier(step.as_role))}; {text}"
        return text

    def rehearse(self, connection: Any, steps: Sequence[Step]) -> SqlStats:
        try:
            return self.execute(connection, steps)
        except StepFailedError as failed:
            raise step_failed(
                steps,
                failed.number,
                failed.error,
                "This was a dry run: nothing was changed.",
                read_only=self.read_only_error(failed.error),
            ) from None
        finally:
            rollback_quietly(connection)

    @staticmethod
    def read_only_error(error: Exception) -> bool:
        """25006 read_only_sql_transaction: a hot standby, or read-only transactions."""
        return getattr(error, "pgcode", None) == "25006"

    def execute(self, connection: Any, steps: Sequence[Step]) -> SqlStats:
        """Run the steps in the open transaction, switching roles only when a step needs to."""
        acting: str | None = None
        started, statements = time.monotonic(), 0
        with connection.cursor() as cursor:
            for number, step in enumerate(steps, 1):
                if step.as_role != acting:
                    cursor.execute(
                        sql.SQL("SET ROLE {}").format(sql.Identifier(step.as_role))
                        if step.as_role
                        else sql.SQL("RESET ROLE")
                    )
                    statements += 1
                    acting = step.as_role
                try:
                    cursor.execute(step.statement)
                except psycopg2.Error as error:
                    raise StepFailedError(number, error) from None
                statements += 1
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("executed", extra={"fields": {"sql": self.render(step)}})
            if acting:
                cursor.execute("RESET ROLE")
        # psycopg2 keeps the session's last 50 WARNINGs and NOTICEs (the run's statements
        # are the session's only ones to raise any)
        notices = server_notices(getattr(connection, "notices", []))
        return SqlStats(statements, round((time.monotonic() - started) * 1000), notices)


def pg_text(statement: sql.Composable) -> str:
    """A statement as text, with no connection (psycopg2's own rendering needs one): names
    always quoted, as the driver quotes them, literals as the driver quotes them for a server
    with standard_conforming_strings on (the default since 9.1, and RDS's). For showing only:
    the driver quotes what is executed."""
    if isinstance(statement, sql.Composed):
        return "".join(pg_text(part) for part in statement)
    if isinstance(statement, sql.Identifier):
        return ".".join('"' + name.replace('"', '""') + '"' for name in statement.strings)
    if isinstance(statement, sql.Literal):
        value = statement.wrapped
        return str(value) if isinstance(value, int) else "'" + str(value).replace("'", "''") + "'"
    if isinstance(statement, sql.SQL):
        return statement.string
    raise TypeError(f"cannot show {type(statement).__name__}")


def rollback_quietly(connection: Any) -> None:
    """Roll back; on a connection that dropped, the server has rolled back already (and
    psycopg2 would say "connection already closed" instead of which step failed)."""
    try:
        connection.rollback()
    except psycopg2.Error as error:
        log.debug("rollback failed: %s", REDACT(str(error)))


def scram_verifier(password: str, iterations: int = 4096, salt: bytes | None = None) -> str:
    """What PostgreSQL stores for a SCRAM-SHA-256 password, computed here so that the password
    itself never travels in a statement (statement logs would keep it). The key is derived
    from the SASLprep'ed password, as libpq does when it logs in (pg_fe_scram_build_secret)."""
    salt = os.urandom(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def saslprep(password: str) -> bytes:
    """The bytes PostgreSQL's SCRAM derives its key from: the password after SASLprep (RFC 4013),
    as src/common/saslprep.c does it, or its raw UTF-8 bytes where SASLprep refuses it (libpq
    and the server both fall back to them). As there: ASCII is left as it is; the prohibited,
    unassigned and bidirectional checks apply to the mapped, not yet normalized characters."""
    if password.isascii():
        return password.encode()
    # U+200B is in both tables: as in PostgreSQL, it is a space, not nothing.
    mapped = [
        " " if stringprep.in_table_c12(c) else c
        for c in password
        if stringprep.in_table_c12(c) or not stringprep.in_table_b1(c)
    ]
    raw = password.encode("utf-8", "surrogatepass")
    if not mapped:
        return raw
    prohibited = (
        stringprep.in_table_c12,
        stringprep.in_table_c21_c22,
        stringprep.in_table_c3,
        stringprep.in_table_c4,
        stringprep.in_table_c5,
        stringprep.in_table_c6,
        stringprep.in_table_c7,
        stringprep.in_table_c8,
        stringprep.in_table_c9,
        stringprep.in_table_a1,
    )
    if any(test(c) for c in mapped for test in prohibited):
        return raw
    if any(stringprep.in_table_d1(c) for c in mapped) and (
        any(stringprep.in_table_d2(c) for c in mapped)
        or not stringprep.in_table_d1(mapped[0])
        or not stringprep.in_table_d1(mapped[-1])
    ):
        return raw
    return unicodedata.normalize("NFKC", "".join(mapped)).encode()


@dataclass(frozen=True)
class PgRole:
    name: str
    superuser: bool = False
    can_login: bool = True
    create_role: bool = False
    create_db: bool = False
    master_has_privileges: bool = False  # the master inherits it: may act as its owner
    master_can_set: bool = False  # the master may SET ROLE to it
    master_is_admin: bool = True  # the master may grant it (16+: ADMIN OPTION; before: any
    # role but a superuser, for a CREATEROLE master)
    member_of: tuple[str, ...] = ()  # the roles it is a direct member of
    config: tuple[str, ...] = ()  # its settings, "role=U" for a prepared rotation clone
    replication: bool = False  # only a role with REPLICATION may alter it: never managed
    bypass_rls: bool = False  # likewise with BYPASSRLS
    expired: bool = False  # VALID UNTIL in the past: no password logs in
    comment: str | None = None  # COMMENT ON ROLE: the tool's record, or a person's text
    iam: bool = False  # a member of rds_iam, directly or through other roles: IAM logins only
    iam_grantors: tuple[str, ...] = ()  # who granted it rds_iam directly

    @cached_property
    def parsed_comment(self) -> tuple[Record | None, str | None]:
        """The comment as the tool's record and a person's note (pg_record): read once, as
        every stage asks for the record."""
        return pg_record(self.comment)


# grantee -> grantor -> what that grantor gave that grantee on one object (managed grantees)
Held = Mapping[str, Mapping[str, frozenset[str]]]


@dataclass(frozen=True, eq=False)
class PgObject:
    """A database, schema, table (or view...) or sequence, with the managed users' grants."""

    kind: str  # "database" | "schema" | "table" | "sequence"
    schema: str | None
    name: str
    owner: str
    held: Held = field(default_factory=dict)
    public: frozenset[str] = frozenset()  # what PUBLIC holds on it: every role has it
    entries: int = 0  # its ACL's entries: one per (grantee, grantor), PUBLIC and all roles

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


@dataclass(frozen=True)
class DefaultGrant:
    """ALTER DEFAULT PRIVILEGES FOR ROLE owner IN SCHEMA schema GRANT privilege ON kind."""

    owner: str
    schema: str
    kind: str  # "tables" | "sequences"
    grantee: str
    privilege: str


@dataclass
class PgState:
    server_major: int
    master: str
    roles: dict[str, PgRole]
    objects: list[PgObject]
    default_grants: list[DefaultGrant]
    dependencies: dict[str, list[str]] = field(default_factory=dict)  # elsewhere, per user
    catalog_queries: int = 4
    # 16+: for the roles the master may not grant, the roles that may (to name in a remedy)
    admins: dict[str, list[str]] = field(default_factory=dict)
    # privilege_plan's answer for the event it was asked about (pg_state_problems and the plan
    # both ask; it compares every managed user with every object: the no-op's main cost)
    planned: tuple[Event, PrivilegePlan] | None = field(default=None, repr=False, compare=False)
    read_only: str | None = None  # why the server refuses writes (pg_read_only); None: it does not
    self_grant: str = ""  # 16+: the master's createrole_self_grant ('' : none)
    existing_databases: frozenset[str] = frozenset()

    def has_user(self, user: UserSpec) -> bool:
        return user.name in self.roles

    def record_of(self, user: UserSpec) -> Record | None:
        role = self.roles.get(user.name)
        return role.parsed_comment[0] if role else None

    def other_auth(self, user: UserSpec) -> str | None:
        role = self.roles.get(user.name)
        if not role or not role.iam:
            return None
        if PG_IAM_ROLE in role.member_of:
            return f"IAM (it holds {PG_IAM_ROLE})"
        return f"IAM (it holds {PG_IAM_ROLE} through another role)"

    def may_act_as(self, owner: str) -> bool:
        """Whether the master can run statements on `owner`'s objects: as itself, or as the
        owner through a membership it may take for the transaction."""
        role = self.roles.get(owner)
        if owner == self.master or (role and role.master_has_privileges):
            return True
        return bool(role and not role.superuser and role.master_is_admin)

    def has_clone(self, user: UserSpec) -> bool:
        return user.clone in self.roles

    def password_expired(self, user: UserSpec, login: str) -> bool:
        """Never: an expired VALID UNTIL is lifted without the password (expiry_steps)."""
        return False

    def objects_of(self, kind: str) -> list[PgObject]:
        return [o for o in self.objects if o.kind == kind]


# The session: who the master is, the server's major, whether it accepts writes (a hot
# standby: a read replica, an Aurora reader, a physical Blue/Green green; or transactions made
# read-only by default_transaction_read_only), and (16+) what the master is granted of every
# role it creates (createrole_self_grant).
SESSION_QUERY = """
SELECT current_user, current_setting('server_version_num')::int / 10000,
       pg_is_in_recovery(), current_setting('transaction_read_only') = 'on',
       coalesce(current_setting('createrole_self_grant', true), '')
"""

# RDS's role for IAM database authentication: a role holding it, directly or through other
# roles, logs in with IAM tokens only (its password logins fail), the master included. Only
# the event's users are asked about it (ROLES_QUERY), any membership counting (MEMBER).
PG_IAM_ROLE = "rds_iam"

ROLES_QUERY = """
SELECT rolname, rolsuper, rolcanlogin, rolcreaterole, rolcreatedb,
       pg_has_role(current_user, r.oid, 'USAGE'), pg_has_role(current_user, r.oid, %(set)s),
       CASE WHEN %(major)s >= 16
            THEN pg_has_role(current_user, r.oid, 'MEMBER WITH ADMIN OPTION')
            ELSE NOT rolsuper END,
       ARRAY(SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
             WHERE m.member = r.oid),
       coalesce(rolconfig, '{}'),
       rolreplication, rolbypassrls, coalesce(rolvaliduntil < now(), false),
       CASE WHEN rolname = ANY(%(users)s) THEN shobj_description(r.oid, 'pg_authid') END,
       r.rolname = ANY(%(users)s) AND NOT rolsuper AND EXISTS (
           SELECT 1 FROM pg_roles i WHERE i.rolname = 'rds_iam' AND i.oid <> r.oid
           AND pg_has_role(r.oid, i.oid, 'MEMBER')),
       ARRAY(SELECT pg_get_userbyid(m.grantor) FROM pg_auth_members m
             JOIN pg_roles i ON i.oid = m.roleid
             WHERE i.rolname = 'rds_iam' AND m.member = r.oid AND r.rolname = ANY(%(users)s))
FROM pg_roles r
"""

# Which of the databases that records name exist (a dropped one no longer uses an account).
PG_DATABASES_QUERY = "SELECT datname FROM pg_database WHERE datname = ANY(%(databases)s)"

# Every managed object, with the grants the managed users hold on it and what PUBLIC holds.
# - pg_database_owner (15+: the owner of `public`, and so the grantor of what its owner grants
#   there) stands for the database's owner, which is the role the master must act as.
# - A NULL ACL means the defaults (acldefault): on a database, PUBLIC may CONNECT.
# - The ACL is detoasted once (array_cat) and the managed roles read once (MATERIALIZED):
#   otherwise PostgreSQL does both again for every object.
# - The grants come as three parallel arrays (grantee, grantor, privilege): a JSON value per
#   grant costs far more to build on the server and to parse here.
OBJECTS_QUERY = """
WITH managed AS MATERIALIZED (SELECT oid FROM pg_roles WHERE rolname = ANY(%(users)s)),
stand_in AS MATERIALIZED (
    SELECT r.oid AS role, d.datdba AS owner FROM pg_roles r, pg_database d
    WHERE r.rolname = 'pg_database_owner' AND d.datname = current_database()
),
objects AS (
    SELECT 'database' AS kind, NULL::name AS schema, datname AS name, datdba AS owner,
           coalesce(datacl, acldefault('d', datdba)) AS acl
    FROM pg_database WHERE datname = current_database()
  UNION ALL
    SELECT 'schema', NULL, nspname, nspowner, coalesce(nspacl, acldefault('n', nspowner))
    FROM pg_namespace WHERE nspname = ANY(%(schemas)s)
  UNION ALL
    SELECT CASE c.relkind WHEN 'S' THEN 'sequence' ELSE 'table' END, n.nspname, c.relname,
           c.relowner,
           coalesce(c.relacl,
                    acldefault((CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END)::"char",
                               c.relowner))
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
),
resolved AS (
    SELECT kind, schema, name, array_cat(acl, '{}'::aclitem[]) AS acl,
           coalesce((SELECT s.owner FROM stand_in s WHERE s.role = o.owner), o.owner) AS owner
    FROM objects o
)
SELECT kind, schema, name, pg_get_userbyid(owner),
       held.grantees, held.grantors, held.privileges,
       ARRAY(SELECT a.privilege_type FROM aclexplode(acl) a WHERE a.grantee = 0),
       cardinality(acl)
FROM resolved
CROSS JOIN LATERAL (
    SELECT array_agg(pg_get_userbyid(g.grantee)::text) AS grantees,
           array_agg(pg_get_userbyid(coalesce((SELECT s.owner FROM stand_in s
                                               WHERE s.role = g.grantor), g.grantor))::text)
               AS grantors,
           array_agg(g.privileges) AS privileges
    FROM (
        SELECT a.grantee, a.grantor, string_agg(a.privilege_type, ',') AS privileges
        FROM aclexplode(acl) a WHERE a.grantee IN (SELECT oid FROM managed)
        GROUP BY 1, 2
    ) g
) held
"""

# Who may grant the roles the master may not (16+): a remedy names a role that can run it.
ADMINS_QUERY = """
SELECT r.rolname, a.rolname FROM pg_auth_members m
JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles a ON a.oid = m.member
WHERE m.admin_option AND NOT a.rolsuper AND NOT r.rolsuper
  AND NOT pg_has_role(current_user, r.oid, 'MEMBER WITH ADMIN OPTION')
ORDER BY 1, 2
"""

# A grantor's default privileges name every grantee in one compressed ACL: detoasted once
# (array_cat), not again for every entry aclexplode returns (quadratic in the users).
DEFAULT_GRANTS_QUERY = """
SELECT pg_get_userbyid(d.defaclrole), n.nspname,
       CASE d.defaclobjtype WHEN 'r' THEN 'tables' ELSE 'sequences' END,
       pg_get_userbyid(a.grantee), a.privilege_type
FROM pg_default_acl d
JOIN pg_namespace n ON n.oid = d.defaclnamespace
CROSS JOIN LATERAL aclexplode(array_cat(d.defaclacl, '{}'::aclitem[])) a
WHERE n.nspname = ANY(%(schemas)s) AND d.defaclobjtype IN ('r', 'S')
  AND a.grantee IN (SELECT oid FROM pg_roles WHERE rolname = ANY(%(users)s))
"""

# What a role to be dropped owns or holds outside this database (pg_shdepend is cluster-wide;
# a grant on a database is a shared object, so it is named by that database).
DEPENDENCIES_QUERY = """
SELECT pg_get_userbyid(s.refobjid), coalesce(granted_on.datname, inside.datname), count(*)
FROM pg_shdepend s
LEFT JOIN pg_database inside ON inside.oid = s.dbid
LEFT JOIN pg_database granted_on
       ON s.dbid = 0 AND s.classid = 'pg_database'::regclass AND granted_on.oid = s.objid
WHERE s.refclassid = 'pg_authid'::regclass
  AND s.refobjid IN (SELECT oid FROM pg_roles WHERE rolname = ANY(%(users)s))
  AND coalesce(granted_on.datname, inside.datname, '') <> current_database()
GROUP BY 1, 2 ORDER BY 1, 2
"""
# Privileges a role to be dropped holds in this database outside the event's schemas: the
# plan revokes only inside them, and DROP OWNED cannot take what other roles granted.
OUTSIDE_SCOPE_QUERY = """
SELECT pg_get_userbyid(s.refobjid), n.nspname, count(*)
FROM pg_shdepend s
JOIN pg_database d ON d.oid = s.dbid AND d.datname = current_database()
LEFT JOIN pg_class c ON s.classid = 'pg_class'::regclass AND c.oid = s.objid
JOIN pg_namespace n ON n.oid = CASE WHEN s.classid = 'pg_namespace'::regclass THEN s.objid
                                    ELSE c.relnamespace END
WHERE s.refclassid = 'pg_authid'::regclass AND s.deptype = 'a'
  AND s.refobjid IN (SELECT oid FROM pg_roles WHERE rolname = ANY(%(users)s))
  AND n.nspname <> ALL(%(schemas)s)
GROUP BY 1, 2 ORDER BY 1, 2
"""


def read_pg_state(cursor: Any, event: Event) -> PgState:
    cursor.execute(SESSION_QUERY)
    master, major, in_recovery, read_only_transactions, self_grant = cursor.fetchone()
    unsupported = pg_version_problems(major)
    if unsupported:  # its catalogs differ from what the queries below read
        raise InvalidEvent(unsupported)
    users = [u.name for u in event.users]
    cursor.execute(
        ROLES_QUERY, {"set": "SET" if major >= 16 else "MEMBER", "major": major, "users": users}
    )
    roles = {
        row[0]: PgRole(
            name=row[0],
            superuser=row[1],
            can_login=row[2],
            create_role=row[3],
            create_db=row[4],
            master_has_privileges=row[5],
            master_can_set=row[6],
            master_is_admin=row[7],
            member_of=tuple(row[8]),
            config=tuple(row[9]),
            replication=row[10],
            bypass_rls=row[11],
            expired=row[12],
            comment=row[13],
            iam=row[14],
            iam_grantors=tuple(row[15]),
        )
        for row in cursor.fetchall()
    }
    params = {"users": users, "schemas": list(event.schemas)}
    cursor.execute(OBJECTS_QUERY, params)
    # Each object's grants come as one entry per (grantee, grantor), its privileges joined in
    # one text: 500 users on 100 objects are 50,000 of them (100,000 single privileges), but
    # only a few distinct (grantor, privileges), each made a mapping once and shared by every
    # grantee that holds just that (the planner only reads them). Grants of the database
    # owner's stand-in (pg_database_owner) join the owner's own.
    shared: dict[tuple[str, str], Mapping[str, frozenset[str]]] = {}

    def held(grantees: list[str], grantors: list[str], privileges: list[str]) -> Held:
        found: dict[str, Mapping[str, frozenset[str]]] = {}
        for grantee, grantor, listed in zip(grantees, grantors, privileges, strict=True):
            one = shared.get((grantor, listed))
            if one is None:
                one = shared[(grantor, listed)] = {grantor: frozenset(listed.split(","))}
            earlier = found.get(grantee)
            if earlier is None:
                found[grantee] = one
            else:
                merged = dict(earlier)
                merged[grantor] = merged.get(grantor, frozenset()) | one[grantor]
                found[grantee] = merged
        return found

    objects = [
        PgObject(
            kind,
            schema,
            name,
            owner,
            held(grantees or [], grantors or [], privileges or []),
            frozenset(public),
            entries,
        )
        for kind, schema, name, owner, grantees, grantors, privileges, public, entries in cursor
    ]
    cursor.execute(DEFAULT_GRANTS_QUERY, params)
    default_grants = [DefaultGrant(*row) for row in cursor.fetchall()]
    dependencies: dict[str, list[str]] = defaultdict(list)
    leaving = [u for u in event.users if u.dropping]
    doomed = [name for u in leaving for name in (u.name, u.clone) if name in roles]
    if doomed:
        cursor.execute(DEPENDENCIES_QUERY, {"users": doomed})
        for role, database, count in cursor.fetchall():
            where = f"database {database!r}" if database else "shared objects (tablespaces...)"
            dependencies[role].append(f"{where} ({count} objects or privileges)")
        cursor.execute(OUTSIDE_SCOPE_QUERY, {"users": doomed, "schemas": list(event.schemas)})
        for role, schema, count in cursor.fetchall():
            dependencies[role].append(
                f"schema {schema!r} of this database, outside the event's schemas "
                f"({count} privileges; name it in schemas to have them revoked)"
            )
    queries = 6 if doomed else 4
    admins: dict[str, list[str]] = defaultdict(list)
    involved = {name for u in event.users for name in (u.name, u.grantor, u.reassign_to) if name}
    involved |= {o.owner for o in objects} | {g.owner for g in default_grants}
    involved.discard(master)  # the master acts as itself
    if any(
        (role := roles.get(name)) and not role.master_is_admin and not role.superuser
        for name in involved
    ):
        cursor.execute(ADMINS_QUERY)
        for role, admin in cursor.fetchall():
            admins[role].append(admin)
        queries += 1
    recorded = {
        database
        for user in event.users
        if user.name in roles
        for database in (roles[user.name].parsed_comment[0] or Record("")).databases
        if database != event.database
    }
    existing: frozenset[str] = frozenset()
    if recorded:
        cursor.execute(PG_DATABASES_QUERY, {"databases": sorted(recorded)})
        existing = frozenset(name for (name,) in cursor.fetchall())
        queries += 1
    return PgState(
        major,
        master,
        roles,
        objects,
        default_grants,
        dict(dependencies),
        queries,
        dict(admins),
        read_only=pg_read_only(in_recovery, read_only_transactions),
        self_grant=self_grant,
        existing_databases=existing,
    )


PG_OLDEST = 14  # pg_database_owner, and the catalogs the queries read, as of 14
PG_NEWEST_TESTED = 18


def pg_version_problems(major: int) -> list[str]:
    if major < PG_OLDEST:
        return [
            f"PostgreSQL {major} is not supported: the tool manages PostgreSQL {PG_OLDEST} to "
            f"{PG_NEWEST_TESTED} (RDS and Aurora). Nothing was changed; upgrade the database "
            "first"
        ]
    return []


def pg_read_only(in_recovery: bool, read_only_transactions: bool) -> str | None:
    """Why the server refuses writes, in words (None: it accepts them)."""
    if in_recovery:
        return (
            "the server is a hot standby (pg_is_in_recovery() is true): a read replica, an "
            "Aurora reader, or the green side of a Blue/Green deployment"
        )
    if read_only_transactions:
        return (
            "its transactions are read-only (transaction_read_only is on: "
            "default_transaction_read_only set for the server, this database or the master, "
            "as on an Aurora reader)"
        )
    return None


def pg_state_problems(event: Event, state: PgState) -> list[str]:
    """What the event asks that this database cannot give; checked before anything changes."""
    problems = []
    present_schemas = {o.name for o in state.objects_of("schema")}
    problems += [
        f"schema {s!r} does not exist in database {event.database!r}"
        for s in event.schemas
        if s not in present_schemas
    ]
    staying = {u.name for u in event.users if not u.deleting} | event.refused_users
    for user in event.users:
        if "MAINTAIN" in user.privileges and not user.all_privileges:
            if state.server_major < PG_MAINTAIN_SINCE:
                problems.append(f"user {user.name!r}: MAINTAIN needs PostgreSQL 17 or later")
        role = state.roles.get(user.name)
        if role and role.superuser:
            problems.append(f"user {user.name!r} is a superuser: never managed")
        # A delete needs its grantor only as whom to reassign to (checked just below); a
        # delete run again finds both gone, and must converge.
        if (
            user.grantor
            and not user.deleting
            and user.grantor not in staying
            and user.grantor not in state.roles
        ):
            problems.append(f"user {user.name!r}: {missing_grantor_problem(event, user)}")
        elif user.grantor and state.roles.get(user.grantor, PgRole("")).superuser:
            problems.append(f"user {user.name!r}: grantor {user.grantor!r} is a superuser")
        target = reassign_target(user, state)
        if user.dropping and role and target not in staying and target not in state.roles:
            problems.append(f"user {user.name!r}: reassign_to {target!r} does not exist")
        for doomed in (user.name, user.clone):
            for place in state.dependencies.get(doomed, []):
                problems.append(
                    f"user {user.name!r} cannot be deleted: {doomed!r} owns objects or holds "
                    f"privileges in {place}; reassign or revoke them there first"
                )
        for attribute, has in (("REPLICATION", "replication"), ("BYPASSRLS", "bypass_rls")):
            if role and getattr(role, has):
                problems.append(
                    f"user {user.name!r} has {attribute}, which only a role that has it may "
                    "alter (the master has not): never managed"
                )
    return (
        problems
        + iam_problems(event, state)
        + crowded_acl_problems(event, state)
        + privilege_plan(event, state).problems
    )


def iam_problems(event: Event, state: PgState) -> list[str]:
    """What turning users into IAM users, or back, needs here. The master must never come to
    inherit rds_iam: it would then log in with IAM tokens only, and the tool with it."""
    problems = []
    for user in event.users:
        role, where = state.roles.get(user.name), f"user {user.name!r}"
        if user.iam and PG_IAM_ROLE not in state.roles:
            problems.append(
                f"{where}: auth iam needs the role {PG_IAM_ROLE}, which RDS and Aurora create; "
                "this server has none"
            )
        if user.iam and role and not role.iam and role.master_has_privileges:
            problems.append(
                f"{where}: the master {state.master!r} inherits role {user.name!r}, so with "
                f"{PG_IAM_ROLE} it would turn the master into an IAM-only login. Nothing was "
                f"changed; first run REVOKE {sql_quote(user.name)} FROM "
                f"{sql_quote(state.master)} (16+: or keep it WITH INHERIT FALSE)"
            )
        if user.iam and role and not role.iam:
            members = sorted(
                r.name
                for r in state.roles.values()
                if user.name in r.member_of and r.name not in (state.master, user.clone)
            )
            if members:
                problems.append(
                    f"{where}: {', '.join(map(repr, members))} are members of it, and a member "
                    f"of a role holding {PG_IAM_ROLE} logs in with IAM only: revoke those "
                    "memberships, or give them the user's privileges otherwise, first"
                )
        if user.auth == "password" and role and role.iam:
            if PG_IAM_ROLE not in role.member_of:
                problems.append(
                    f"{where} holds {PG_IAM_ROLE} through another role (it is a member of "
                    f"{', '.join(map(repr, role.member_of))}): it cannot be made a password "
                    "user while that membership stays"
                )
            others = sorted(set(role.iam_grantors) - {state.master})
            if state.server_major >= 16 and others:
                problems.append(
                    f"{where} was granted {PG_IAM_ROLE} by {', '.join(map(repr, others))}, and "
                    "the master may revoke only its own grant: run REVOKE rds_iam FROM "
                    f"{sql_quote(user.name)} GRANTED BY that role, then re-run"
                )
    return problems


# The entries a table's or sequence's ACL may hold. It lives in the object's pg_class row,
# which PostgreSQL never moves out of line (pg_class has no TOAST table): compressed, an 8 kB
# row held 2,400 (grantee, grantor) entries and refused 2,450 ("row is too big"), measured on
# PostgreSQL 14, 16 and 18 with roles made one after the other (their OIDs compress well;
# scattered ones compress less). Schemas, databases and default privileges have no such
# limit (their catalogs have TOAST tables), but default privileges for this many grantees
# would make every table their owner creates later fail the same way.
PG_ACL_ENTRIES_LIMIT = 2_200


def crowded_acl_problems(event: Event, state: PgState) -> list[str]:
    """The tables and sequences whose ACL would hold more entries than their catalog row can
    take: the run would fail at the GRANT, after its secrets are written. Each user the event
    keeps holds one entry (from its grantor); the entries of the users it names go, every
    other entry stays."""
    staying = [u for u in event.users if not u.deleting]
    holders = {
        kind: {u.name for u in staying if desired_privileges(u, kind, state.server_major)}
        for kind in ("table", "sequence")
    }
    crowded = []
    for obj in state.objects:
        if obj.kind not in holders:
            continue
        managed = sum(len(by_grantor) for by_grantor in obj.held.values())
        kept = len(holders[obj.kind]) - (obj.owner in holders[obj.kind])  # owners hold none
        after = obj.entries - managed + kept
        if after > PG_ACL_ENTRIES_LIMIT:
            crowded.append(f"{obj.kind} {obj.label} ({after:,})")
    grantors = Counter(u.grantor for u in staying if u.grantor and u.name in holders["table"])
    crowded += [
        f"the default privileges of {grantor!r} ({count:,} grantees: every table it creates "
        "later would fail)"
        for grantor, count in sorted(grantors.items())
        if count > PG_ACL_ENTRIES_LIMIT
    ]
    if not crowded:
        return []
    named = ", ".join(crowded[:5]) + (f" and {len(crowded) - 5} more" if len(crowded) > 5 else "")
    return [
        f"too many grantees for PostgreSQL on {named}: a table's or sequence's privileges "
        "live in its catalog row, which holds about 2,400 (grantee, grantor) entries (8 kB, "
        "compressed; beyond, every GRANT on it fails with 'row is too big'), and the tool "
        f"gives one at most {PG_ACL_ENTRIES_LIMIT:,}. Give these tables to fewer users in one "
        "database. Nothing was changed"
    ]


def self_grant_warnings(state: PgState) -> list[str]:
    """PostgreSQL 16+'s createrole_self_grant, set for the master (its role, the database or
    the parameter group): each role it creates would be granted to it with those options, so
    that it would inherit each user's privileges and memberships (and an rds_iam granted to a
    user later would leave it only IAM logins). The run switches it off for its session."""
    if not state.self_grant:
        return []
    return [
        f"the master's createrole_self_grant is {state.self_grant!r}: every role it creates "
        "is granted to it with those options, so that it would hold (and, with inherit, "
        "use) each user's privileges and memberships. This run turned it off for its own "
        "session, so the roles it creates are not granted to the master; memberships granted "
        "before stay as they are. To stop it for good: ALTER ROLE ... RESET "
        "createrole_self_grant (or the parameter group's value)"
    ]


def public_warnings(event: Event, state: PgState) -> list[str]:
    """What PUBLIC holds in the managed scope beyond what a user is given: every role has it,
    and the tool never revokes from PUBLIC (that would change every role's access). On 14,
    PUBLIC may CREATE in `public`, so a user without grant_ddl can still create tables."""
    staying = [u for u in event.users if not u.deleting]
    found: dict[tuple[str, str, tuple[str, ...], tuple[str, ...]], list[str]] = defaultdict(list)
    for obj in state.objects:
        if obj.kind == "database" or not obj.public:
            continue  # PUBLIC's CONNECT and TEMPORARY on a database are PostgreSQL's defaults
        beyond = {
            u.name: obj.public - desired_privileges(u, obj.kind, state.server_major)
            for u in staying
            if u.name != obj.owner
        }
        users = tuple(name for name, extra in beyond.items() if extra)
        if users:
            held = tuple(
                sorted(set().union(*beyond.values()), key=lambda p: PRIVILEGE_ORDER.get(p, 99))
            )
            found[(obj.kind, obj.owner, held, users)].append(obj.label)
    warnings = []
    for (kind, owner, held, users), labels in sorted(found.items()):
        named = ", ".join(labels[:5]) + (f" and {len(labels) - 5} more" if len(labels) > 5 else "")
        warnings.append(
            f"PUBLIC holds {', '.join(held)} on {kind} {named}: every role has it, users "
            f"{', '.join(map(repr, users))} included, though the event gives them less. The "
            f"tool does not revoke from PUBLIC; its owner {owner!r} may (REVOKE ... FROM PUBLIC)"
        )
    return warnings


def admin_remedy(role: str, state: PgState) -> str:
    """How the master gets ADMIN OPTION on a role it did not create (or that came through an
    upgrade from 15), named for a role that can run it."""
    grant = (
        f"GRANT {sql_quote(role)} TO {sql_quote(state.master)} WITH ADMIN OPTION, "
        "INHERIT FALSE, SET FALSE"
    )
    admins = state.admins.get(role)
    if admins:
        return f"run {grant} as {' or as '.join(map(repr, admins))}, which holds ADMIN OPTION on it"
    return (
        f"only a superuser holds ADMIN OPTION on it (on RDS, rdsadmin: a role made by it, or "
        f"one the master made before an in-place upgrade from 15); a superuser must run {grant}"
    )


def sql_quote(name: str) -> str:
    """A name quoted for a message a person may paste into psql (not for executing)."""
    return '"' + name.replace('"', '""') + '"'


def reassign_target(user: UserSpec, state: PgState) -> str:
    return user.reassign_to or user.grantor or state.master


# PostgreSQL keeps the record in the role's comment (COMMENT ON ROLE), a JSON object marked
# as the tool's: it is stored with the role (pg_shdescription, shared by every database),
# read with the roles by shobj_description (pg_authid is never read), written in the run's
# one transaction (so the record and the password it speaks of commit together), and
# dropped with the role. Commenting needs what setting the password needs (CREATEROLE; on
# 16+ ADMIN OPTION on the role), so no role the tool may manage lacks one. A role setting
# would do too, but every session of the role would carry it. A comment a person wrote
# before is kept inside the record, under "comment".


def pg_record(comment: str | None) -> tuple[Record | None, str | None]:
    """A role's record, and the comment a person wrote (kept when the record is written)."""
    if not comment:
        return None, None
    try:
        document = json.loads(comment)
    except (ValueError, RecursionError):
        return None, comment
    if not isinstance(document, dict) or document.get("managed-by") != TOOL:
        return None, comment
    note = document.get("comment")
    return parse_record(document), note if isinstance(note, str) else None


def pg_record_text(record: Record, note: str | None) -> str:
    document = {"managed-by": TOOL, **record.document()}
    if note:
        document["comment"] = note
    return json.dumps(document, ensure_ascii=False)


def pg_record_steps(records: list[tuple[UserSpec, Record]], state: PgState) -> list[Step]:
    steps = []
    for user, record in records:
        role = state.roles.get(user.name)
        note = role.parsed_comment[1] if role else None
        statement = sql.SQL("COMMENT ON ROLE {} IS {}").format(
            sql.Identifier(user.name), sql.Literal(pg_record_text(record, note))
        )
        steps.append(Step(statement, record_summary(record), (user.name,), record=True))
    return steps


def plan_postgres(event: Event, state: PgState, identified_by: dict[str, str]) -> list[Step]:
    """Every statement that brings the database to the event's state, in order.
    `identified_by` holds the SCRAM verifier of each login that gets a password now. What the
    master cannot do was refused before, by pg_state_problems (through privilege_plan)."""
    staying = [u for u in event.users if not u.deleting]
    leaving = [u for u in event.users if u.dropping]
    privileges = privilege_plan(event, state)
    return (
        role_steps(staying, state, identified_by)
        + clone_steps(staying, state)
        + privileges.take
        + privileges.grants
        + delete_steps(leaving, state)
        + privileges.give_back
    )


@dataclass(frozen=True)
class PrivilegePlan:
    """The grants and revokes, the memberships the master takes for them and gives back, and
    what it cannot do."""

    grants: list[Step]
    take: list[Step]
    give_back: list[Step]
    problems: list[str]


def privilege_plan(event: Event, state: PgState) -> PrivilegePlan:
    if state.planned is None or state.planned[0] is not event:
        state.planned = (event, plan_privileges(event, state))
    return state.planned[1]


def plan_privileges(event: Event, state: PgState) -> PrivilegePlan:
    staying = [u for u in event.users if not u.deleting]
    leaving = [u for u in event.users if u.dropping]
    new_roles = {u.name for u in staying if u.name not in state.roles}
    problems: set[str] = set()

    def acting(owner: str) -> str | None:
        """Who runs a statement on `owner`'s objects: the master when it has the owner's
        privileges, else the owner itself, under SET ROLE."""
        role = state.roles.get(owner)
        if owner == state.master or (role and role.master_has_privileges):
            return None
        if role and role.superuser:
            problems.add(
                f"objects of superuser {owner!r} are in the managed scope; "
                "the master cannot grant on them"
            )
        return owner

    present = staying + [u for u in event.users if u.deleting and u.name in state.roles]
    changes = object_changes(present, state, acting)
    changes += default_privilege_changes(present, event, state, acting)
    grants = batch(changes, event.database)
    needs = memberships_needed(grants, leaving, state, new_roles)
    # Making the clone a member of U needs what acting as U needs: ADMIN OPTION on U.
    granted = {u.name for u in staying if u.rotating and clone_needs_membership(u, state)}
    refused = sorted(
        r for r in set(needs) | granted if r in state.roles and not state.roles[r].master_is_admin
    )
    refusals = [
        f"the master {state.master!r} must act as role {role!r} but may not grant it to "
        f"itself: on PostgreSQL 16+ it needs ADMIN OPTION on {role!r}; {admin_remedy(role, state)}"
        for role in refused
    ]
    # Changing a role's password or attributes needs what granting it needs.
    refusals += [
        f"the master {state.master!r} may not manage role {user.name!r} (set its password or "
        f"attributes): on PostgreSQL 16+ it needs ADMIN OPTION on {user.name!r}; "
        f"{admin_remedy(user.name, state)}"
        for user in staying
        if user.name in state.roles
        and user.name not in refused
        and not state.roles[user.name].superuser
        and not state.roles[user.name].master_is_admin
    ]
    dropped = {name for u in leaving for name in (u.name, u.clone)}
    take, give_back = membership_steps(state, needs, dropped)
    return PrivilegePlan(grants, take, give_back, sorted(problems) + refusals)


DATABASE_ORDER = ("CONNECT", "CREATE", "TEMPORARY")

SCHEMA_ORDER = ("USAGE", "CREATE")

SEQUENCE_ORDER = ("USAGE", "SELECT", "UPDATE")

PRIVILEGE_ORDER = {
    p: i
    for i, p in reversed(
        list(enumerate(PG_TABLE_PRIVILEGES + DATABASE_ORDER + SCHEMA_ORDER + SEQUENCE_ORDER))
    )
}


@dataclass(frozen=True)
class Change:
    """One grantee's missing or extra privileges on one object: the unit the batcher groups."""

    verb: str  # "GRANT" | "REVOKE"
    kind: str  # "database" | "schema" | "table" | "sequence" | "tables" | "sequences" (defaults)
    scope: tuple  # (schema, name) of an object, or (owner, schema) of default privileges
    as_role: str | None
    privileges: tuple[str, ...]
    grantee: str


def ordered(privileges: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(privileges), key=PRIVILEGE_ORDER.__getitem__))


def sequence_privileges(table_privileges: frozenset[str]) -> set[str]:
    """SELECT reads a sequence; INSERT or UPDATE need nextval(): USAGE and SELECT."""
    wanted = {"SELECT"} if "SELECT" in table_privileges else set()
    if table_privileges & {"INSERT", "UPDATE"}:
        wanted |= {"USAGE", "SELECT"}
    return wanted


def pg_table_privileges(user: UserSpec, server_major: int) -> frozenset[str]:
    if server_major < PG_MAINTAIN_SINCE:
        return user.privileges - {"MAINTAIN"}
    return user.privileges


def desired_privileges(user: UserSpec, kind: str, server_major: int) -> frozenset[str]:
    if user.deleting:
        return frozenset()  # revoked explicitly: DROP OWNED skips grants the master did not make
    if kind == "database":
        return frozenset({"CONNECT"})
    if kind == "schema":
        return frozenset({"USAGE", "CREATE"} if user.ddl else {"USAGE"})
    if kind == "table":
        return pg_table_privileges(user, server_major)
    return frozenset(sequence_privileges(user.privileges))


OBJECT_KINDS = ("database", "schema", "table", "sequence")


def object_changes(
    users: list[UserSpec], state: PgState, acting: Callable[[str], str | None]
) -> list[Change]:
    """Grants and revokes on the database, schemas, tables and sequences, per grantee. This
    compares every user with every object (500 users and 100 objects: 50,000 pairs), the
    largest part of a no-op run after the catalog read: what does not depend on the pair
    (a user's wanted privileges per kind, who acts for an owner, what PUBLIC makes moot) is
    worked out once, outside the pair loop."""
    changes = []
    wants = {
        kind: [(u, desired_privileges(u, kind, state.server_major)) for u in users]
        for kind in OBJECT_KINDS
    }
    for obj in state.objects:
        scope = (obj.schema, obj.name)
        # What PUBLIC holds, every user has; where the master could grant it, it does, so
        # that a later REVOKE ... FROM PUBLIC does not cut the users off.
        moot = frozenset() if state.may_act_as(obj.owner) else obj.public
        for user, want in wants[obj.kind]:
            if obj.owner == user.name:
                continue  # an owner's own privileges are implicit, never managed
            by_grantor = obj.held.get(user.name, {})
            missing = want.difference(*by_grantor.values()) - moot
            if missing:
                owner = acting(obj.owner)
                changes.append(Change("GRANT", obj.kind, scope, owner, ordered(missing), user.name))
            for grantor, privileges in sorted(by_grantor.items()):
                if not privileges <= want:
                    extra = ordered(privileges - want)
                    changes.append(
                        Change("REVOKE", obj.kind, scope, acting(grantor), extra, user.name)
                    )
    return changes


def default_privilege_changes(
    users: list[UserSpec], event: Event, state: PgState, acting: Callable[[str], str | None]
) -> list[Change]:
    """Default privileges FOR ROLE grantor: what the grantor creates later is usable at once."""
    changes = []
    defaults_by_grantee: dict[str, list[DefaultGrant]] = defaultdict(list)
    for grant in state.default_grants:
        defaults_by_grantee[grant.grantee].append(grant)
    for user in users:
        want: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        if user.grantor and not user.deleting:
            for schema in event.schemas:
                want[(user.grantor, schema, "tables")] |= pg_table_privileges(
                    user, state.server_major
                )
                want[(user.grantor, schema, "sequences")] |= sequence_privileges(user.privileges)
        have: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        for grant in defaults_by_grantee.get(user.name, ()):
            have[(grant.owner, grant.schema, grant.kind)].add(grant.privilege)
        for key in sorted(set(want) | set(have)):
            owner, schema, kind = key
            missing, extra = want[key] - have[key], have[key] - want[key]
            for verb, privileges in (("GRANT", missing), ("REVOKE", extra)):
                if privileges:
                    changes.append(
                        Change(
                            verb,
                            kind,
                            (owner, schema),
                            acting(owner),
                            ordered(privileges),
                            user.name,
                        )
                    )
    return changes


def batch(changes: list[Change], database: str) -> list[Step]:
    """One statement per (verb, privileges, grantees, acting role): the grantees of a change
    that several need are named together, and so are the objects they all need it on."""
    grantees: dict[tuple, list[str]] = defaultdict(list)
    for c in changes:
        grantees[(c.verb, c.kind, c.scope, c.as_role, c.privileges)].append(c.grantee)
    scopes: dict[tuple, list[tuple]] = defaultdict(list)
    for (verb, kind, scope, as_role, privileges), names in grantees.items():
        owner = scope[0] if kind in ("tables", "sequences") else None
        key = (verb, kind, owner, as_role, privileges, tuple(sorted(names)))
        scopes[key].append(scope)
    return [
        batched_step(verb, kind, owner, as_role, privileges, names, sorted(found), database)
        for (verb, kind, owner, as_role, privileges, names), found in sorted(
            scopes.items(), key=lambda item: repr(item[0])
        )
    ]


def batched_step(
    verb: str,
    kind: str,
    owner: str | None,
    as_role: str | None,
    privileges: tuple[str, ...],
    grantees: tuple[str, ...],
    scopes: list[tuple],
    database: str,
) -> Step:
    words = {
        "verb": sql.SQL(verb),
        "privs": sql.SQL(", ").join(map(sql.SQL, privileges)),  # from the allow-list only
        "direction": sql.SQL("TO" if verb == "GRANT" else "FROM"),
        "roles": sql.SQL(", ").join(map(sql.Identifier, grantees)),
    }
    if kind in ("tables", "sequences"):
        statement, noun = default_privileges_clause(kind, scopes, words)
        summary = f"default privileges for role {owner} in {noun}: {verb.lower()} " + (
            f"{', '.join(privileges)} on {kind}"
        )
    else:
        statement, noun = object_grant_clause(kind, scopes, database, words)
        summary = f"{verb.lower()} {', '.join(privileges)} on {noun}"
    return Step(statement, summary, grantees, as_role)


def default_privileges_clause(
    kind: str, scopes: list[tuple], words: dict
) -> tuple[sql.Composable, str]:
    """ALTER DEFAULT PRIVILEGES for the schemas of `scopes` ((owner, schema) pairs, one owner)."""
    owner = scopes[0][0]
    schemas = sorted({schema for _, schema in scopes})
    statement = sql.SQL(
        "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schemas} {verb} {privs} "
        "ON {kind} {direction} {roles}"
    ).format(
        owner=sql.Identifier(owner),
        schemas=sql.SQL(", ").join(map(sql.Identifier, schemas)),
        kind=sql.SQL(kind.upper()),
        **words,
    )
    return statement, ", ".join(schemas)


def object_grant_clause(
    kind: str, scopes: list[tuple], database: str, words: dict
) -> tuple[sql.Composable, str]:
    """GRANT or REVOKE on the objects of `scopes` ((schema, name) pairs), and how to say it."""
    if kind == "database":
        targets, noun = [sql.Identifier(database)], f"database {database}"
    elif kind == "schema":
        names = [name for _, name in scopes]
        targets, noun = [sql.Identifier(n) for n in names], f"schema {', '.join(names)}"
    else:
        targets = [sql.Identifier(schema, name) for schema, name in scopes]
        schemas = ", ".join(sorted({schema for schema, _ in scopes}))
        plural = {"table": "tables", "sequence": "sequences"}[kind] if len(scopes) > 1 else kind
        noun = f"{len(scopes)} {plural} in {schemas}"
    statement = sql.SQL("{verb} {privs} ON {kind} {targets} {direction} {roles}").format(
        kind=sql.SQL(kind.upper()), targets=sql.SQL(", ").join(targets), **words
    )
    return statement, noun


def password_clause(verifier: str) -> tuple[sql.Composable, sql.Composable]:
    """The PASSWORD clause, and the same clause as shown in plans and logs."""
    return sql.SQL("PASSWORD {}").format(sql.Literal(verifier)), sql.SQL("PASSWORD '***'")


def role_steps(users: list[UserSpec], state: PgState, passwords: dict[str, str]) -> list[Step]:
    """CREATE ROLE for new users (grantors first), ALTER ROLE for drifted or new passwords.
    `passwords` is by login: U, or its rotation clone once the secret names the clone."""
    steps = []
    for user in grantor_order(users):
        name = sql.Identifier(user.name)
        role = state.roles.get(user.name)
        if role is None and user.iam:
            without_password = sql.SQL(
                "CREATE ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD NULL"
            ).format(name)
            steps += [Step(without_password, "create role (IAM authentication)", (user.name,))]
            steps += [iam_membership_step("GRANT", user)]
            continue
        if role is None:
            clause, shown = password_clause(passwords[user.name])
            create = sql.SQL("CREATE ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE ")
            steps.append(
                Step(
                    create.format(name) + clause,
                    "create role",
                    (user.name,),
                    shown=create.format(name) + shown,
                )
            )
            continue
        if not role.can_login or role.create_db or role.create_role:
            statement = sql.SQL("ALTER ROLE {} WITH LOGIN NOCREATEDB NOCREATEROLE").format(name)
            steps.append(Step(statement, "set LOGIN NOCREATEDB NOCREATEROLE", (user.name,)))
        if user.iam and not role.iam:
            remove = sql.SQL("ALTER ROLE {} WITH PASSWORD NULL").format(name)
            steps += [Step(remove, "remove its password", (user.name,))]
            steps += [iam_membership_step("GRANT", user)]
        elif user.auth == "password" and PG_IAM_ROLE in role.member_of:
            steps.append(iam_membership_step("REVOKE", user))
        if not user.iam:
            steps += expiry_steps(user, state)
        for login, what in (
            (user.name, "new password"),
            (user.clone, f"new password of {user.clone}"),
        ):
            if login in passwords:
                clause, shown = password_clause(passwords[login])
                alter = sql.SQL("ALTER ROLE {} WITH ").format(sql.Identifier(login))
                steps.append(Step(alter + clause, what, (user.name,), shown=alter + shown))
    return steps


def iam_membership_step(verb: str, user: UserSpec) -> Step:
    """GRANT rds_iam TO U (IAM logins only), or REVOKE it (password logins again)."""
    direction, what = ("TO", "IAM authentication") if verb == "GRANT" else ("FROM", "passwords")
    statement = sql.SQL("{} {} {} {}").format(
        sql.SQL(verb), sql.Identifier(PG_IAM_ROLE), sql.SQL(direction), sql.Identifier(user.name)
    )
    return Step(statement, f"{verb.lower()} {PG_IAM_ROLE}: logs in with {what}", (user.name,))


def expiry_steps(user: UserSpec, state: PgState) -> list[Step]:
    """VALID UNTIL 'infinity' for the user (and its clone) whose VALID UNTIL has passed: no
    password logs in then, so every run would set a new one. A date still to come is left."""
    steps = []
    for login in (user.name, user.clone):
        role = state.roles.get(login)
        if role and role.expired:
            statement = sql.SQL("ALTER ROLE {} VALID UNTIL 'infinity'").format(
                sql.Identifier(login)
            )
            what = "" if login == user.name else f" of {login}"
            steps.append(Step(statement, f"password{what} no longer expired", (user.name,)))
    return steps


def clone_needs_membership(user: UserSpec, state: PgState) -> bool:
    clone = state.roles.get(user.clone)
    return clone is None or user.name not in clone.member_of


def clone_steps(users: list[UserSpec], state: PgState) -> list[Step]:
    """The rotation clone of each user whose rotation is on, made ready for the AWS function:
    a LOGIN role that is a member of U and becomes U at login, so that what it creates is U's
    (and so covered by the grantor's default privileges, which AWS's own clones escape). It
    has no password until the first rotation sets one. A clone the AWS function made is
    completed the same way once the event turns rotation on."""
    steps = []
    for user in users:
        if not user.rotating:
            continue
        clone, name, who = state.roles.get(user.clone), sql.Identifier(user.clone), (user.name,)
        if clone is None:
            create = sql.SQL(
                "CREATE ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD NULL "
                "IN ROLE {}"
            ).format(name, sql.Identifier(user.name))
            steps.append(Step(create, f"prepare rotation clone {user.clone}", who))
        elif clone_needs_membership(user, state):
            grant = sql.SQL("GRANT {} TO {}").format(sql.Identifier(user.name), name)
            steps.append(Step(grant, f"make {user.clone} a member of {user.name}", who))
        if clone is None or f"role={user.name}" not in clone.config:
            acts_as = sql.SQL("ALTER ROLE {} SET role = {}").format(name, sql.Literal(user.name))
            steps.append(Step(acts_as, f"rotation clone {user.clone} acts as {user.name}", who))
    return steps


def delete_steps(users: list[UserSpec], state: PgState) -> list[Step]:
    """Hand over what the roles own, drop their grants, drop them: a role's objects go to its
    target (reassign_to, its grantor, or the master) before that target is dropped itself, so
    the roles go in rounds, those that are nobody's target first. Each round is one REASSIGN
    OWNED per target, one DROP OWNED and one DROP ROLE naming all its roles: with a statement
    per role, PostgreSQL works out the master's memberships again after each DROP ROLE, a cost
    quadratic in the roles dropped."""
    doomed = {u.name: u for u in users if u.name in state.roles}
    feeding: dict[str, list[str]] = defaultdict(list)  # target -> the roles whose objects it gets
    for user in doomed.values():
        feeding[reassign_target(user, state)].append(user.name)
    rounds: dict[str, int] = {}

    def round_of(name: str) -> int:
        """1 + the latest round of the roles whose objects go to `name` (0: none), walked
        without recursion, as grantor chains may be thousands long."""
        pending = [name]
        while pending:
            current = pending[-1]
            waiting = [n for n in feeding[current] if n not in rounds]
            if waiting:
                pending += waiting
                continue
            rounds[current] = 1 + max((rounds[n] for n in feeding[current]), default=-1)
            pending.pop()
        return rounds[name]

    by_round: dict[int, list[UserSpec]] = defaultdict(list)
    for user in doomed.values():
        by_round[round_of(user.name)].append(user)
    steps = []
    for number in sorted(by_round):
        leaving = by_round[number]
        targets: dict[str, list[UserSpec]] = defaultdict(list)
        for user in leaving:
            targets[reassign_target(user, state)].append(user)
        for target, group in sorted(targets.items()):
            steps.append(
                Step(
                    sql.SQL("REASSIGN OWNED BY {} TO {}").format(
                        present_roles(group, state), sql.Identifier(target)
                    ),
                    f"reassign owned objects to {target}",
                    tuple(u.name for u in group),
                )
            )
        names, who = present_roles(leaving, state), tuple(u.name for u in leaving)
        steps.append(
            Step(sql.SQL("DROP OWNED BY {}").format(names), "drop remaining privileges", who)
        )
        cloned = [u for u in leaving if u.clone in state.roles]
        alone = [u for u in leaving if u.clone not in state.roles]
        for group, them in ((cloned, "role and its rotation clone"), (alone, "role")):
            if group:
                statement = sql.SQL("DROP ROLE {}").format(present_roles(group, state))
                steps.append(Step(statement, f"drop {them}", tuple(u.name for u in group)))
    return steps


def present_roles(users: list[UserSpec], state: PgState) -> sql.Composable:
    """The users' roles and rotation clones that exist, as a list of names."""
    present = [role for u in users for role in (u.clone, u.name) if role in state.roles]
    return sql.SQL(", ").join(map(sql.Identifier, present))


def membership_steps(
    state: PgState, needs: dict[str, set[str]], dropped: set[str]
) -> tuple[list[Step], list[Step]]:
    """Memberships the master needs to act as other roles, taken and given back inside the one
    transaction, so no other session ever sees them. On 16+ they are SET-only unless a
    REASSIGN/DROP OWNED needs the role's privileges: the master must never inherit a role
    (one holding rds_iam would make the master an IAM-only login)."""
    take, give_back = [], []
    for role, options in sorted(needs.items()):
        name = sql.Identifier(role)
        if state.server_major >= 16:
            inherit = sql.SQL("TRUE" if "inherit" in options else "FALSE")
            statement = sql.SQL("GRANT {} TO CURRENT_USER WITH INHERIT {}, SET TRUE").format(
                name, inherit
            )
        else:
            statement = sql.SQL("GRANT {} TO CURRENT_USER").format(name)
        take.append(Step(statement, f"temporary membership in {role}", ()))
        if role not in dropped:
            revoke = sql.SQL("REVOKE {} FROM CURRENT_USER").format(name)
            give_back.append(Step(revoke, f"end temporary membership in {role}", ()))
    return take, give_back


def memberships_needed(
    grants: list[Step], leaving: list[UserSpec], state: PgState, new_roles: set[str]
) -> dict[str, set[str]]:
    """The roles the master must SET ROLE to (for its grants) or inherit (REASSIGN and DROP
    OWNED need the privileges of the role dropped and of the one receiving its objects)."""
    needs: dict[str, set[str]] = defaultdict(set)
    for role in {step.as_role for step in grants if step.as_role}:
        known = state.roles.get(role)  # unknown: a grantor that does not exist, refused anyway
        if role in new_roles or (known and not known.master_can_set):
            needs[role].add("set")
    for user in leaving:
        if user.name in state.roles:
            clone = [user.clone] if user.clone in state.roles else []
            for role in (user.name, *clone, reassign_target(user, state)):
                known = state.roles.get(role)
                if role != state.master and (not known or not known.master_has_privileges):
                    needs[role].add("inherit")
    return needs


# ---------------------------------------------------------------------------------------------
# 11. MySQL and MariaDB: the same parts. Every privilege is on `database`.* (never *.*), so
#     grants already cover future tables; the grantor only orders creation. State is read
#     structurally (mysql.user, information_schema): SHOW GRANTS text changes under partial revokes.
# ---------------------------------------------------------------------------------------------

# MySQL's privileges that apply to tables, granted on `db`.* (its ALL); it has no TRUNCATE
# privilege: TRUNCATE TABLE needs DROP.
MY_TABLE_PRIVILEGES = (
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "CREATE",
    "DROP",
    "REFERENCES",
    "INDEX",
    "ALTER",
    "CREATE VIEW",
    "SHOW VIEW",
    "TRIGGER",
)

MY_DDL_PRIVILEGES = (
    "CREATE",
    "ALTER",
    "DROP",
    "INDEX",
    "REFERENCES",
    "CREATE VIEW",
    "SHOW VIEW",
    "TRIGGER",
    "EVENT",
    "CREATE ROUTINE",
    "ALTER ROUTINE",
    "EXECUTE",
    "CREATE TEMPORARY TABLES",
    "LOCK TABLES",
)


MY_DATABASE_LIMIT = 64

MYSQL_NAME_LIMIT = 32

# The USERNAME_CHARACTER_LIMIT of the AWS MySQL multi-user rotation function: the variable a
# deployment that raised it in the function's environment declares it in, and its default.
AWS_MYSQL_CLONE_LIMIT = CloneLimit(
    "ROTATION_USERNAME_LIMIT_MYSQL",
    16,
    MYSQL_NAME_LIMIT,
    "USERNAME_CHARACTER_LIMIT of the AWS MySQL rotation function",
)

MY_BAD_DATABASE = 1049  # ER_BAD_DB_ERROR: the database named at connection does not exist

# MySQL's error numbers, as PyMySQL prints them "(1045, ...)", and the system's words for what
# went wrong while connecting (see connect_failure).
MY_CONNECT_FAILURES: ConnectFailures = (
    (
        ("(3159,",),  # ER_SECURE_TRANSPORT_REQUIRED
        "the server requires TLS (MySQL or MariaDB with require_secure_transport): use ssl_mode "
        "require or verify-full",
    ),
    (("(2005,", "getaddrinfo", "Name or service not known"), HOST_UNKNOWN),
    (
        ("(1045,",),  # ER_ACCESS_DENIED_ERROR
        f"{AUTHENTICATION_FAILED}, or the server requires TLS (require_secure_transport: "
        "MariaDB refuses a session without it the same way) and ssl_mode is disable",
    ),
    (
        ("(1044,",),  # ER_DBACCESS_DENIED_ERROR
        "permission denied: the master may not use this database (its privileges on it)",
    ),
    (("SSL", "certificate"), TLS_FAILED),
    # (2003, "Can't connect to MySQL server on 'host' (...)"): the system's words in brackets
    (("Connection refused",), CONNECTION_REFUSED),
    (("No route to host", "Network is unreachable"), NO_ROUTE),
    (("timed out",), TIMED_OUT),
)


def my_tls_context(target: Target) -> ssl.SSLContext:
    """require: encrypted, not verified (as libpq's sslmode=require); verify-full: the
    certificate and the host name checked against the CA bundle (Settings.ca_bundle)."""
    if target.ssl_mode == "verify-full":
        return ssl.create_default_context(cafile=trusted_cas(target.settings.ca_bundle))
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def applied_so_far(steps: Sequence[Step]) -> str:
    """What a failed MySQL run left applied, for the error message (first ones named): each
    statement is final as it runs."""
    if not steps:
        return "Nothing was applied before it."
    named = "; ".join(f"{step.who}: {step.summary}" for step in steps[:10])
    more = f"; and {len(steps) - 10} more" if len(steps) > 10 else ""
    return f"Applied before it ({len(steps)} statements, each final): {named}{more}."


def my_host_problems(host: str) -> list[str]:
    """An account host: a name, an address, a pattern with % and _, or a netmask
    (192.168.0.0/255.255.255.0), as the servers store it: at most 255 characters (MariaDB
    10.4+, MySQL 8.0.17+), printable ASCII (MySQL's Host column is ASCII), no `@` (which
    would end the host part) and no quotes. Upper case is read as lower case (for_engine).
    The event's parsing made sure it is a non-empty string."""
    if len(host) > 255:
        return ["host must be a non-empty string of at most 255 characters"]
    if any(c in host for c in "'\\\x00`\"") or any(c.isspace() for c in host):
        return [f"host {host!r} may not contain quotes, backslashes or blanks"]
    if "@" in host:
        return [f"host {host!r} may not contain @: give the user name and the host apart"]
    if not (host.isascii() and host.isprintable()):
        return [
            f"host {host!r} may hold only printable ASCII characters (a name, an address, "
            "a pattern with % and _, or a netmask); write international names in punycode"
        ]
    return []


def my_user_account(user: UserSpec) -> tuple[str, str]:
    """The user's account, 'name'@'host': at '%' when the event gives no host."""
    return (user.name, user.host or "%")


def my_clone_accounts(user: UserSpec) -> tuple[tuple[str, str], ...]:
    """Where the user's rotation clone may be: at the user's host, or at '%' where the AWS
    functions make it (they do not copy the host)."""
    return ((user.clone, my_user_account(user)[1]), (user.clone, "%"))


class MySql:
    """MySQL 8 and MariaDB (told apart by the server's version). DDL commits by itself there:
    the steps run in plan order, each one final, so a failure names what was applied and a
    re-run, which plans again from the state, converges. A dry run only plans."""

    default_port = 3306
    table_privileges: tuple[str, ...] = MY_TABLE_PRIVILEGES
    # No TRUNCATE privilege: TRUNCATE TABLE needs DROP.
    privilege_aliases: Mapping[str, str] = {"TRUNCATE": "DROP"}

    def __init__(
        self,
        engine: str,
        label: str,
        name_limit: int,
        rotation_template: str,
        clone_limit: CloneLimit | None = None,
    ):
        self.engine, self.label, self.name_limit = engine, label, name_limit
        self.clone_limit = clone_limit
        self.rotation_variable = f"ROTATION_LAMBDA_ARN_{engine.upper()}"
        self.rotation_template = rotation_template

    def name_problems(self, name: str, what: str) -> list[str]:
        """Over the limit, changed by the server, or never managed."""
        problems, lowered = [], name.lower()
        if len(name) > self.name_limit:
            problems.append(
                f"{what} {name!r} is longer than {self.label}'s {self.name_limit} characters"
            )
        if name != name.rstrip(" "):
            problems.append(
                f"{what} {name!r} ends with a blank, which {self.label} drops from names"
            )
        if any(ord(c) > 0xFFFF for c in name):
            problems.append(
                f"{what} {name!r} has a character outside the Basic Multilingual Plane, which "
                f"{self.label}'s account tables (utf8mb3) cannot store: it would become '?'"
            )
        if lowered in ("public", "root", "mariadb.sys") or lowered.startswith(("mysql.", "rds")):
            problems.append(
                f"{what} {name!r} is reserved (system accounts mysql.*, mariadb.sys, root, rds*, "
                "PUBLIC): never managed"
            )
        return problems

    def event_problems(self, event: Event) -> list[str]:
        problems = []
        if len(event.database) > MY_DATABASE_LIMIT or "\\" in event.database:
            problems.append(
                f"database_name {event.database!r} is not a valid {self.label} database name"
            )
        if event.schemas_declared:
            problems.append(
                f"schemas apply only to PostgreSQL ({self.label} grants on the database)"
            )
        if event.database == MY_RECORD_DATABASE:
            problems.append(
                f"database_name {event.database!r} is the tool's own (its records of the "
                "accounts it manages): never managed"
            )
        return problems

    def user_problems(self, user: UserSpec, settings: Settings) -> list[str]:
        problems = [] if user.host is None else my_host_problems(user.host)
        if "TRUNCATE" in user.privileges and not (
            user.ddl or user.all_privileges or "DROP" in user.privileges
        ):
            problems.append(
                f"{self.label} has no TRUNCATE privilege; TRUNCATE TABLE needs DROP: "
                "declare DROP (or grant_ddl) to allow it"
            )
        if user.reassign_to:
            problems.append("reassign_to applies only to PostgreSQL")
        return problems + self.aws_rotation_problems(user, settings)

    def aws_rotation_problems(self, user: UserSpec, settings: Settings) -> list[str]:
        """What the engine's AWS multi-user rotation function would fail on, for a user that
        relies on it (no rotation.lambda_arn of its own): it runs SHOW GRANTS FOR 'U', which
        means 'U'@'%', so an account at another host fails at its first rotation; and the
        MySQL function refuses a clone name over its USERNAME_CHARACTER_LIMIT (16 unless the
        deployment raised it and declares so), MariaDB's over 80 (name_problems checks)."""
        if not (user.rotation and user.rotating) or user.rotation.lambda_arn:
            return []
        problems = []
        function = f"the AWS rotation function ({self.rotation_template})"
        name, host = my_user_account(self.for_engine(user))  # unbound: as the server stores it
        if host != "%":
            problems.append(
                f"rotation through {function} needs host '%': it runs SHOW GRANTS FOR "
                f"{name!r}, which means {name!r}@'%', and fails for {name!r}@{host!r}. Give "
                "the user host '%', or rotation.lambda_arn of a rotation function of your own"
            )
        limit = self.aws_clone_limit(settings)
        if limit < self.name_limit and len(user.clone) > limit:
            problems.append(
                f"rotation through {function}: the clone name {user.clone!r} is longer than "
                f"the {limit} characters it accepts (its USERNAME_CHARACTER_LIMIT). Shorten "
                f"db_user to {max(limit - len(CLONE_SUFFIX), 0)} characters, or raise "
                "USERNAME_CHARACTER_LIMIT in that function's environment and set "
                f"{AWS_MYSQL_CLONE_LIMIT.variable} to the same value in this one's"
            )
        return problems

    def aws_clone_limit(self, settings: Settings) -> int:
        """The longest U_clone the engine's AWS rotation function takes: the MySQL one's
        USERNAME_CHARACTER_LIMIT (default 16, or what the deployment declares); MariaDB's
        is 80, the server's own limit."""
        if self.clone_limit is None:
            return self.name_limit
        return settings.clone_limits.get(self.clone_limit.variable, self.clone_limit.default)

    def for_engine(self, user: UserSpec) -> UserSpec:
        """The privileges as engine_privileges has them (TRUNCATE read as the DROP it needs:
        user_problems made sure DROP is granted anyway), the host in lower case, as the
        servers store host names."""
        privileges = engine_privileges(user, self)
        host = user.host.lower() if user.host else user.host
        if privileges == user.privileges and host == user.host:
            return user
        return replace(user, privileges=privileges, host=host)

    ACCESS_DENIED = 1045  # ER_ACCESS_DENIED_ERROR: a wrong password (or no such account)
    # ACCOUNT LOCK: MySQL 8's ER_ACCOUNT_HAS_BEEN_LOCKED, MariaDB's. A locked account is
    # refused before anything changes (my_state_problems): no login of its can be checked.
    ACCOUNT_LOCKED = (3118, 4151)
    # ER_MUST_CHANGE_PASSWORD_LOGIN: the password is right but expired, and the server ends
    # such sessions (disconnect_on_expired_password). The plan sets it again (password_expired).
    PASSWORD_EXPIRED = 1862

    def open(
        self,
        target: Target,
        user: str,
        password: str,
        read_timeout: float | None = None,
        database: str | None = None,
    ) -> Any:
        """An autocommit connection; with `ssl` set, PyMySQL refuses a server without TLS.
        ssl_mode disable is no TLS at all: left to itself PyMySQL would try TLS where the
        server offers it (and build a CA context, which is slow, for every connection). PyMySQL
        reads the server's greeting under its read timeout, so the whole handshake is bounded
        by DB_CONNECT_TIMEOUT; after it, each wait for an answer by `read_timeout` (default:
        DB_CONNECT_TIMEOUT too), each write by DB_CONNECT_TIMEOUT."""
        tls = None if target.ssl_mode == "disable" else my_tls_context(target)
        timeout = target.settings.connect_timeout
        try:
            connection: Any = pymysql.connect(
                host=target.host,
                port=target.port,
                user=user,
                # UTF-8 bytes, as the stored hash was made from: PyMySQL would send latin-1
                password=password.encode(),
                connect_timeout=timeout,
                read_timeout=timeout,
                write_timeout=timeout,
                charset="utf8mb4",
                autocommit=True,
                program_name=TOOL,
                database=database,
                ssl=tls,
                ssl_disabled=tls is None,
            )
        except RuntimeError as error:  # PyMySQL without its rsa extra (cryptography), no TLS
            if "cryptography" not in str(error):
                raise
            raise ApplyError(
                f"cannot log in as {user!r} to {target.host}:{target.port} with ssl_mode "
                f"{target.ssl_mode}: the account uses caching_sha2_password (or "
                "sha256_password), which without TLS needs an RSA key exchange this build "
                "leaves out. Use TLS: ssl_mode verify-full (or require)."
            ) from None
        if read_timeout:  # PyMySQL applies it at the next read; it has no public setter
            connection._read_timeout = read_timeout
        return connection

    def connect(self, target: Target, lock: HeldLock | None = None) -> Any:
        """The master's connection. A wait for an answer is bounded on the client by
        DB_LOCK_TIMEOUT and DB_CONNECT_TIMEOUT together (read_state bounds the statements on
        the server too). MySQL has no transaction to guard with the lock: each statement is
        final as it runs, and a re-run converges from whatever a lost lock let happen."""
        settings = target.settings
        return self.connect_as_master(target, settings.connect_timeout + settings.lock_timeout)

    def connect_as_master(self, target: Target, read_timeout: float) -> Any:
        """In the event's database, as on PostgreSQL: a missing one is refused as the
        connection is made, before anything else is read (the statements name it themselves)."""
        master, password = target.master_user, target.master_password
        try:
            return self.open(target, master, password, read_timeout, target.database)
        except pymysql.Error as error:
            if error.args and error.args[0] == MY_BAD_DATABASE:
                raise InvalidEvent([database_missing(target.database)]) from None
            where = f"{target.host}:{target.port}/{target.database} as {master!r}"
            said = REDACT(str(error)).strip()
            raise ApplyError(
                connect_failure(where, said, MY_CONNECT_FAILURES, target.settings)
            ) from None

    def login_works(self, target: Target, user: str, password: str | None) -> bool:
        """Log in as the user; False when the server refuses the password."""
        if not password:
            return False
        try:
            self.open(target, user, password).close()
        except pymysql.err.OperationalError as error:
            code = error.args[0] if error.args else None
            if code == self.ACCESS_DENIED or code in self.ACCOUNT_LOCKED:
                return False
            if code == self.PASSWORD_EXPIRED:
                return True
            raise ApplyError(
                f"could not log in as {user!r} to check its password: {REDACT(str(error))}"
            ) from None
        return True

    def same_server(self, connection: Any, elsewhere: Target | None, login: dict) -> bool:
        """Whether `elsewhere` reaches the server `connection` is on: a session opened there
        with `login` (a secret's value) takes a lock of a name of its own, and this server
        must say that session holds it (GET_LOCK is server-wide, and any account may take
        one). A name that does not answer, or refuses the login, is not this server."""
        marker = f"{TOOL}-{uuid.uuid4()}"
        if elsewhere is None:
            return False
        try:
            other = self.open(elsewhere, str(login.get("username")), login["password"])
        except (pymysql.Error, ApplyError):
            return False
        try:
            with other.cursor() as cursor:
                cursor.execute("SELECT CONNECTION_ID(), GET_LOCK(%s, 0)", (marker,))
                session, _ = cursor.fetchone()
            with connection.cursor() as cursor:
                cursor.execute("SELECT IS_USED_LOCK(%s)", (marker,))
                seen = cursor.fetchone()[0] == session
        finally:
            close_quietly(other)
        info("same server", host=elsewhere.host, port=elsewhere.port, same=seen)
        return bool(seen)

    @contextmanager
    def lock(self, target: Target, deadline: Deadline) -> Iterator[HeldLock]:
        """GET_LOCK is server-wide, as accounts are; the connection's end releases it, so the
        server must not end that session while it waits idle (wait_timeout)."""
        wait_ms = deadline.lock_wait_ms()
        wait_s = max(wait_ms // 1000, 1)
        read_timeout = wait_s + target.settings.connect_timeout
        connection = self.connect_as_master(target, read_timeout)
        try:
            with connection.cursor() as cursor:
                self.bound_session(cursor, read_timeout)
                cursor.execute("SELECT GET_LOCK(%s, %s)", (TOOL, wait_s))
                if cursor.fetchone()[0] != 1:
                    raise another_invocation(wait_ms)

            def held() -> bool:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT IS_USED_LOCK(%s) = CONNECTION_ID()", (TOOL,))
                    return bool(cursor.fetchone()[0])

            yield HeldLock(f"the server lock GET_LOCK({TOOL!r})", held)
        finally:
            connection.close()

    def read_state(
        self, connection: Any, target: Target, event: Event, deadline: Deadline
    ) -> MyState:
        """Every statement of the run is bounded by DB_LOCK_TIMEOUT (and the Lambda's time
        left): lock_wait_timeout for metadata locks, and on MariaDB max_statement_time for any
        wait, behind FLUSH TABLES WITH READ LOCK too. MySQL 8 has max_execution_time for
        SELECT only; its other statements are bounded by the client's read timeout."""
        bound = deadline.bound_s(target.settings.lock_timeout)
        connection._read_timeout = bound + target.settings.connect_timeout
        with connection.cursor() as cursor:
            cursor.execute("SET SESSION lock_wait_timeout = %s", (max(round(bound), 1),))
            self.bound_session(cursor, bound)
            return read_my_state(cursor, event)

    @staticmethod
    def bound_session(cursor: Any, statement_s: float) -> None:
        """Each statement of the session ends after `statement_s` seconds (MariaDB; a SELECT
        on MySQL 8), and the server keeps the session while the run lives (wait_timeout only
        ever raised, to outlast the longest Lambda)."""
        cursor.execute("SELECT VERSION()")
        if "mariadb" in cursor.fetchone()[0].lower():
            cursor.execute("SET SESSION max_statement_time = %s", (round(statement_s, 3),))
        else:
            cursor.execute("SET SESSION max_execution_time = %s", (round(statement_s * 1000),))
        cursor.execute(
            "SET SESSION wait_timeout = GREATEST(@@SESSION.wait_timeout, %s)",
            (TIMEOUT_MAX_S + 60,),
        )

    def state_problems(self, event: Event, state: MyState) -> list[str]:
        return my_state_problems(event, state)

    def warnings(self, event: Event, state: MyState) -> list[str]:
        """What the server's settings mean for the passwords (MySQL 8 and MariaDB 10 have no
        PUBLIC: nothing is held beyond the grants read)."""
        return my_password_warnings(state)

    def identified_by(self, password: str, state: MyState) -> str:
        identified_by = password if sends_password(state) else native_password_hash(password)
        REDACT.add(identified_by)
        return identified_by

    def plan(self, event: Event, state: MyState, identified_by: dict[str, str]) -> list[Step]:
        return plan_mysql(event, state, identified_by)

    def record_steps(self, records: list[tuple[UserSpec, Record]], state: MyState) -> list[Step]:
        return my_record_steps(records, state)

    def with_records(self, steps: list[Step], records: list[Step], state: MyState) -> list[Step]:
        """The records first, before any account they speak of is created or given a
        password (each statement commits by itself); on MySQL 8 an attribute needs its
        account, so a new account's record comes last."""
        if state.mariadb:
            return records + steps
        existing: list[Step] = []
        new: list[Step] = []
        for record in records:
            named = all(state.has_name(name) for name in record.users)
            (existing if named else new).append(record)
        return existing + steps + new

    def forget_records(self, users: list[UserSpec], state: MyState) -> list[Step]:
        """MariaDB: the rows of deleted accounts (MySQL 8's attributes go with the account)."""
        return [
            Step(
                f"DELETE FROM `{MY_RECORD_DATABASE}`.`{MY_RECORD_TABLE}` WHERE user = "
                f"{my_literal(my_user_account(user)[0], state)} AND host = "
                f"{my_literal(my_user_account(user)[1], state)}",
                "forget its record",
                (user.name,),
                record=True,
            )
            for user in users
            if state.mariadb and my_user_account(user) in state.records
        ]

    def apply(
        self,
        connection: Any,
        target: Target,
        steps: Sequence[Step],
        then: Callable[[], None] | None = None,
    ) -> SqlStats:
        """Each step is final as it runs, so each gets its audit line at once; `then` runs
        after the last."""
        started, statements, said = time.monotonic(), 0, []
        with connection.cursor() as cursor:
            for number, step in enumerate(steps, 1):
                try:
                    cursor.execute(step.statement)  # no parameters: '%' is never interpolated
                except pymysql.Error as error:
                    done = applied_so_far(steps[: number - 1])
                    read_only = self.read_only_error(error)
                    raise step_failed(steps, number, error, done, read_only=read_only) from None
                step_applied(step, target)
                statements += 1
                if cursor.warning_count:  # what the server said of it (SHOW WARNINGS)
                    cursor.execute("SHOW WARNINGS")
                    said += [f"{level} {code}: {message}" for level, code, message in cursor]
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("executed", extra={"fields": {"sql": self.render(step)}})
        if then:
            then()
        return SqlStats(
            statements, round((time.monotonic() - started) * 1000), server_notices(said)
        )

    def rehearse(self, connection: Any, steps: Sequence[Step]) -> SqlStats:
        """Nothing to run: MySQL cannot roll DDL back, so its dry run only plans."""
        return SqlStats()

    def render(self, step: Step) -> str:
        """The statement as the planner wrote it (quoted by it), its password blanked."""
        return str(step.shown or step.statement)

    # ER_OPTION_PREVENTS_STATEMENT (1290) names the option: --read-only (or --super-read-only);
    # ER_READ_ONLY_MODE (1836) is innodb_read_only's, an Aurora MySQL reader's.
    @staticmethod
    def read_only_error(error: Exception) -> bool:
        code = error.args[0] if error.args else None
        said = str(error).lower()
        return code == 1836 or (code == 1290 and ("read-only" in said or "read_only" in said))


def native_password_hash(password: str) -> str:
    """mysql_native_password's stored form: '*' and the hex of SHA1(SHA1(password))."""
    return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()  # noqa: S324


@dataclass(frozen=True)
class MyAccount:
    user: str
    host: str
    superuser: bool = False
    is_role: bool = False  # MariaDB keeps its roles in mysql.user too
    expired: bool = False  # its password expired: it must be set again to work
    locked: bool = False  # ACCOUNT LOCK
    plugin: str = ""  # how it authenticates: mysql.user.plugin (MariaDB: from global_priv)
    ssl_type: str = ""  # REQUIRE: '' none, ANY (SSL), X509, SPECIFIED


@dataclass
class MyState:
    mariadb: bool  # else MySQL 8, told apart by the server's version
    database_exists: bool  # a GRANT on a database that does not exist would pass silently
    backslash_escapes: bool  # string literals escape with backslashes (no NO_BACKSLASH_ESCAPES)
    wildcards: bool  # _ and % in a GRANT's database name are patterns (no partial_revokes)
    accounts: dict[tuple[str, str], MyAccount]
    grants: dict[tuple[str, str], frozenset[str]]  # on `database`.*, GRANT OPTION included
    definers: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # to be deleted
    catalog_queries: int = 4
    read_only: str | None = None  # why the server refuses writes (my_read_only); None: it does not
    password_lifetime: int = 0  # default_password_lifetime, days (0: passwords never expire)
    hashes_refused: bool = False  # MariaDB: a password must be sent as it is (see above)
    general_log: bool = False  # MariaDB: the general query log records statements as sent
    binary_log: bool = False  # MariaDB: so does the binary log (RDS: on with automated backups)
    password_checks: dict[str, str] = field(default_factory=dict)  # simple_password_check_*
    iam_plugin: bool = True  # AWSAuthenticationPlugin is loaded (read when the event has IAM users)
    _names: frozenset[str] | None = field(default=None, repr=False, compare=False)
    records: dict[tuple[str, str], Record] = field(default_factory=dict)
    record_table: bool = False  # MariaDB: the tool's table of records exists
    # Accounts to be deleted: the other databases they hold privileges in (DROP USER is
    # server-wide).
    elsewhere: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    existing_databases: frozenset[str] = frozenset()

    def has_user(self, user: UserSpec) -> bool:
        return my_user_account(user) in self.accounts

    def record_of(self, user: UserSpec) -> Record | None:
        """A record outlives its account only while the account's delete is under way (see
        apply): a delete finds its secret by it; for anything else it is no record."""
        if my_user_account(user) in self.accounts or user.deleting:
            return self.records.get(my_user_account(user))
        return None

    def clone_account(self, user: UserSpec) -> tuple[str, str] | None:
        return next((a for a in my_clone_accounts(user) if a in self.accounts), None)

    def has_clone(self, user: UserSpec) -> bool:
        return self.clone_account(user) is not None

    def other_auth(self, user: UserSpec) -> str | None:
        account = self.accounts.get(my_user_account(user))
        if not account or account.plugin in MY_PASSWORD_PLUGINS:
            return None
        if account.plugin == MY_IAM_PLUGIN:
            return f"IAM (plugin {MY_IAM_PLUGIN})"
        return f"plugin {account.plugin}"

    def password_expired(self, user: UserSpec, login: str) -> bool:
        """Whether the login's password expired, so that it must be set again to work."""
        account = my_user_account(user) if login == user.name else self.clone_account(user)
        found = self.accounts.get(account) if account else None
        return bool(found and found.expired)

    def has_name(self, name: str) -> bool:
        if self._names is None:  # indexed once: one lookup a grantor, not a scan
            self._names = frozenset(user for user, _ in self.accounts)
        return name in self._names


# Whether the server accepts writes, and (MySQL 8) whether partial_revokes makes _ and % in a
# GRANT's database name literal. MySQL's super_read_only also stops the holders of SUPER;
# innodb_read_only is how an Aurora MySQL reader refuses writes. MariaDB has no
# super_read_only, and no partial_revokes (its GRANT names are always patterns).
# Then the password policy: how long passwords live (default_password_lifetime), and on
# MariaDB whether the server refuses a password given as a hash (an active PASSWORD
# VALIDATION plugin with strict_password_validation: it cannot check a hash), and whether its
# general query log, which records statements as sent, is on. MySQL 8 rewrites the passwords
# out of its logs, and hashes them itself.
MYSQL_SERVER_QUERY = """
SELECT @@GLOBAL.partial_revokes, @@GLOBAL.read_only, @@GLOBAL.super_read_only,
       @@GLOBAL.innodb_read_only, @@GLOBAL.default_password_lifetime, 0, 0, 0, NULL
"""

MARIADB_SERVER_QUERY = """
SELECT 0, @@GLOBAL.read_only, 0, @@GLOBAL.innodb_read_only, @@GLOBAL.default_password_lifetime,
       @@GLOBAL.strict_password_validation AND EXISTS (
           SELECT 1 FROM information_schema.PLUGINS
           WHERE PLUGIN_TYPE = 'PASSWORD VALIDATION' AND PLUGIN_STATUS = 'ACTIVE'),
       @@GLOBAL.general_log, @@GLOBAL.log_bin,
       (SELECT GROUP_CONCAT(CONCAT(VARIABLE_NAME, '=', VARIABLE_VALUE))
        FROM information_schema.GLOBAL_VARIABLES
        WHERE VARIABLE_NAME LIKE 'SIMPLE\\_PASSWORD\\_CHECK\\_%')
"""

MY_SESSION_QUERY = """
SELECT VERSION(), @@SESSION.sql_mode,
       EXISTS (SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s),
       EXISTS (SELECT 1 FROM information_schema.TABLES
               WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s)
"""

# The records. MySQL 8 keeps them in the account itself, as an attribute (ALTER USER ...
# ATTRIBUTE, merged into mysql.user's User_attributes under "metadata"): read with the
# account, dropped with it. MariaDB has no account attribute nor comment, so the tool keeps
# them in a table of its own, in a database of its own that the RDS master may create
# (CREATE on *.*): InnoDB, so a record is as durable and as consistent as the accounts; the
# key is the account, compared byte for byte as mysql.user does. A record is written before
# the account it speaks of is created or given a password (DDL commits statement by
# statement here), and deleted after the account is dropped; a record of an account that
# does not exist is no record.
MY_RECORD_DATABASE = "rds_initializer"
MY_RECORD_TABLE = "accounts"
MY_RECORD_ATTRIBUTE = TOOL

MARIADB_RECORD_SETUP = (
    f"CREATE DATABASE IF NOT EXISTS `{MY_RECORD_DATABASE}`",
    f"CREATE TABLE IF NOT EXISTS `{MY_RECORD_DATABASE}`.`{MY_RECORD_TABLE}` ("
    "user VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL, "
    "host VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL, "
    "record TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL, "
    "PRIMARY KEY (user, host)) ENGINE = InnoDB",
)

MARIADB_RECORDS_QUERY = (
    f"SELECT user, host, record FROM `{MY_RECORD_DATABASE}`.`{MY_RECORD_TABLE}` WHERE user IN %s"
)

MARIADB_NO_RECORD = "NULL"

MYSQL_RECORD = (
    f"CAST(JSON_EXTRACT(User_attributes, '$.metadata.\"{MY_RECORD_ATTRIBUTE}\"') AS CHAR)"
)

# What accounts to be deleted hold in other databases: DROP USER would take it from them.
MY_GRANTEE = "CONCAT('''', User, '''@''', Host, '''')"  # as information_schema spells it
MY_ELSEWHERE_QUERY = "\nUNION ALL\n".join(
    [
        f"""SELECT CONVERT(GRANTEE USING utf8mb4), CONVERT(TABLE_SCHEMA USING utf8mb4)
FROM information_schema.{table}
WHERE GRANTEE IN %(grantees)s AND TABLE_SCHEMA NOT IN %(here)s"""
        for table in ("SCHEMA_PRIVILEGES", "TABLE_PRIVILEGES", "COLUMN_PRIVILEGES")
    ]
    + [
        f"""SELECT CONVERT({MY_GRANTEE} USING utf8mb4), CONVERT(Db USING utf8mb4)
FROM mysql.procs_priv WHERE {MY_GRANTEE} IN %(grantees)s AND Db NOT IN %(here)s"""
    ]
)

MY_DATABASES_QUERY = (
    "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN %(databases)s"
)


# Only the accounts the event can touch or name: its users, their rotation clones, their
# grantors (a server may hold thousands of other accounts).
# mysql.user's names are utf8mb3 (binary): compared as utf8mb4, exactly, so that a name the
# engine cannot store (refused by the event's checks, reported with the state's) is no error.
MY_ACCOUNTS_QUERY = """
SELECT User, Host, Super_priv = 'Y', {is_role}, {expired}, {locked}, {record}, plugin,
       ssl_type
FROM mysql.user
WHERE CONVERT(User USING utf8mb4) COLLATE utf8mb4_bin IN %s
"""

# Whether an account is a role, its password expired (ALTER USER ... PASSWORD EXPIRE, or its
# lifetime, its own or default_password_lifetime, elapsed: it logs in, then may only set a
# password, or is turned away: disconnect_on_expired_password), and whether it is locked.
# MySQL 8 keeps no role flag: a role is an account granted to another one.
MYSQL_ACCOUNT_COLUMNS = {
    "is_role": """EXISTS (SELECT 1 FROM mysql.role_edges e
                          WHERE e.FROM_USER = User AND e.FROM_HOST = Host)""",
    "expired": """password_expired = 'Y' OR (
        COALESCE(password_lifetime, @@GLOBAL.default_password_lifetime) > 0
        AND password_last_changed + INTERVAL
            COALESCE(password_lifetime, @@GLOBAL.default_password_lifetime) DAY < NOW())""",
    "locked": "account_locked = 'Y'",
}

# The plugins that authenticate by the password the tool sets ('' is an old MariaDB's native).
# Any other (AWSAuthenticationPlugin, ed25519, unix_socket, auth_socket...) is another way.
MY_PASSWORD_PLUGINS = frozenset(
    {"", "mysql_native_password", "mysql_old_password", "caching_sha2_password", "sha256_password"}
)

# RDS's plugin for IAM database authentication, on MySQL and MariaDB alike (loaded when the
# instance has IAM database authentication on), and how an account is made to use it.
MY_IAM_PLUGIN = "AWSAuthenticationPlugin"
MY_IAM_CLAUSE = f"IDENTIFIED WITH {MY_IAM_PLUGIN} AS 'RDS'"
MY_TLS_REQUIRED = ("ANY", "X509", "SPECIFIED")  # ssl_type of an account that REQUIREs TLS

MY_IAM_PLUGIN_QUERY = """
SELECT COUNT(*) FROM information_schema.PLUGINS
WHERE PLUGIN_NAME = 'AWSAuthenticationPlugin' AND PLUGIN_STATUS = 'ACTIVE'
"""

# MariaDB keeps the password's age and lifetime (-1: the server's default) and the lock in
# the account's JSON in mysql.global_priv; PASSWORD EXPIRE sets password_last_changed to 0.
MARIADB_ACCOUNT_COLUMNS = {
    "is_role": "is_role = 'Y'",
    "expired": """EXISTS (
        SELECT 1 FROM (
            SELECT User, Host, changed,
                   IF(lifetime = -1, @@GLOBAL.default_password_lifetime, lifetime) AS days
            FROM (SELECT User, Host,
                         CAST(JSON_VALUE(Priv, '$.password_last_changed') AS INTEGER) AS changed,
                         CAST(COALESCE(JSON_VALUE(Priv, '$.password_lifetime'), -1) AS INTEGER)
                             AS lifetime
                  FROM mysql.global_priv) account) p
        WHERE p.User = mysql.user.User AND p.Host = mysql.user.Host
          AND (p.changed = 0 OR (p.days > 0 AND p.changed + p.days * 86400 < UNIX_TIMESTAMP())))""",
    "locked": """EXISTS (SELECT 1 FROM mysql.global_priv g
        WHERE g.User = mysql.user.User AND g.Host = mysql.user.Host
          AND JSON_VALUE(g.Priv, '$.account_locked') IN ('1', 'true'))""",
}

MY_GRANTS_QUERY = """
SELECT GRANTEE, PRIVILEGE_TYPE, IS_GRANTABLE FROM information_schema.SCHEMA_PRIVILEGES
WHERE TABLE_SCHEMA = %s
"""

# Objects that would lose their DEFINER (MySQL refuses or orphans them) if a user were dropped.
# Every column is converted to one character set: information_schema's collations differ
# between tables and servers, and a UNION of mixed ones can be refused.
MY_DEFINERS_QUERY = "\nUNION ALL\n".join(
    f"""SELECT CONVERT(DEFINER USING utf8mb4), CONVERT({kind} USING utf8mb4),
       CONVERT(CONCAT({schema}, '.', {name}) USING utf8mb4)
FROM information_schema.{table} WHERE DEFINER IN %(definers)s"""
    for table, kind, schema, name in (
        ("VIEWS", "'view'", "TABLE_SCHEMA", "TABLE_NAME"),
        ("ROUTINES", "LOWER(ROUTINE_TYPE)", "ROUTINE_SCHEMA", "ROUTINE_NAME"),
        ("TRIGGERS", "'trigger'", "TRIGGER_SCHEMA", "TRIGGER_NAME"),
        ("EVENTS", "'event'", "EVENT_SCHEMA", "EVENT_NAME"),
    )
)


def grant_database(database: str, wildcards: bool) -> str:
    """The database as a GRANT names it: _ and % escaped where they would be patterns, so that
    `my_db` never also grants on `myXdb`."""
    return database.replace("_", "\\_").replace("%", "\\%") if wildcards else database


def read_my_state(cursor: Any, event: Event) -> MyState:
    cursor.execute(MY_SESSION_QUERY, (event.database, MY_RECORD_DATABASE, MY_RECORD_TABLE))
    version, sql_mode, database_exists, record_table = cursor.fetchone()
    unsupported = my_version_problems(version)
    if unsupported:  # its system variables and tables differ from what the queries read
        raise InvalidEvent(unsupported)
    mariadb = "mariadb" in version.lower()
    cursor.execute(MARIADB_SERVER_QUERY if mariadb else MYSQL_SERVER_QUERY)
    (
        partial_revokes,
        read_only,
        super_read_only,
        innodb_read_only,
        password_lifetime,
        hashes_refused,
        general_log,
        binary_log,
        simple_check,
    ) = cursor.fetchone()
    wildcards = not partial_revokes
    queries = 4
    names = {n for u in event.users for n in (u.name, u.clone, u.grantor) if n} or {""}
    cursor.execute(
        MY_ACCOUNTS_QUERY.format(
            **(MARIADB_ACCOUNT_COLUMNS if mariadb else MYSQL_ACCOUNT_COLUMNS),
            record=MARIADB_NO_RECORD if mariadb else MYSQL_RECORD,
        ),
        (tuple(sorted(names)),),
    )
    accounts: dict[tuple[str, str], MyAccount] = {}
    records: dict[tuple[str, str], Record] = {}
    for user, host, superuser, role, expired, locked, attribute, plugin, tls in cursor.fetchall():
        accounts[(user, host)] = MyAccount(
            user,
            host,
            superuser=bool(superuser),
            is_role=bool(role),
            expired=bool(expired),
            locked=bool(locked),
            plugin=plugin or "",
            ssl_type=tls or "",
        )
        record = parse_record(attribute) if attribute else None
        if record:
            records[(user, host)] = record
    iam_plugin = True
    if any(u.iam for u in event.users):
        cursor.execute(MY_IAM_PLUGIN_QUERY)
        iam_plugin = bool(cursor.fetchone()[0])
        queries += 1
    if mariadb and record_table:
        cursor.execute(MARIADB_RECORDS_QUERY, (tuple(sorted(names)),))
        for user, host, text in cursor.fetchall():
            record = parse_record(text)
            if record:
                records[(user, host)] = record
        queries += 1
    by_grantee = {f"'{user}'@'{host}'": (user, host) for user, host in accounts}
    cursor.execute(MY_GRANTS_QUERY, (grant_database(event.database, wildcards),))
    grants: dict[tuple[str, str], set[str]] = defaultdict(set)
    for grantee, privilege, grantable in cursor.fetchall():
        if grantee in by_grantee:
            grants[by_grantee[grantee]].add(privilege)
            if grantable == "YES":
                grants[by_grantee[grantee]].add("GRANT OPTION")
    definers: dict[tuple[str, str], list[str]] = defaultdict(list)
    leaving = [u for u in event.users if u.dropping]
    candidates = [a for u in leaving for a in (my_user_account(u), *my_clone_accounts(u))]
    doomed = {
        f"{user}@{host}": (user, host) for user, host in candidates if (user, host) in accounts
    }
    elsewhere: dict[tuple[str, str], list[str]] = defaultdict(list)
    if doomed:
        cursor.execute(MY_DEFINERS_QUERY, {"definers": tuple(doomed)})
        for definer, kind, name in cursor.fetchall():
            definers[doomed[definer]].append(f"{kind} {name}")
        here = (event.database, grant_database(event.database, wildcards), MY_RECORD_DATABASE)
        grantees = {f"'{user}'@'{host}'": (user, host) for user, host in doomed.values()}
        cursor.execute(MY_ELSEWHERE_QUERY, {"grantees": tuple(grantees), "here": here})
        counted = Counter((grantees[grantee], database) for grantee, database in cursor.fetchall())
        for (account, database), count in sorted(counted.items()):
            elsewhere[account].append(f"database {database!r} ({count} privileges)")
        queries += 2
    recorded = {
        database
        for record in records.values()
        for database in record.databases
        if database != event.database
    }
    existing: frozenset[str] = frozenset()
    if recorded:
        cursor.execute(MY_DATABASES_QUERY, {"databases": tuple(sorted(recorded))})
        existing = frozenset(name for (name,) in cursor.fetchall())
        queries += 1
    return MyState(
        mariadb=mariadb,
        database_exists=bool(database_exists),
        backslash_escapes="NO_BACKSLASH_ESCAPES" not in sql_mode.upper(),
        wildcards=wildcards,
        accounts=accounts,
        grants={account: frozenset(held) for account, held in grants.items()},
        definers=dict(definers),
        iam_plugin=iam_plugin,
        catalog_queries=queries,
        read_only=my_read_only(read_only, super_read_only, innodb_read_only),
        password_lifetime=int(password_lifetime or 0),
        hashes_refused=bool(hashes_refused),
        general_log=bool(general_log),
        binary_log=bool(binary_log),
        password_checks=dict(
            item.lower().split("=", 1) for item in (simple_check or "").split(",") if "=" in item
        ),
        records=records,
        record_table=bool(record_table),
        elsewhere=dict(elsewhere),
        existing_databases=existing,
    )


# The oldest servers the tool reads right: MySQL 8.0 (partial_revokes, mysql.role_edges; 5.7,
# Aurora MySQL 2 and RDS's extended support of it, has neither), MariaDB 10.4 (the accounts'
# mysql.global_priv). VERSION() is "8.0.36", "5.7.12" (Aurora MySQL 2), "8.0.mysql_aurora...",
# "10.11.6-MariaDB-log"; a MariaDB greeting's "5.5.5-" prefix is skipped.
MY_OLDEST = {"mysql": (8, 0), "mariadb": (10, 4)}
MY_VERSION = re.compile(r"^(?:5\.5\.5-)?([0-9]+)\.([0-9]+)")


def my_version_problems(version: str) -> list[str]:
    mariadb = "mariadb" in version.lower()
    found = MY_VERSION.match(version)
    oldest = MY_OLDEST["mariadb" if mariadb else "mysql"]
    name = "MariaDB" if mariadb else "MySQL"
    if found and (int(found[1]), int(found[2])) >= oldest:
        return []
    why = (
        " (5.7, as Aurora MySQL 2 is, has no partial_revokes and no mysql.role_edges)"
        if found and not mariadb and (int(found[1]), int(found[2])) == (5, 7)
        else ""
    )
    return [
        f"{name} {version} is not supported: the tool manages {name} {oldest[0]}.{oldest[1]} "
        f"and later{why}. Nothing was changed; upgrade the database first"
    ]


def my_read_only(read_only: Any, super_read_only: Any, innodb_read_only: Any) -> str | None:
    """Why the server refuses writes, in words (None: it accepts them). MariaDB 11's read_only
    may also be NO_LOCK or NO_LOCK_NO_ADMIN: anything but 0/OFF is read-only."""

    def on(value: Any) -> bool:
        return str(value).upper() not in ("0", "OFF", "NONE")

    said = [
        f"{name} is on"
        for name, value in (
            ("read_only", read_only),
            ("super_read_only", super_read_only),
            ("innodb_read_only", innodb_read_only),
        )
        if on(value)
    ]
    if not said:
        return None
    return (
        f"the server is read-only ({', '.join(said)}): a read replica, an Aurora reader, or "
        "the green side of a Blue/Green deployment"
    )


def my_password_warnings(state: MyState) -> list[str]:
    warnings = []
    logs = [
        name
        for name, on in (
            ("general query log (general_log)", state.general_log),
            (
                "binary log (log_bin; on RDS, on with automated backups, and sent to replicas)",
                state.binary_log,
            ),
        )
        if on
    ]
    if state.mariadb and state.hashes_refused and logs:
        warnings.append(
            "this server refuses passwords given as a hash (a password validation plugin with "
            "strict_password_validation), so the tool sends each password it sets as it is "
            f"(IDENTIFIED BY '...'), and its {' and its '.join(logs)} record those statements "
            "with the passwords. Limit who may read them (on RDS: the log files, their "
            "CloudWatch Logs export, SHOW BINLOG EVENTS) and how long they are kept, turn the "
            "general log off, or set strict_password_validation to 0 so that the tool sends "
            "hashes again (the plugin then does not check them)"
        )
    if state.password_lifetime:
        warnings.append(
            f"default_password_lifetime is {state.password_lifetime} days on this server: "
            "passwords the tool sets expire after that, and applications cannot work until "
            "a run sets them again (each run does, for every expired one) or a rotation "
            "changes them: rotate more often than that, or set it to 0"
        )
    return warnings


def my_password_check_problems(state: MyState) -> list[str]:
    """simple_password_check's demands beyond what every password of the tool's holds: 32
    characters with at least one lowercase and one uppercase letter, one digit and one
    punctuation mark (random_passwords)."""
    assured = {"minimal_length": PASSWORD_LENGTH, "letters_same_case": 1, "digits": 1}
    assured["other_characters"] = 1
    problems = []
    for setting, most in assured.items():
        wanted = int(state.password_checks.get(f"simple_password_check_{setting}", 0) or 0)
        if wanted > most:
            problems.append(
                f"simple_password_check_{setting} is {wanted} on this server: the passwords "
                f"the tool generates hold {most} at least ({PASSWORD_LENGTH} characters, with "
                "a lowercase and an uppercase letter, a digit and a punctuation mark), so the "
                f"server could refuse them. Set it to {most} or less (its parameter group)"
            )
    return problems


def my_state_problems(event: Event, state: MyState) -> list[str]:
    """What the event asks that this server cannot give; checked before anything changes."""
    problems = my_password_check_problems(state)
    if not state.database_exists:
        problems.append(database_missing(event.database))
    staying = {u.name for u in event.users if not u.deleting} | event.refused_users
    for user in event.users:
        account = state.accounts.get(my_user_account(user))
        where = f"user {my_account_text(my_user_account(user))}"
        if account and account.superuser:
            problems.append(f"{where} has SUPER: never managed")
        if account and account.is_role:
            problems.append(f"{where} is a role, not a user: never managed")
        for login in (my_user_account(user), state.clone_account(user)):
            found = state.accounts.get(login) if login else None
            if found and found.locked and not user.deleting:
                problems.append(
                    f"{where}: account {my_account_text((found.user, found.host))} is locked "
                    "(ACCOUNT LOCK): it cannot log in, and the tool neither unlocks it nor "
                    "changes its password. If it should log in, unlock it (ALTER USER ... "
                    "ACCOUNT UNLOCK) and re-run; else delete it (action delete)"
                )
        if (
            user.grantor
            and not user.deleting  # the grantor only orders creation; a delete run again
            and user.grantor not in staying  # finds both gone, and must converge
            and not state.has_name(user.grantor)
        ):
            problems.append(f"{where}: {missing_grantor_problem(event, user)}")
        if user.iam and not state.iam_plugin:
            problems.append(
                f"{where}: auth iam needs {MY_IAM_PLUGIN}, which is not loaded on this server: "
                "turn IAM database authentication on for the DB instance or cluster "
                "(--enable-iam-database-authentication)"
            )
        clone = state.clone_account(user)
        objects = state.definers.get(my_user_account(user), [])
        objects += state.definers.get(clone, []) if clone else []
        if objects:
            problems.append(
                f"{where} cannot be deleted: it is the DEFINER of {', '.join(sorted(objects))}; "
                "change their DEFINER or drop them first"
            )
        held_by = [a for a in (my_user_account(user), clone) if a] if user.dropping else []
        for held in held_by:
            for place in state.elsewhere.get(held, []):
                problems.append(
                    f"{where} cannot be deleted: {my_account_text(held)} holds "
                    f"privileges in {place}, and DROP USER drops the account on the whole "
                    "server. Nothing was changed; revoke them there first (or keep the user)"
                )
    return problems


MARIADB_RECORDS_A_STATEMENT = 500  # rows of one INSERT: a first run of 500 users, one statement


def my_record_steps(records: list[tuple[UserSpec, Record]], state: MyState) -> list[Step]:
    """MySQL 8: ALTER USER ... ATTRIBUTE for each account (merged into its attributes: a key
    set to null is removed). MariaDB: the rows of the tool's table, written together (its
    table made first when it does not exist yet)."""
    if not records:
        return []
    if not state.mariadb:
        steps = []
        for user, record in records:
            attribute = json.dumps({MY_RECORD_ATTRIBUTE: record.document()}, ensure_ascii=False)
            statement = (
                f"ALTER USER {my_account(my_user_account(user), state)} ATTRIBUTE "
                f"{my_literal(attribute, state)}"
            )
            steps.append(Step(statement, record_summary(record), (user.name,), record=True))
        return steps
    steps = []
    if not state.record_table:
        steps += [
            Step(statement, "make the tool's table of records", (), record=True)
            for statement in MARIADB_RECORD_SETUP
        ]
    for start in range(0, len(records), MARIADB_RECORDS_A_STATEMENT):
        chunk = records[start : start + MARIADB_RECORDS_A_STATEMENT]
        rows = ", ".join(
            f"({', '.join(my_literal(part, state) for part in my_user_account(user))}, "
            f"{my_literal(json.dumps(record.document(), ensure_ascii=False), state)})"
            for user, record in chunk
        )
        statement = (
            f"INSERT INTO `{MY_RECORD_DATABASE}`.`{MY_RECORD_TABLE}` (user, host, record) "
            f"VALUES {rows} ON DUPLICATE KEY UPDATE record = VALUES(record)"
        )
        summary = record_summary(chunk[0][1]) if len(chunk) == 1 else "record their secrets"
        steps.append(Step(statement, summary, tuple(u.name for u, _ in chunk), record=True))
    return steps


def plan_mysql(event: Event, state: MyState, passwords: dict[str, str]) -> list[Step]:
    """Every statement that brings the server to the event's state, in order. `passwords`
    holds what each account that gets a password now is identified by (see my_password_clause)."""
    staying = [u for u in event.users if not u.deleting]
    leaving = [u for u in event.users if u.dropping]
    detaching = [u for u in event.users if u.deleting and not u.dropping and state.has_user(u)]
    return (
        my_account_steps(staying, state, passwords)
        + my_privilege_steps(staying + detaching, event, state)
        + my_delete_steps(leaving, state)
    )


# The database-level privileges the tool may revoke, in the order statements name them.
MY_PRIVILEGE_ORDER = {
    p: i
    for i, p in reversed(
        list(
            enumerate(
                MY_TABLE_PRIVILEGES
                + MY_DDL_PRIVILEGES
                + ("DELETE HISTORY", "SHOW CREATE ROUTINE", "GRANT OPTION")
            )
        )
    )
}


def my_account_text(account: tuple[str, str]) -> str:
    """'name'@'host' for messages (not for executing)."""
    return f"'{account[0]}'@'{account[1]}'"


def my_literal(text: str, state: MyState) -> str:
    """A string literal, escaped by PyMySQL's own function for the session's sql_mode."""
    if state.backslash_escapes:
        return "'" + pymysql.converters.escape_string(text) + "'"
    return "'" + text.replace("'", "''") + "'"


def my_identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def my_account(account: tuple[str, str], state: MyState) -> str:
    return f"{my_literal(account[0], state)}@{my_literal(account[1], state)}"


def sends_password(state: MyState) -> bool:
    """Whether the statement carries the password itself: on MySQL 8, which hashes it with
    its default plugin and rewrites the statement in its logs; on MariaDB only where the
    server refuses a hash (a password validation plugin with strict_password_validation)."""
    return not state.mariadb or state.hashes_refused


def my_password_clause(password: str, state: MyState) -> tuple[str, str]:
    """MariaDB gets the mysql_native_password hash, so the password never travels in a
    statement (unless the server refuses hashes: sends_password); MySQL 8 gets the password.
    Returns the clause and the clause as shown."""
    if not sends_password(state):
        return (
            f"IDENTIFIED BY PASSWORD {my_literal(password, state)}",
            "IDENTIFIED BY PASSWORD '***'",
        )
    return f"IDENTIFIED BY {my_literal(password, state)}", "IDENTIFIED BY '***'"


def my_wanted(user: UserSpec) -> set[str]:
    if user.deleting:
        return set()
    return set(user.privileges) | (set(MY_DDL_PRIVILEGES) if user.ddl else set())


def my_account_steps(
    users: list[UserSpec], state: MyState, passwords: dict[str, str]
) -> list[Step]:
    """CREATE USER for new users (grantors first), ALTER USER for new passwords. `passwords` is
    by login: U, or its rotation clone once the secret names the clone."""
    steps = []
    for user in grantor_order(users):
        if user.iam:
            steps += my_iam_steps(user, state)
            continue
        clone = state.clone_account(user)
        summary = "new password" if state.has_user(user) else "create user"
        method = state.other_auth(user)  # auth password: IDENTIFIED BY sets a password plugin
        logins = [(my_user_account(user), f"{summary} instead of {method}" if method else summary)]
        if clone:
            logins.append((clone, f"new password of {user.clone}"))
        for account, summary in logins:
            if account[0] not in passwords:
                continue
            if account in state.accounts and state.accounts[account].expired:
                summary = summary.replace("new password", "password set: it had expired")
            clause, shown = my_password_clause(passwords[account[0]], state)
            verb = "ALTER" if account in state.accounts else "CREATE"
            statement = f"{verb} USER {my_account(account, state)} "
            steps.append(Step(statement + clause, summary, (user.name,), shown=statement + shown))
    return steps


def my_iam_steps(user: UserSpec, state: MyState) -> list[Step]:
    """An IAM account: RDS's plugin instead of a password, and TLS required (the tokens are
    sent in the clear otherwise; AWS's IAM documentation requires TLS for these accounts)."""
    account = state.accounts.get(my_user_account(user))
    name, who = my_account(my_user_account(user), state), (user.name,)
    if account is None:
        statement = f"CREATE USER {name} {MY_IAM_CLAUSE} REQUIRE SSL"
        return [Step(statement, "create user (IAM authentication)", who)]
    if account.plugin != MY_IAM_PLUGIN:
        statement = f"ALTER USER {name} {MY_IAM_CLAUSE} REQUIRE SSL"
        return [
            Step(statement, f"IAM authentication instead of {account.plugin or 'a password'}", who)
        ]
    if account.ssl_type not in MY_TLS_REQUIRED:
        return [Step(f"ALTER USER {name} REQUIRE SSL", "require TLS (IAM authentication)", who)]
    return []


def my_privilege_steps(users: list[UserSpec], event: Event, state: MyState) -> list[Step]:
    """One GRANT or REVOKE per set of privileges, naming every account that needs it. A
    rotation clone's grants follow its user's: the AWS function copied them once, and both
    accounts must keep the same access whichever one the secret names."""
    grantees: dict[tuple[str, tuple[str, ...], bool], list[tuple]] = defaultdict(list)
    for user in users:
        want = my_wanted(user)
        clone = state.clone_account(user)
        for account, is_clone in ((my_user_account(user), False), (clone, True)):
            if account is None:
                continue
            held = state.grants.get(account, frozenset())
            extra = {p for p in held - want if p in MY_PRIVILEGE_ORDER}
            for verb, differing in (("GRANT", want - held), ("REVOKE", extra)):
                if differing:
                    privileges = tuple(sorted(differing, key=MY_PRIVILEGE_ORDER.__getitem__))
                    grantees[(verb, privileges, is_clone)].append((account, user.name))
    database = my_identifier(grant_database(event.database, state.wildcards))
    steps = []
    for (verb, privileges, is_clone), named in sorted(grantees.items()):
        direction = "TO" if verb == "GRANT" else "FROM"
        names = ", ".join(my_account(account, state) for account, _ in named)
        statement = f"{verb} {', '.join(privileges)} ON {database}.* {direction} {names}"
        summary = f"{verb.lower()} {', '.join(privileges)} on {event.database}.*"
        summary += " for the rotation clone" if is_clone else ""
        steps.append(Step(statement, summary, tuple(name for _, name in named)))
    return steps


def my_delete_steps(users: list[UserSpec], state: MyState) -> list[Step]:
    """Grantees before grantors; DROP USER takes the accounts' privileges with them."""
    steps = []
    for user in reversed(grantor_order(users)):
        present = [
            a for a in (my_user_account(user), state.clone_account(user)) if a in state.accounts
        ]
        if present:
            them = "drop user and its rotation clone" if len(present) > 1 else "drop user"
            names = ", ".join(my_account(account, state) for account in present)
            steps.append(Step(f"DROP USER {names}", them, (user.name,)))
    return steps


# ---------------------------------------------------------------------------------------------
# 12. The engines by name.
# ---------------------------------------------------------------------------------------------

POSTGRES: Dialect[PgState] = Postgres()
MYSQL: Dialect[MyState] = MySql(
    "mysql",
    "mysql",
    MYSQL_NAME_LIMIT,
    "SecretsManagerRDSMySQLRotationMultiUser",
    AWS_MYSQL_CLONE_LIMIT,
)
MARIADB: Dialect[MyState] = MySql(
    "mariadb", "mariadb", 80, "SecretsManagerRDSMariaDBRotationMultiUser"
)
DIALECTS: dict[str, Dialect[Any]] = {"postgres": POSTGRES, "mysql": MYSQL, "mariadb": MARIADB}

# What grant_privileges may name before the engine is known: any engine's table privileges.
KNOWN_PRIVILEGES = frozenset(p for d in DIALECTS.values() for p in d.table_privileges)

# The logger is set up once a process, at import (a warm Lambda keeps it). An unknown LOG_LEVEL
# must not break the import: INFO then, and run() reports it with the other settings.
log.setLevel(Settings.read(os.environ).log_level)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
