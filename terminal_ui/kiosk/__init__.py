"""The counter session behind the clerk's kiosk UI: one `Kiosk` object that the
UI's routes talk to, built from one module per part of the counter's work
(terminal_ui/kiosk/session.py says which, and why they share one object)."""

from terminal_ui.kiosk.session import Kiosk

__all__ = ["Kiosk"]
