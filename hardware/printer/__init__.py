"""ESC/POS thermal receipt printer: the codec (`escpos`: commands and a decoder),
the driver over a port URL (`driver.Printer`) and its simulated twin on a
pseudo-terminal (`emulator.PrinterEmulator`)."""

from hardware.printer.driver import Printer, PrinterError

__all__ = ["Printer", "PrinterError"]
