"""Pure checks on what CI says about a build: source commit, branch, build URL, OCI reference."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlparse

from conveyor.errors import InvalidRequest

_COMMIT = re.compile(r"^[0-9a-f]{7,64}$")
# registry/path/name[:tag]@sha256:<64 hex>  (the digest is required: tags move, digests do not)
_IMAGE = re.compile(
    r"^(?P<name>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+"
    r"|[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"@(?P<digest>sha256:[0-9a-f]{64})$"
)


@dataclass(frozen=True)
class Provenance:
    """Where a build came from; every field optional, all validated."""

    source_commit: str | None = None
    source_branch: str | None = None
    build_url: str | None = None
    builder: str | None = None

    def validate(self) -> Provenance:
        """Return self, or raise InvalidRequest naming the bad field and the fix."""
        if self.source_commit is not None and not _COMMIT.match(self.source_commit):
            raise InvalidRequest(
                f"commit '{self.source_commit}' is not a git commit id",
                hint="pass the full or abbreviated hexadecimal SHA, e.g. --commit $(git rev-parse HEAD)",
            )
        if self.source_branch is not None and not (0 < len(self.source_branch) <= 255):
            raise InvalidRequest("the branch name must be 1-255 characters")
        if self.build_url is not None:
            url = urlparse(self.build_url)
            if url.scheme not in ("http", "https") or not url.netloc:
                raise InvalidRequest(
                    f"build URL '{self.build_url}' is not an http(s) URL",
                    hint="pass the CI run's page, e.g. https://github.com/org/repo/actions/runs/123",
                )
        if self.builder is not None and not (0 < len(self.builder) <= 255):
            raise InvalidRequest("the builder must be 1-255 characters")
        return self


def image_digest(reference: str) -> str:
    """The `sha256:…` digest of an OCI image reference, which must be pinned by digest."""
    match = _IMAGE.match(reference)
    if match:
        return match.group("digest")
    if "@sha256:" not in reference:
        raise InvalidRequest(
            f"image '{reference}' is not pinned by digest",
            hint="tags can move; register registry/app@sha256:<64 hex> (docker inspect --format "
            "'{{index .RepoDigests 0}}' prints it)",
        )
    raise InvalidRequest(
        f"'{reference}' is not a valid OCI image reference",
        hint="use lowercase registry/path/name[:tag]@sha256:<64 hex digits>",
    )
