"""One error shape for every refusal: a stable code, its Chinese and English
text from the shared catalogue (`protocols.reasons`), and a short detail, so
the dashboard shows the same words whichever route refused.

Authentication comes before any verdict on the input: FastAPI parses a JSON
body, and the app-wide `strict_query` runs, before a route's own
dependencies, so without `install` an anonymous caller would learn which
parameters and fields a route takes from a 422."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.supervision import cases
from gateway.api.security import HIDDEN_CHARACTERS
from protocols import reasons

CASE_ERRORS = {"case_not_found": 404, "case_bad_transition": 409, "case_not_your_level": 403,
               "case_bad_input": 422, "case_assignee_unknown": 404, "photo_not_image": 415, "photo_size": 413,
               "case_notes_hidden_characters": 422, "case_no_proposal": 409, "case_proposal_changed": 409,
               "case_confirm_self": 403, "case_confirm_role": 403}

reasons.register({
    "unauthenticated": ("请先登录", "log in first"),
    "malformed_request": ("请求格式错误", "malformed request"),
    "invalid_input": ("输入内容不符合要求", "invalid input"),
    "forbidden_area": ("不在您的辖区", "outside your area"),
    "forbidden_role": ("您的角色无权访问此内容", "not available to your role"),
    "not_found": ("不存在或不在您的辖区", "not found or not in your area"),
    "login_failed": ("用户名或密码错误", "wrong name or password"),
    "too_many_attempts": ("尝试次数过多，请稍后再试", "too many attempts, try again later"),
    "csrf_header_required": ("此操作需要令牌请求头", "this action needs the bearer header"),
    "export_too_large": ("记录超过一张 Excel 表的容量，请缩小筛选范围或导出 CSV",
                         "more rows than one Excel sheet holds: narrow the filters or export CSV"),
    HIDDEN_CHARACTERS: ("文字中含有不可见或改变文字方向的字符，请删除后重试",
                        "the text contains invisible or text-direction characters; remove them"),
})


class ErrorBody(BaseModel):
    code: str
    message: str
    message_en: str
    detail: str | list = ""


ERROR_RESPONSES = {status: {"model": ErrorBody, "description": text} for status, text in (
    (400, "malformed request"), (401, "not logged in, or the token expired"), (403, "outside your area or role"),
    (404, "not found or not in your area"), (409, "the case's state does not allow this"),
    (413, "body too large, or an export longer than one Excel sheet"), (415, "a photo must be JPEG or PNG"), (422, "invalid input"), (429, "too many login attempts"))}


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str = "", headers: dict | None = None):
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


def error(status: int, code: str, detail: str = "", headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "message": reasons.text(code, "zh"), "message_en": reasons.text(code, "en"),
                         "detail": detail[:300]}, status_code=status, headers=headers)


def install(app: FastAPI, anonymous) -> None:
    """`anonymous(request)`: the refusal a route that needs a user owes this
    request, if any (gateway/api/deps.py)."""

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return error(exc.status, exc.code, exc.detail, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc: StarletteHTTPException):
        code = {400: "malformed_request", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        response = error(exc.status_code, code, str(exc.detail))
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(cases.CaseError)
    async def _case_error(request, exc: cases.CaseError):
        return error(CASE_ERRORS.get(exc.code, 400), exc.code, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        refused = await run_in_threadpool(anonymous, request)
        if refused is not None:
            return error(refused.status, refused.code, refused.detail)
        errors = exc.errors()
        code = HIDDEN_CHARACTERS if errors and all(e.get("type") == HIDDEN_CHARACTERS for e in errors) \
            else "invalid_input"
        return JSONResponse({"code": code, "message": reasons.text(code, "zh"),
                             "message_en": reasons.text(code, "en"),
                             "detail": [{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", ""))[:200],
                                         "type": str(e.get("type", ""))}
                                        for e in errors[:10]]}, status_code=422)
