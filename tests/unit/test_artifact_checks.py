"""Pure checks on artifact versions, provenance and OCI references."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.artifacts.provenance import Provenance, image_digest
from conveyor.artifacts.versions import semver_problem
from conveyor.errors import InvalidRequest

DIGEST = "sha256:" + "ab" * 32


class TestSemver:
    @pytest.mark.parametrize("version", ["1.0.0", "2.1.0-rc.1", "0.0.1+build.5", "10.20.30-alpha.1+sha.abc"])
    def test_valid(self, version: str) -> None:
        assert semver_problem(version) is None

    @pytest.mark.parametrize(
        ("version", "words"),
        [
            ("v1.2.3", "register it as '1.2.3'"),
            ("1.2", "not a semantic version"),
            ("01.2.3", "not a semantic"),
        ],
        ids=["leading-v", "two-parts", "leading-zero"],
    )
    def test_invalid_says_the_fix(self, version: str, words: str) -> None:
        problem = semver_problem(version)
        assert problem is not None and words in problem


class TestProvenance:
    def test_a_full_record_is_valid(self) -> None:
        record = Provenance("a" * 40, "main", "https://github.com/o/r/actions/runs/1", "github-actions")
        assert record.validate() is record

    @pytest.mark.parametrize(
        ("record", "words"),
        [
            (Provenance(source_commit="main"), "not a git commit id"),
            (Provenance(source_commit="ABCDEF1"), "not a git commit id"),
            (Provenance(build_url="ftp://ci/1"), "not an http(s) URL"),
            (Provenance(build_url="runs/1"), "not an http(s) URL"),
            (Provenance(source_branch=""), "1-255 characters"),
        ],
        ids=["branch-as-commit", "uppercase-sha", "ftp-url", "relative-url", "empty-branch"],
    )
    def test_bad_fields_are_named(self, record: Provenance, words: str) -> None:
        with pytest.raises(InvalidRequest, match=words.replace("(", r"\(").replace(")", r"\)")):
            record.validate()


class TestImageReferences:
    @pytest.mark.parametrize(
        "ref",
        [
            f"registry.example.com/shop/web@{DIGEST}",
            f"registry.example.com:5000/shop/web:2.1.0@{DIGEST}",
            f"ghcr.io/org/app:v1@{DIGEST}",
            f"web@{DIGEST}",
        ],
    )
    def test_pinned_references_give_their_digest(self, ref: str) -> None:
        assert image_digest(ref) == DIGEST

    def test_a_tag_alone_is_refused_with_the_reason(self) -> None:
        with pytest.raises(InvalidRequest, match="not pinned by digest") as caught:
            image_digest("registry.example.com/shop/web:2.1.0")
        assert caught.value.hint and "tags can move" in caught.value.hint

    @pytest.mark.parametrize("ref", [f"Registry/Web@{DIGEST}", "web@sha256:abc", f"web@{DIGEST.upper()}"])
    def test_malformed_references_are_refused(self, ref: str) -> None:
        with pytest.raises(InvalidRequest):
            image_digest(ref)

    @given(
        st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9]{1,6}){0,2}(/[a-z0-9]{1,8}){1,3}", fullmatch=True),
        st.binary(min_size=32, max_size=32),
    )
    def test_any_pinned_reference_yields_exactly_its_digest(self, name: str, raw: bytes) -> None:
        digest = "sha256:" + raw.hex()
        assert image_digest(f"{name}@{digest}") == digest
