"""The unit of work, after-commit callbacks, lock retries and row locks (crowdfund/database.py).

What is committed is checked through a second connection, the way another process would
see it.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from crowdfund import database
from crowdfund.accounts.models import User
from crowdfund.database import after_commit, lock, retry_on_lock, unit_of_work
from crowdfund.errors import Conflict, ErrorCode
from crowdfund.extensions import db
from tests.factories import make_user
from tests.factories.accounts import password_hash, sequence


def new_user(name: str = "Someone") -> User:
    """A user added to the session (not committed)."""
    n = next(sequence)
    user = User(
        email=f"uow{n}@example.org", name=name, password_hash=password_hash(), session_token=f"uow{n}"
    )
    db.session.add(user)
    return user


def committed_names() -> list[str]:
    """The names of the users another connection sees."""
    with db.engine.connect() as other:
        return sorted(other.scalars(select(User.name)))


def set_name_elsewhere(user_id: int, name: str) -> None:
    """Change a user's name through another connection, committed."""
    with db.engine.begin() as other:
        other.execute(update(User).where(User.id == user_id).values(name=name))


class LockConflict(Exception):
    """A driver error carrying a SQLSTATE, as psycopg's errors do."""

    def __init__(self, sqlstate: str):
        super().__init__(f"SQLSTATE {sqlstate}")
        self.sqlstate = sqlstate


def operational_error(sqlstate: str) -> OperationalError:
    return OperationalError("UPDATE campaigns ...", {}, LockConflict(sqlstate))


# --- commit and rollback -------------------------------------------------------------------------
def test_a_unit_of_work_commits_once_at_the_end(app):
    with unit_of_work():
        new_user("Ada")
        db.session.flush()
        assert committed_names() == []  # flushed, not yet committed
    assert committed_names() == ["Ada"]


@pytest.mark.parametrize(
    "error",
    [Conflict("Refused.", code=ErrorCode.CONFLICT), RuntimeError("a bug")],
    ids=["typed DomainError", "untyped RuntimeError"],
)
def test_any_error_rolls_everything_back(app, error):
    kept = make_user(name="Kept")
    calls = []

    with pytest.raises(type(error)), unit_of_work():
        new_user("Lost")
        kept.name = "Changed"
        db.session.flush()
        after_commit(lambda: calls.append("ran"))
        raise error

    assert committed_names() == ["Kept"]
    assert calls == []
    assert db.session.get(User, kept.id).name == "Kept"
    # The session is usable again: the next unit of work commits normally.
    with unit_of_work():
        new_user("Next")
    assert committed_names() == ["Kept", "Next"]


# --- after-commit callbacks ----------------------------------------------------------------------
def test_callbacks_run_after_the_commit_in_the_order_registered(app):
    seen = []

    with unit_of_work():
        new_user("Ada")
        after_commit(lambda: seen.append(("first", committed_names())))
        after_commit(lambda: seen.append(("second", committed_names())))
        assert seen == []

    assert seen == [("first", ["Ada"]), ("second", ["Ada"])]


def test_callbacks_of_a_rolled_back_unit_never_run_later(app):
    seen = []
    with pytest.raises(RuntimeError), unit_of_work():
        after_commit(lambda: seen.append("from the failed unit"))
        raise RuntimeError("refused")

    with unit_of_work():
        new_user("Ada")
        after_commit(lambda: seen.append("from the good unit"))

    assert seen == ["from the good unit"]


def test_a_failing_commit_runs_no_callback(app):
    make_user(email="taken@example.org")
    seen = []
    with pytest.raises(IntegrityError), unit_of_work():
        duplicate = new_user("Duplicate")
        duplicate.email = "taken@example.org"
        after_commit(lambda: seen.append("ran"))
    assert seen == []
    assert len(committed_names()) == 1


def test_after_commit_outside_a_unit_of_work_is_refused(app):
    with pytest.raises(RuntimeError):
        after_commit(lambda: None)


# --- nesting -------------------------------------------------------------------------------------
def test_a_nested_unit_joins_the_outer_one(app):
    seen = []
    with unit_of_work():
        new_user("Outer")
        with unit_of_work():
            new_user("Inner")
            after_commit(lambda: seen.append("inner callback"))
        db.session.flush()
        assert committed_names() == []  # the inner block did not commit
        assert seen == []
    assert committed_names() == ["Inner", "Outer"]
    assert seen == ["inner callback"]


def test_an_error_in_a_nested_unit_rolls_back_the_outer_one_too(app):
    seen = []
    with pytest.raises(Conflict), unit_of_work():
        new_user("Outer")
        after_commit(lambda: seen.append("outer callback"))
        with unit_of_work():
            new_user("Inner")
            raise Conflict(code=ErrorCode.CONFLICT)
    assert committed_names() == []
    assert seen == []


# --- retry on lock conflicts ---------------------------------------------------------------------
def test_a_deadlock_victim_is_run_again_and_commits(app):
    attempts = []

    @retry_on_lock
    def use_case():
        with unit_of_work():
            new_user(f"Attempt {len(attempts) + 1}")
            attempts.append(1)
            if len(attempts) < 3:
                raise operational_error("40P01")  # deadlock_detected
        return "done"

    assert use_case() == "done"
    assert len(attempts) == 3
    assert committed_names() == ["Attempt 3"]  # the failed attempts left nothing


def test_a_serialisation_failure_is_run_again(app):
    attempts = []

    @retry_on_lock
    def use_case():
        attempts.append(1)
        if len(attempts) == 1:
            raise operational_error("40001")
        return len(attempts)

    assert use_case() == 2


@pytest.mark.parametrize(
    "error", [operational_error("42P01"), ValueError("not a lock problem"), Conflict(code=ErrorCode.CONFLICT)]
)
def test_other_errors_are_not_retried(app, error):
    attempts = []

    @retry_on_lock
    def use_case():
        attempts.append(1)
        raise error

    with pytest.raises(type(error)):
        use_case()
    assert len(attempts) == 1


def test_a_lock_conflict_that_persists_gives_up(app):
    attempts = []

    @retry_on_lock
    def use_case():
        attempts.append(1)
        raise operational_error("40P01")

    with pytest.raises(OperationalError):
        use_case()
    assert len(attempts) == database.ATTEMPTS


def test_inside_a_larger_unit_of_work_the_outer_use_case_decides(app):
    attempts = []

    @retry_on_lock
    def inner():
        attempts.append(1)
        raise operational_error("40P01")

    with pytest.raises(OperationalError), unit_of_work():
        inner()
    assert len(attempts) == 1


# --- row locks -----------------------------------------------------------------------------------
def test_lock_returns_the_row_as_it_is_now_not_the_sessions_copy(app):
    user = make_user(name="Before")
    assert db.session.get(User, user.id).name == "Before"  # a copy in the session
    set_name_elsewhere(user.id, "After")

    with unit_of_work():
        locked = lock(User, user.id)
        assert locked is user  # the same object, refreshed
        assert locked.name == "After"


def test_lock_refreshes_a_copy_read_earlier_in_the_same_transaction(app, is_postgres):
    if not is_postgres:
        pytest.skip("SQLite has one writer: no other connection can change the row meanwhile")
    user = make_user(name="Before")
    with unit_of_work():
        assert db.session.get(User, user.id).name == "Before"
        set_name_elsewhere(user.id, "After")
        assert db.session.get(User, user.id).name == "Before"  # the stale copy
        assert lock(User, user.id).name == "After"


@pytest.mark.parametrize("ident", [0, -1, 2**31, True, "1", None, 1.0])
def test_lock_gives_none_for_an_impossible_id(app, ident):
    make_user()
    with unit_of_work():
        assert lock(User, ident) is None


def test_lock_gives_none_for_a_missing_row(app):
    user = make_user()
    with unit_of_work():
        assert lock(User, user.id + 1) is None
        assert lock(User, user.id) is user
