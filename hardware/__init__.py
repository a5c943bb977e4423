"""Device drivers behind small interfaces, each with a simulated twin that speaks
the real wire protocol (PN532 frames on a pty, ESC/POS to a printer emulator,
frames from image files). Imports only `protocols`."""
