"""`ussl` for micropython-lib's umqtt.simple 1.3.4 (the version on PyPI), which
imports that name for mqtts://: MicroPython 1.22 and later only have `ssl`."""

from ssl import *  # noqa: F401,F403
from ssl import wrap_socket  # noqa: F401
