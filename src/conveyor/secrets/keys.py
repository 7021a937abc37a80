"""Where the server finds its master keys: `CONVEYOR_MASTER_KEY`, else `.conveyor/master.key` (0600).

Both hold one base64 key per line (or comma-separated in the variable), the current key first;
older keys after it still open data keys wrapped under them until `conveyor secret rewrap` runs.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from conveyor.credentials import write_private
from conveyor.errors import InvalidRequest
from conveyor.secrets.crypto import Keyring, MasterKey, MasterKeyError

ENV_VAR = "CONVEYOR_MASTER_KEY"


def key_file(home: Path) -> Path:
    return home / "master.key"


def _parse_all(text: str, where: str) -> Keyring:
    parts = [p for p in text.replace(",", "\n").split() if p.strip()]
    if not parts:
        raise InvalidRequest(f"{where} holds no master key", hint=_HINT)
    try:
        return Keyring(tuple(MasterKey.parse(p) for p in parts))
    except MasterKeyError as exc:
        raise InvalidRequest(f"{where}: {exc}", hint=_HINT) from None


_HINT = (
    "a master key is 32 random bytes in URL-safe base64; `conveyor secret keygen` prints a new one "
    "(keep it safe: without it no secret can be read)"
)


def load_keyring(home: Path, *, create: bool = False) -> Keyring:
    """The master keys: from CONVEYOR_MASTER_KEY, else the key file (created when `create`)."""
    if os.environ.get(ENV_VAR, "").strip():
        return _parse_all(os.environ[ENV_VAR], ENV_VAR)
    path = key_file(home)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if not create:
            raise InvalidRequest(
                f"no master key: {ENV_VAR} is not set and {path} does not exist",
                hint=f"start the server once with `conveyor up` (it creates {path.name}) or set {ENV_VAR}",
            ) from None
        key = MasterKey.generate()
        write_private(path, key.encoded() + "\n")
        return Keyring((key,))
    if stat.S_IMODE(mode) & 0o077:
        raise InvalidRequest(
            f"{path} can be read by other users (mode {stat.S_IMODE(mode):03o})",
            hint=f"run `chmod 600 {path}`",
        )
    return _parse_all(path.read_text(), str(path))


def save_keyring(home: Path, keyring: Keyring) -> None:
    """Write the keyring to the key file (0600), current key first."""
    write_private(key_file(home), "".join(k.encoded() + "\n" for k in keyring.keys))
