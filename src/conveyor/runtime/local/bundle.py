"""Bundle artifacts (`.tar.gz`): digests, and verified, safe, once-only unpacking; the agent calls it.

`unpack` copies the bundle while hashing it, compares the digest with the registered one before
anything is extracted (so the bytes checked are the bytes extracted), refuses unsafe members, extracts
into a temporary directory beside the store and renames it into place: `store_dir/sha256/<hex>/`
exists only when complete, and concurrent unpacks of one digest each finish with the same directory.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath

from conveyor.errors import InvalidRequest

DEFAULT_MAX_BYTES = 4 * 1024**3
DEFAULT_MAX_MEMBERS = 100_000
_CHUNK = 1024 * 1024
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")


class BundleError(InvalidRequest):
    """A bundle cannot be used: its digest does not match, it is corrupt, or it holds unsafe entries."""

    status = 422
    title = "Bundle refused"
    slug = "bundle-refused"


def digest_file(path: Path) -> str:
    """The `sha256:<hex>` digest of a file, read in chunks."""
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            sha.update(chunk)
    return f"sha256:{sha.hexdigest()}"


def unpacked_path(store_dir: Path, digest: str) -> Path:
    """The directory a bundle with `digest` unpacks into."""
    return store_dir / "sha256" / _hex(digest)


def unpack(
    bundle: Path,
    expected_digest: str,
    store_dir: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> Path:
    """Verify `bundle` against `expected_digest`, unpack it once, and return its directory."""
    target = unpacked_path(store_dir, expected_digest)
    if target.is_dir():
        _verify(bundle, expected_digest, digest_file(bundle))
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".tmp-{target.name[:12]}-", dir=target.parent) as scratch:
        # extract from a private copy, so the bytes verified are the bytes extracted
        copy = Path(scratch) / "bundle.tar.gz"
        _verify(bundle, expected_digest, _copy_with_digest(bundle, copy))
        staging = Path(scratch) / "tree"
        staging.mkdir()
        _extract(copy, staging, bundle, max_bytes=max_bytes, max_members=max_members)
        try:
            os.rename(staging, target)
        except OSError:
            # another unpack of the same digest finished first: its directory is identical
            if not target.is_dir():
                raise
    return target


def _verify(bundle: Path, expected: str, actual: str) -> None:
    if actual != expected:
        raise BundleError(
            f"bundle {bundle} does not match its registered digest: expected {expected}, "
            f"found {actual}; the file changed after it was registered",
            hint="do not edit registered bundles: build again and register the result as a new version",
            expected=expected,
            actual=actual,
        )


def _hex(digest: str) -> str:
    match = _DIGEST.fullmatch(digest)
    if match is None:
        raise BundleError(
            f"'{digest}' is not a bundle digest",
            hint="digests look like sha256: followed by 64 lowercase hex digits",
        )
    return match.group(1)


def _copy_with_digest(source: Path, destination: Path) -> str:
    sha = hashlib.sha256()
    with open(source, "rb") as src, open(destination, "wb") as dst:
        while chunk := src.read(_CHUNK):
            sha.update(chunk)
            dst.write(chunk)
    return f"sha256:{sha.hexdigest()}"


def _extract(archive: Path, destination: Path, bundle: Path, *, max_bytes: int, max_members: int) -> None:
    try:
        with open(archive, "rb") as raw, tarfile.open(fileobj=raw, mode="r:gz") as tar:
            members = _checked_members(tar, bundle, max_bytes=max_bytes, max_members=max_members)
            # the `data` filter re-checks every member against the files already on disk
            tar.extractall(destination, members=members, filter="data")
    except tarfile.FilterError as exc:
        raise _unsafe(bundle, str(exc)) from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise BundleError(
            f"bundle {bundle} is not a readable .tar.gz archive: {exc}",
            hint="the registered file is corrupt: build the bundle again and register it as a new version",
        ) from None


def _unsafe(bundle: Path, why: str) -> BundleError:
    return BundleError(
        f"bundle {bundle} is unsafe to unpack: {why}",
        hint="build the bundle from a plain directory (tar -czf app.tar.gz -C app .) without links that "
        "leave it, device files or absolute paths",
    )


def _checked_members(
    tar: tarfile.TarFile, bundle: Path, *, max_bytes: int, max_members: int
) -> list[tarfile.TarInfo]:
    """Every member of `tar`, or BundleError at the first unsafe one (before any is extracted)."""
    members: list[tarfile.TarInfo] = []
    files: set[str] = set()
    symlinks: set[str] = set()
    total = 0
    # iterate lazily: a bomb is refused at its header, before its data is decompressed
    for member in tar:
        members.append(member)
        if len(members) > max_members:
            raise _unsafe(bundle, f"it has more than {max_members} entries")
        name = _safe_name(member.name, bundle)
        parents = {str(parent) for parent in PurePosixPath(name).parents}
        if parents & symlinks:
            raise _unsafe(bundle, f"{member.name} would be written through a symbolic link")
        if member.ischr() or member.isblk() or member.isfifo():
            raise _unsafe(bundle, f"{member.name} is a device file or pipe")
        if member.issym():
            _check_symlink(member, name, bundle)
            symlinks.add(name)
        elif member.islnk():
            target = _safe_name(member.linkname, bundle)
            if target not in files:
                raise _unsafe(bundle, f"hard link {member.name} points outside the bundle's files")
        elif member.isfile():
            total += member.size
            if total > max_bytes:
                raise _unsafe(bundle, f"it unpacks to more than {max_bytes} bytes")
            files.add(name)
        elif not member.isdir():
            raise _unsafe(bundle, f"{member.name} has an unsupported entry type")
    return members


def _safe_name(name: str, bundle: Path) -> str:
    path = PurePosixPath(name)
    if path.is_absolute():
        raise _unsafe(bundle, f"{name} is an absolute path")
    if ".." in path.parts:
        raise _unsafe(bundle, f"{name} contains '..'")
    return str(path)


def _check_symlink(member: tarfile.TarInfo, name: str, bundle: Path) -> None:
    target = member.linkname
    if target.startswith("/"):
        raise _unsafe(bundle, f"symbolic link {member.name} points to the absolute path {target}")
    depth = len(PurePosixPath(name).parent.parts)
    for part in PurePosixPath(target).parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            raise _unsafe(bundle, f"symbolic link {member.name} points outside the bundle ({target})")
