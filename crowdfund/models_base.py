"""Small pieces shared by every package's models: UTC datetimes, enum columns, state machines."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import DateTime, Enum, TypeDecorator

from crowdfund.errors import Conflict, ErrorCode


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on both SQLite and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def enum_column(enum_cls: type[enum.Enum], name: str) -> Enum:
    """A string-valued enum column (VARCHAR + CHECK), stored by value, portable."""
    return Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class InvalidTransition(Conflict):
    """A move between states that the model's table of allowed moves does not list."""

    code = ErrorCode.INVALID_TRANSITION

    def __init__(self, model: str, current: enum.Enum, target: enum.Enum):
        super().__init__(
            f"A {_label(current)} {model} cannot become {_label(target)}.",
            params={"model": model, "current": current.value, "target": target.value},
        )
        self.current = current
        self.target = target


def _label(state: enum.Enum) -> str:
    return str(getattr(state, "label", state.value)).replace("_", " ").lower()


class StateMachine:
    """A model with a `state` column and a table of the moves allowed between states.

    Subclasses set `TRANSITIONS = {state: frozenset(next states)}` (every state a key)
    and may override `on_transition(target, now)` to stamp times. `transition_to`
    refuses any move not in the table with `InvalidTransition`; staying in the same
    state is allowed only where `ALLOW_SAME_STATE` is true.
    """

    TRANSITIONS: ClassVar[dict[Any, frozenset[Any]]] = {}
    ALLOW_SAME_STATE: ClassVar[bool] = False
    #: How the model is called in messages ("campaign", "pledge", "payment").
    STATE_MODEL_NAME: ClassVar[str] = "record"

    state: Any

    @classmethod
    def allowed_moves(cls, current: Any) -> frozenset[Any]:
        return cls.TRANSITIONS.get(current, frozenset())

    def can_transition_to(self, target: Any) -> bool:
        if target is self.state and self.ALLOW_SAME_STATE:
            return True
        return target in self.allowed_moves(self.state)

    @property
    def is_final(self) -> bool:
        return not self.allowed_moves(self.state)

    def transition_to(self, target: Any, now: datetime | None = None) -> None:
        if target is self.state and self.ALLOW_SAME_STATE:
            return
        if target not in self.allowed_moves(self.state):
            raise InvalidTransition(self.STATE_MODEL_NAME, self.state, target)
        self.state = target
        self.on_transition(target, now or utcnow())

    def on_transition(self, target: Any, now: datetime) -> None:
        """Hook for a subclass: stamp the time of the move, and so on."""
