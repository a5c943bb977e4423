"""What the kiosk refuses, as reason codes with Chinese and English texts
(one catalogue, protocols.reasons), and the message view the page shows."""

from __future__ import annotations

from protocols import labelcode, policy, reasons

reasons.register({
    "clerk_pin_wrong": ("PIN 不正确", "Wrong PIN"),
    "clerk_locked": ("PIN 错误次数过多，请稍后再试", "Too many wrong PINs: try again later"),
    "clerk_required": ("请店员先登录", "A clerk must sign in first"),
    "subject_required": ("请先刷卡识别购买主体", "Identify the buyer first: tap the card"),
    "cart_line_missing": ("购物清单中没有这一行", "No such cart line"),
    "kiosk_busy": ("正在处理上一笔，请稍候", "Still working on the previous step"),
    "return_empty": ("还没有扫描回收的包装", "No returned containers scanned yet"),
    "return_duplicate": ("该包装已扫描", "This container was already scanned"),
    "return_code_required": ("回收包装须扫描标签上的二维码", "Scan the QR code on the returned container's label"),
    "nothing_to_void": ("没有可作废的销售", "No sale to void"),
    "buyer_changed": ("换了一张卡：购物清单保留给新的购买人，还是先为当前购买人结算？",
                      "Another card: keep the cart for the new buyer, or finish the current sale first?"),
    "buyer_choice_pending": ("请先选择：购物清单给新的购买人，还是先为当前购买人结算",
                             "Choose first: the cart for the new buyer, or finish the current sale"),
    "no_pending_buyer": ("没有待确认的新购买人", "No other buyer is waiting"),
    "no_allowed_quantity": ("这一项没有可以改成的准售数量", "No allowed quantity for this line"),
    "owner_required": ("只有店主可以改价格", "Only the shop owner can change prices"),
})


class KioskError(reasons.ReasonError):
    """A step the clerk asked for that cannot be done now; `code` says why."""


class ClerkLocked(KioskError):
    """Sign-in locked after wrong PINs; `retry_after` in whole seconds."""

    def __init__(self, seconds: float):
        self.retry_after = max(1, int(seconds + 0.999))
        super().__init__("clerk_locked", "%ds left" % self.retry_after)


def error_view(exc: Exception) -> dict:
    code = getattr(exc, "code", None) or "internal_error"
    view = {"code": code, "zh": reasons.text(code, "zh"), "en": reasons.text(code, "en"),
            "action": policy.ACTIONS.get(code) or labelcode.ACTIONS.get(code)}
    if getattr(exc, "retry_after", None):
        view["retry_after"] = exc.retry_after
    return view

