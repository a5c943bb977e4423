"""Reader errors with stable reason codes, so a failed tap is logged and shown the
same way everywhere. A card-level rejection (unknown, tampered, ...) is
`protocols.card.CardRejected`; these are about the reader and the radio link."""

from protocols.reasons import ReasonError, register

REASONS = register({
    "pn532_timeout": ("读卡器无响应", "NFC reader did not answer in time"),
    "pn532_disconnected": ("读卡器未连接", "NFC reader disconnected"),
    "pn532_syntax_error": ("读卡器拒绝了命令", "NFC reader rejected the command (syntax error frame)"),
    "pn532_bad_frame": ("读卡器通信数据损坏", "NFC reader replies were corrupted"),
    "pn532_card_error": ("与卡通信失败", "communication with the card failed"),
    "pn532_auth_failed": ("卡片密钥认证失败", "card sector authentication failed"),
    "pn532_no_card": ("未检测到卡", "no card in the field"),
})


class ReaderError(ReasonError):
    """Anything that went wrong between the host and the card."""


class ReaderTimeout(ReaderError):
    def __init__(self, detail=""):
        ReaderError.__init__(self, "pn532_timeout", detail)


class ReaderDisconnected(ReaderError):
    def __init__(self, detail=""):
        ReaderError.__init__(self, "pn532_disconnected", detail)


class CardError(ReaderError):
    """The PN532 answered but the card exchange failed; `status` is the PN532 status byte."""

    def __init__(self, status, detail="", code="pn532_card_error"):
        ReaderError.__init__(self, code, detail)
        self.status = status


class NoCard(ReaderError):
    def __init__(self, detail=""):
        ReaderError.__init__(self, "pn532_no_card", detail)
