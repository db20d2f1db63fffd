"""Listing people: filters on single fields and the orders a page can come in.

Text is compared folded: ``lower()`` of both sides, then byte for byte (code points), the
same on SQLite, PostgreSQL and MySQL/MariaDB. The databases' own collations disagree (MySQL's
default one also folds accents, so "e" would find "é"; PostgreSQL's follows the server's
locale), and a filter that answered differently by backend could not be trusted, nor tested
against a plain Python answer. SQLite's ``lower()`` folds ASCII only, so the engine replaces
it with Python's (:mod:`orchestrator.db.engine`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from sqlalchemy import ColumnElement, Text, cast, func, or_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import String
from sqlmodel import col

from orchestrator.db.tables import Person

PeopleSort = Literal["id", "-id", "name", "-name", "age", "-age", "created_at", "-created_at"]
SORTS: tuple[str, ...] = get_args(PeopleSort)


@dataclass(frozen=True)
class PeopleQuery:
    """What a listing asks for besides ``q``: each filter on its own field, all combined with AND.

    ``name`` and ``address`` match when they contain the text, ``gender`` when it is the text,
    all regardless of case; ``age_min`` and ``age_max`` bound the age, both inclusive (a
    person without an age is left out once either is given). Blank texts filter nothing.
    """

    name: str | None = None
    gender: str | None = None
    address: str | None = None
    age_min: int | None = None
    age_max: int | None = None
    sort: PeopleSort = "id"


class folded(FunctionElement[str]):  # lower case: a SQL function, named as SQLAlchemy's are
    """``lower(x)`` compared and ordered by code point on every database."""

    type = String()
    inherit_cache = True
    name = "folded"


@compiles(folded)
def _folded(element: folded, compiler: SQLCompiler, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"  # SQLite: BINARY already


@compiles(folded, "postgresql")
def _folded_postgresql(element: folded, compiler: SQLCompiler, **kw: Any) -> str:
    return f'lower({compiler.process(element.clauses, **kw)}) COLLATE "C"'


@compiles(folded, "mysql")
@compiles(folded, "mariadb")
def _folded_mysql(element: folded, compiler: SQLCompiler, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)}) COLLATE utf8mb4_bin"


def free_text(q: str) -> ColumnElement[bool]:
    """Case-insensitive substring of the name, the external id, the typed fields or the attributes' JSON.

    The same SQL on the three databases: ``lower(x) LIKE '%q%' ESCAPE '/'``, with ``%``, ``_``
    and ``/`` in ``q`` escaped by SQLAlchemy (autoescape). Its escape character is ``/``, not a
    backslash, which MySQL would also read as an escape in string literals. JSON is cast to
    text, so keys match as well as values (searching "city" finds everyone with a city), a
    price paid for portability. The typed fields are searched too, since revision 0003 moved
    them out of the attributes where ``q`` used to find them.
    """
    columns: list[Any] = [
        col(Person.name),
        col(Person.external_id),
        col(Person.gender),
        col(Person.address),
        cast(col(Person.age), Text),
        cast(col(Person.attributes), Text),
    ]
    return or_(*(func.lower(column).contains(q.lower(), autoescape=True) for column in columns))


def _text(value: str | None) -> str | None:
    return value.strip() if value and value.strip() else None


def where_and_order(query: PeopleQuery) -> tuple[list[ColumnElement[bool]], list[Any]]:
    """The WHERE conditions and the ORDER BY of a listing.

    Every order ends with the id, in the order's direction, so pages never overlap or skip
    a person whatever the ties; people without an age come last either way.
    """
    conditions: list[ColumnElement[bool]] = []
    name, gender, address = _text(query.name), _text(query.gender), _text(query.address)
    if name is not None:
        conditions.append(folded(col(Person.name)).contains(name.lower(), autoescape=True))
    if address is not None:
        conditions.append(folded(col(Person.address)).contains(address.lower(), autoescape=True))
    if gender is not None:
        conditions.append(folded(col(Person.gender)) == func.lower(gender))
    if query.age_min is not None:
        conditions.append(col(Person.age) >= query.age_min)
    if query.age_max is not None:
        conditions.append(col(Person.age) <= query.age_max)

    descending = query.sort.startswith("-")
    field = query.sort.lstrip("-")
    person_id = col(Person.id)

    def direction(column: Any) -> Any:
        return column.desc() if descending else column.asc()

    if field == "id":
        return conditions, [direction(person_id)]
    if field == "name":
        return conditions, [direction(folded(col(Person.name))), direction(person_id)]
    if field == "age":
        age = col(Person.age)
        return conditions, [age.is_(None), direction(age), direction(person_id)]
    return conditions, [direction(col(Person.created_at)), direction(person_id)]
