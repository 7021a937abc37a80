"""Bundles: digests, verification before extraction, refusal of unsafe members, once-only unpacking."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import threading
from pathlib import Path

import pytest

from conveyor.runtime.local.bundle import BundleError, digest_file, unpack, unpacked_path

APP = b"print('hello')\n"


def _file(name: str, data: bytes = APP, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    return info, data


def _entry(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, b""


def _bundle(path: Path, *entries: tuple[tarfile.TarInfo, bytes]) -> str:
    """Write a .tar.gz holding `entries`; returns its digest."""
    with tarfile.open(path, "w:gz") as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def _leftovers(store: Path) -> list[Path]:
    return [p for p in store.rglob("*") if p.name != "sha256"]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


class TestDigest:
    def test_digest_is_sha256_of_the_whole_file(self, tmp_path: Path) -> None:
        path = tmp_path / "big.bin"
        data = os.urandom(3 * 1024 * 1024 + 17)  # spans several read chunks
        path.write_bytes(data)
        assert digest_file(path) == "sha256:" + hashlib.sha256(data).hexdigest()


class TestUnpack:
    def test_unpacks_into_a_content_addressed_directory(self, tmp_path: Path, store: Path) -> None:
        bundle = tmp_path / "app.tar.gz"
        digest = _bundle(bundle, _entry("bin", tarfile.DIRTYPE), _file("bin/app.py", mode=0o755))
        path = unpack(bundle, digest, store)
        assert path == store / "sha256" / digest.removeprefix("sha256:") == unpacked_path(store, digest)
        assert (path / "bin" / "app.py").read_bytes() == APP
        assert os.access(path / "bin" / "app.py", os.X_OK)
        assert _leftovers(store) == [path, path / "bin", path / "bin" / "app.py"]

    def test_an_unpacked_directory_is_reused(self, tmp_path: Path, store: Path) -> None:
        bundle = tmp_path / "app.tar.gz"
        digest = _bundle(bundle, _file("app.py"))
        first = unpack(bundle, digest, store)
        (first / "marker").write_text("kept")
        assert unpack(bundle, digest, store) == first
        assert (first / "marker").read_text() == "kept"

    def test_relative_links_inside_the_bundle_are_kept(self, tmp_path: Path, store: Path) -> None:
        bundle = tmp_path / "app.tar.gz"
        digest = _bundle(
            bundle,
            _entry("lib", tarfile.DIRTYPE),
            _file("lib/real.py"),
            _entry("lib/alias.py", tarfile.SYMTYPE, "real.py"),
            _entry("current", tarfile.SYMTYPE, "lib/../lib"),
            _entry("copy.py", tarfile.LNKTYPE, "lib/real.py"),
        )
        path = unpack(bundle, digest, store)
        assert (path / "lib" / "alias.py").read_bytes() == APP
        assert (path / "copy.py").read_bytes() == APP
        assert os.readlink(path / "current") == "lib/../lib"

    def test_concurrent_unpacks_of_one_digest_agree(self, tmp_path: Path, store: Path) -> None:
        bundle = tmp_path / "app.tar.gz"
        digest = _bundle(bundle, *[_file(f"m{n}.py", os.urandom(20_000)) for n in range(30)])
        results: list[Path] = []
        errors: list[BaseException] = []
        barrier = threading.Barrier(8)

        def work() -> None:
            barrier.wait()
            try:
                results.append(unpack(bundle, digest, store))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(set(results)) == 1
        assert sorted(p.name for p in (store / "sha256").iterdir()) == [digest.removeprefix("sha256:")]
        assert len(list(results[0].iterdir())) == 30


class TestRefusals:
    def test_a_changed_file_is_refused_before_extraction(self, tmp_path: Path, store: Path) -> None:
        bundle = tmp_path / "app.tar.gz"
        digest = _bundle(bundle, _file("app.py"))
        bundle.write_bytes(bundle.read_bytes() + b"\0")
        with pytest.raises(BundleError) as caught:
            unpack(bundle, digest, store)
        error = caught.value
        assert f"expected {digest}" in error.detail
        assert f"found {digest_file(bundle)}" in error.detail
        assert "changed after it was registered" in error.detail
        assert error.hint is not None and "new version" in error.hint
        assert error.to_problem()["status"] == 422
        assert _leftovers(store) == []

    def test_a_changed_file_is_refused_even_when_already_unpacked(self, tmp_path: Path, store: Path) -> None:
        bundle = tmp_path / "app.tar.gz"
        digest = _bundle(bundle, _file("app.py"))
        unpack(bundle, digest, store)
        _bundle(bundle, _file("app.py", b"print('changed')\n"))
        with pytest.raises(BundleError, match="changed after it was registered"):
            unpack(bundle, digest, store)

    @pytest.mark.parametrize("digest", ["abc", "sha256:XYZ", "md5:" + "0" * 32, "sha256:" + "0" * 63])
    def test_a_malformed_digest_is_refused(self, tmp_path: Path, store: Path, digest: str) -> None:
        bundle = tmp_path / "app.tar.gz"
        _bundle(bundle, _file("app.py"))
        with pytest.raises(BundleError, match="is not a bundle digest"):
            unpack(bundle, digest, store)

    def test_a_missing_bundle_raises_file_not_found(self, tmp_path: Path, store: Path) -> None:
        with pytest.raises(FileNotFoundError):
            unpack(tmp_path / "gone.tar.gz", "sha256:" + "0" * 64, store)

    @pytest.mark.parametrize(
        ("entries", "message"),
        [
            ([_file("/etc/cron.d/evil")], "absolute path"),
            ([_file("../evil.py")], "contains '..'"),
            ([_file("app/../../evil.py")], "contains '..'"),
            ([_entry("out", tarfile.SYMTYPE, "/etc/passwd")], "absolute path /etc/passwd"),
            (
                [_entry("lib", tarfile.DIRTYPE), _entry("lib/up", tarfile.SYMTYPE, "../../x")],
                "points outside",
            ),
            ([_entry("dot", tarfile.SYMTYPE, "."), _file("dot/x.py")], "through a symbolic link"),
            ([_entry("pw", tarfile.LNKTYPE, "/etc/passwd")], "absolute path"),
            ([_entry("pw", tarfile.LNKTYPE, "../outside")], "contains '..'"),
            ([_entry("pw", tarfile.LNKTYPE, "not-in-bundle")], "hard link pw points outside"),
            ([_entry("null", tarfile.CHRTYPE)], "device file"),
            ([_entry("disk", tarfile.BLKTYPE)], "device file"),
            ([_entry("pipe", tarfile.FIFOTYPE)], "device file or pipe"),
        ],
        ids=[
            "absolute-path",
            "dotdot",
            "nested-dotdot",
            "symlink-absolute",
            "symlink-escapes",
            "write-through-symlink",
            "hardlink-absolute",
            "hardlink-dotdot",
            "hardlink-unknown-target",
            "char-device",
            "block-device",
            "fifo",
        ],
    )
    def test_unsafe_members_are_refused_and_nothing_is_left(
        self, tmp_path: Path, store: Path, entries: list[tuple[tarfile.TarInfo, bytes]], message: str
    ) -> None:
        bundle = tmp_path / "app.tar.gz"
        digest = _bundle(bundle, _file("ok.py"), *entries)
        with pytest.raises(BundleError, match="unsafe to unpack") as caught:
            unpack(bundle, digest, store)
        assert message in caught.value.detail
        assert _leftovers(store) == []

    def test_an_absurd_declared_size_is_refused_at_its_header(self, tmp_path: Path, store: Path) -> None:
        bundle = tmp_path / "bomb.tar.gz"
        big = tarfile.TarInfo("huge.bin")
        big.size = 128 * 1024**2
        # a small gzip bomb: 128 MiB of zeros compresses to about 128 KiB
        with tarfile.open(bundle, "w:gz") as tar:
            tar.addfile(big, _Zeros(big.size))
        digest = digest_file(bundle)
        with pytest.raises(BundleError, match="more than 1048576 bytes"):
            unpack(bundle, digest, store, max_bytes=1024 * 1024)
        assert _leftovers(store) == []

    def test_too_many_entries_are_refused(self, tmp_path: Path, store: Path) -> None:
        bundle = tmp_path / "many.tar.gz"
        digest = _bundle(bundle, *[_file(f"f{n}") for n in range(11)])
        with pytest.raises(BundleError, match="more than 10 entries"):
            unpack(bundle, digest, store, max_members=10)

    @pytest.mark.parametrize(
        "content",
        [b"this is not an archive", b"\x1f\x8b\x08\x00" + b"\0" * 40],
        ids=["not-gzip", "broken-gzip"],
    )
    def test_a_corrupt_archive_says_so(self, tmp_path: Path, store: Path, content: bytes) -> None:
        bundle = tmp_path / "corrupt.tar.gz"
        bundle.write_bytes(content)
        with pytest.raises(BundleError, match=r"not a readable \.tar\.gz archive"):
            unpack(bundle, digest_file(bundle), store)
        assert _leftovers(store) == []

    def test_a_truncated_archive_says_so_and_leaves_nothing(self, tmp_path: Path, store: Path) -> None:
        bundle = tmp_path / "cut.tar.gz"
        _bundle(bundle, *[_file(f"m{n}.py", os.urandom(50_000)) for n in range(4)])
        bundle.write_bytes(bundle.read_bytes()[:120_000])
        with pytest.raises(BundleError, match=r"not a readable \.tar\.gz archive"):
            unpack(bundle, digest_file(bundle), store)
        assert _leftovers(store) == []


class _Zeros(io.RawIOBase):
    """A readable stream of `size` zero bytes that never holds them all in memory."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count
