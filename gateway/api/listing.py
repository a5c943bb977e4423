"""What every list on the desk shares (issue 18, item 8): one set of filters
(date range, town, village, shop, subject, violation type), checked like every
other query parameter, and the same list as a file (`format=csv|xlsx`).

A filter is a query parameter the page also keeps in its address, so a
filtered view can be shared as a link. Dates are the district's calendar days
(`from`, `to`, both included), turned into the millisecond span of those days
in the district's zone. An area or shop outside the caller's is refused (403),
never answered with an empty list that would read as "nothing there". An
export runs the list's own query with the list's filters and the caller's
scope, so a file never holds more than the screen could show."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import Depends, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import StringConstraints

from gateway.api import queries, table_export
from gateway.api.deps import Context, context, current_user, visible_town
from gateway.api.errors import ApiError
from gateway.api.security import Ident
from gateway.store.users import User

Day = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}-\d{2}$")]
Format = Literal["json", "csv", "xlsx"]
EXPORT_MAX = 10_000   # rows in one file: a season of a district's findings; more is a database dump, not a list


@dataclass(frozen=True)
class Filters:
    start: int | None = None    # ms, included
    end: int | None = None      # ms, excluded
    town: str | None = None
    village: str | None = None
    shop: str | None = None
    subject: str | None = None
    code: str | None = None

    def span(self, column: str) -> dict:
        """{SQL condition: value} for a time column."""
        out = {}
        if self.start is not None:
            out[f"{column} >= ?"] = self.start
        if self.end is not None:
            out[f"{column} < ?"] = self.end
        return out


def _day_ms(day: str, tz_minutes: int, name: str) -> int:
    try:
        d = dt.date.fromisoformat(day)
    except ValueError:
        raise RequestValidationError([{"type": "date_from_datetime_parsing", "loc": ("query", name),
                                       "msg": "not a calendar day (YYYY-MM-DD)"}]) from None
    midnight = dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone(dt.timedelta(minutes=tz_minutes)))
    return int(midnight.timestamp() * 1000)


def day_span(ctx: Context, day_from: str | None, day_to: str | None) -> Filters:
    """The span of local days `from`..`to` (both included), as a Filters."""
    start = _day_ms(day_from, ctx.tz, "from") if day_from else None
    end = _day_ms(day_to, ctx.tz, "to") + 86_400_000 if day_to else None
    if start is not None and end is not None and start >= end:
        raise RequestValidationError([{"type": "value_error", "loc": ("query", "to"), "msg": "`to` before `from`"}])
    return Filters(start, end)


def filters(day_from: Day | None = Query(None, alias="from"), day_to: Day | None = Query(None, alias="to"),
            town: Ident | None = None, village: Ident | None = None, shop: Ident | None = None,
            subject: Ident | None = None, code: Ident | None = None,
            user: User = Depends(current_user), ctx: Context = Depends(context)) -> Filters:
    span = day_span(ctx, day_from, day_to)
    visible_town(ctx, user, town)
    visible_town(ctx, user, village)
    if shop:
        row = queries.shop(ctx.db.conn(), shop)
        if row is None or not user.scope().covers(row):
            raise ApiError(403, "forbidden_area", shop)
    return Filters(span.start, span.end, town, village, shop, subject, code)


def file_response(fmt: str, columns: list[tuple[str, str]], rows: list[dict], title: str, name: str) -> Response:
    """The list as a download; `name` without extension (ASCII), `title` the sheet's name."""
    data, media = table_export.export(fmt, columns, rows, title)
    filename = f"{name}.{fmt}"
    return Response(data, media_type=media, headers={
        "Content-Disposition": f"attachment; filename=\"{filename}\"; filename*=UTF-8''{quote(title)}.{fmt}"})
