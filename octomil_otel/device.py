"""The stable device id: 12 hex characters from the hostname and the primary MAC address."""

from __future__ import annotations

import hashlib
import re
import socket
import uuid

from octomil_otel.export.events import DEVICE_ID_PATTERN

_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)
_MULTICAST_BIT = 1 << 40


def device_id() -> str:
    """The same value on every start of this machine, with no file to keep.

    ``uuid.getnode()`` falls back to a random number (multicast bit set) when it finds no
    MAC address; a random part would change the id at every start, so it is left out then
    and ``/etc/machine-id`` stands in when there is one.
    """
    node = uuid.getnode()
    machine = f"{node:012x}" if not node & _MULTICAST_BIT else _machine_id()
    digest = hashlib.sha256(f"{socket.gethostname()}|{machine}".encode()).hexdigest()
    return digest[:12]


def validate_device_id(value: object) -> str:
    if not isinstance(value, str) or not _DEVICE_ID.match(value):
        raise ValueError(f"device_id must be 12 lowercase hex characters, got {value!r}")
    return value


def _machine_id() -> str:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            with open(path, encoding="ascii") as f:
                return f.read().strip()
        except OSError:
            continue
    return ""
