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
from fastapi.responses import Response
from pydantic import BeforeValidator

from gateway.api import queries, table_export
from gateway.api.deps import Context, context, current_user, visible_town
from gateway.api.errors import ApiError
from gateway.api.security import Ident
from gateway.store.users import User

def _iso_day(value):
    """Only YYYY-MM-DD: pydantic would also take a number as days since 1970."""
    if not (isinstance(value, str) and len(value) == 10 and value[4] == "-" and value[7] == "-"):
        raise ValueError("a day is YYYY-MM-DD")
    return value


Day = Annotated[dt.date, BeforeValidator(_iso_day)]   # a real calendar day: 2025-02-30 is refused too
Format = Literal["json", "csv", "xlsx"]
FILE_RESPONSES = {200: {"content": {"application/json": {}, table_export.MEDIA["csv"]: {},
                                    table_export.MEDIA["xlsx"]: {}}}}   # `format=csv|xlsx`


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


def _day_ms(d: dt.date, tz_minutes: int) -> int:
    midnight = dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone(dt.timedelta(minutes=tz_minutes)))
    return int(midnight.timestamp() * 1000)


def day_span(ctx: Context, day_from: dt.date | None, day_to: dt.date | None) -> Filters:
    """The span of local days `from`..`to` (both included), as a Filters."""
    start = _day_ms(day_from, ctx.tz) if day_from else None
    end = _day_ms(day_to, ctx.tz) + 86_400_000 if day_to else None
    return Filters(start, end)   # `to` before `from` is an empty span: nothing in it, not an error


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


def place_filters(day_from: Day | None = Query(None, alias="from"), day_to: Day | None = Query(None, alias="to"),
                  town: Ident | None = None, village: Ident | None = None, shop: Ident | None = None,
                  user: User = Depends(current_user), ctx: Context = Depends(context)) -> Filters:
    """The filters of a list that has no subject or violation type (terminals):
    naming one there is an unknown parameter, refused like any other."""
    return filters(day_from, day_to, town, village, shop, None, None, user, ctx)


def file_response(fmt: str, columns: list[tuple[str, str]], rows: list[dict], title: str, name: str) -> Response:
    """The list as a download; `name` without extension (ASCII), `title` the sheet's name."""
    try:
        data, media = table_export.export(fmt, columns, rows, title)
    except table_export.TooManyRows as e:
        raise ApiError(413, "export_too_large", str(e)) from None
    filename = f"{name}.{fmt}"
    return Response(data, media_type=media, headers={
        "Content-Disposition": f"attachment; filename=\"{filename}\"; filename*=UTF-8''{quote(title)}.{fmt}"})
