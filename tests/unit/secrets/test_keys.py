"""Where master keys come from: the variable first, else a 0600 file made on first start."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from conveyor.errors import InvalidRequest
from conveyor.secrets.crypto import MasterKey
from conveyor.secrets.keys import load_keyring, save_keyring


def test_a_new_home_gets_a_private_key_file_that_is_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONVEYOR_MASTER_KEY", raising=False)
    with pytest.raises(InvalidRequest, match="no master key"):
        load_keyring(tmp_path)
    made = load_keyring(tmp_path, create=True)
    assert stat.S_IMODE((tmp_path / "master.key").stat().st_mode) == 0o600
    assert load_keyring(tmp_path) == made


def test_a_key_file_others_can_read_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVEYOR_MASTER_KEY", raising=False)
    load_keyring(tmp_path, create=True)
    (tmp_path / "master.key").chmod(0o644)
    with pytest.raises(InvalidRequest, match="can be read by other users") as caught:
        load_keyring(tmp_path)
    assert caught.value.hint == f"run `chmod 600 {tmp_path / 'master.key'}`"


def test_the_variable_wins_and_lists_the_current_key_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    new, old = MasterKey.generate(), MasterKey.generate()
    save_keyring(tmp_path, load_keyring(tmp_path, create=True))
    monkeypatch.setenv("CONVEYOR_MASTER_KEY", f"{new.encoded()}, {old.encoded()}")
    ring = load_keyring(tmp_path)
    assert ring.keys == (new, old) and ring.current == new


@pytest.mark.parametrize("value", ["nope", "abc,def", ","])
def test_a_malformed_variable_names_itself_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CONVEYOR_MASTER_KEY", value)
    with pytest.raises(InvalidRequest) as caught:
        load_keyring(tmp_path)
    assert "CONVEYOR_MASTER_KEY" in caught.value.detail and "conveyor secret keygen" in (
        caught.value.hint or ""
    )
