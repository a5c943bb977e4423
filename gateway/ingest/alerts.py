"""What ingest raises about a terminal, in words: the alert kinds only ingest
writes (the rest are protocol reason codes), registered where the
supervision side can load them without the writer or the verifier. The
integrity rule turns each alert into a violation an inspector reads
(gateway/supervision/rules/integrity.py), so the dashboard's process must
know these texts even though it never ingests."""

from protocols import reasons

TEXTS = reasons.register({
    "seq_beyond_window": ("记录序号远超终端已确认的位置", "record seq is far beyond what the terminal has had acknowledged"),
    "quarantine_budget_exceeded": ("终端本小时的隔离配额已用完，此后只计数",
                                   "the terminal's quarantine budget for this hour is used up; "
                                   "rejects are only counted"),
    "verifier_crashed": ("校验进程处理此消息时两次退出，消息已隔离",
                         "the verifier process died twice on this message; it is quarantined"),
    "verify_failed": ("校验此消息时出错，消息已隔离", "verifying this message failed; it is quarantined"),
})
