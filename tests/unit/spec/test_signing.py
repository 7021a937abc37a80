"""The `signing:` block, `promotion.require_signature` and the tests gate in conveyor.yaml."""

from __future__ import annotations

import textwrap

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key

from conveyor.spec import Spec
from conveyor.spec.gates import ScanGate, TestsGate
from conveyor.spec.signing import KEY_HINT
from tests.unit.spec.helpers import MINIMAL, load, one_problem, problems, with_environment

_KEY = Ed25519PrivateKey.generate().public_key()
RAW = _KEY.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
PEM = _KEY.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
SSH = _KEY.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
B64 = __import__("base64").b64encode(RAW).decode()


def _signing(value: str, name: str = "ci") -> str:
    return MINIMAL + f"signing:\n  trusted_keys:\n    {name}: {value}\n"


def _pem_block(pem: str) -> str:
    return "|\n" + textwrap.indent(pem, "      ")


class TestTrustedKeys:
    @pytest.mark.parametrize("spelling", ["base64", "pem", "openssh"])
    def test_every_spelling_means_the_same_key(self, spelling: str) -> None:
        value = {"base64": B64, "pem": _pem_block(PEM), "openssh": f"'{SSH}'"}[spelling]
        spec = load(_signing(value))
        assert spec.signing.trusted_keys == {"ci": B64}
        assert spec.to_document()["signing"] == {"trusted_keys": {"ci": B64}}

    def test_no_signing_block_trusts_no_key(self) -> None:
        assert load(MINIMAL).signing.trusted_keys == {}

    @pytest.mark.parametrize(
        ("value", "words"),
        [
            ("not-a-key", "it is neither a PEM block nor base64"),
            ("MCowBQYDK2VwAyEA", "it decodes to 12 bytes; an Ed25519 public key has 32"),
            (
                _pem_block("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
                "the PEM block cannot be read",
            ),
            ("'ssh-ed25519 AAAA'", "the OpenSSH line cannot be read"),
        ],
        ids=["text", "short-base64", "broken-pem", "broken-openssh"],
    )
    def test_an_invalid_key_is_named_at_its_line_with_the_fix(self, value: str, words: str) -> None:
        problem = one_problem(_signing(value))
        assert problem.path == "signing.trusted_keys.ci"
        assert (problem.line, problem.column) == (9, 9)
        assert problem.message.startswith(f"not an Ed25519 public key: {words}")
        assert problem.hint == KEY_HINT

    def test_an_rsa_key_is_refused_by_kind(self) -> None:
        rsa = generate_private_key(public_exponent=65537, key_size=2048).public_key()
        pem = rsa.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        problem = one_problem(_signing(_pem_block(pem.decode())))
        assert (
            problem.message == "not an Ed25519 public key: the PEM block holds a key of type RSA, not Ed25519"
        )

    def test_a_private_key_is_refused_without_echoing_it(self) -> None:
        private = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        problem = one_problem(_signing(_pem_block(private.decode())))
        assert "this is a private key" in problem.message
        body = private.decode().splitlines()[1]
        assert body not in problem.render() and "PRIVATE KEY-----" not in problem.render()

    def test_key_names_follow_the_name_rule(self) -> None:
        problem = one_problem(_signing(B64, name="CI_Key"))
        assert problem.message == "'CI_Key' is not a valid key name"


class TestRequireSignature:
    def test_requiring_a_signature_needs_a_trusted_key(self) -> None:
        problem = one_problem(with_environment("promotion: {require_signature: true}"))
        assert problem.path == "environments.production.promotion.require_signature"
        assert problem.line == 7
        assert problem.message == (
            "environment 'production' requires signed artifacts, but signing.trusted_keys lists no key"
        )
        assert problem.hint and "conveyor artifact keygen" in problem.hint

    def test_with_a_trusted_key_it_is_valid(self) -> None:
        text = (
            with_environment("promotion: {require_signature: true}")
            + f"signing:\n  trusted_keys: {{ci: {B64}}}\n"
        )
        spec: Spec = load(text)
        assert spec.environments["production"].promotion.require_signature is True
        assert spec.environments["development"].promotion.require_signature is False


class TestReportGates:
    def test_a_tests_gate_names_its_reports(self) -> None:
        spec = load(with_environment("promotion: {gates: [{type: tests, reports: [unit, integration]}]}"))
        [gate] = spec.environments["production"].promotion.gates
        assert isinstance(gate, TestsGate)
        assert (gate.name, gate.reports) == ("tests", ["unit", "integration"])

    def test_report_names_follow_the_name_rule(self) -> None:
        found = problems(
            with_environment(
                "promotion: {gates: [{type: tests, reports: [Unit]}, {type: scan, reports: [a b]}]}"
            )
        )
        assert [p.path for p in found] == [
            "environments.production.promotion.gates[0].reports[0]",
            "environments.production.promotion.gates[1].reports[0]",
        ]
        assert found[0].message == "'Unit' is not a valid report name"

    def test_a_scan_gate_defaults(self) -> None:
        spec = load(with_environment("promotion: {gates: [{type: scan}]}"))
        [gate] = spec.environments["production"].promotion.gates
        assert isinstance(gate, ScanGate) and (gate.fail_on, gate.reports) == ("high", [])
