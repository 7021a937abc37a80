"""Pure: the masking core's text transforms, unrolled for the clone's hot loop; same outputs, fewer calls.

`Masker.mask` builds a `_Draws` object, a partial and a handful of method calls per value, which is
most of its cost. For the transforms a clone meets most (`email`, `name`, `first_name`,
`last_name`, `address`, `phone`, `hash`) on text values, `fast_masker` returns a function that
computes the same HMAC blocks, the same draws (`divmod` on the first 256-bit block: every draw of
these transforms fits in it, checked at import) and the same leak re-draws, inline. The copy path
(`data/copying.py`) uses it when there is one and `Masker.mask` otherwise; property tests hold the
two equal for any text.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from conveyor.data.masking import (
    FIRST_NAMES,
    LAST_NAMES,
    LEAK_MIN,
    MAX_ATTEMPTS,
    RESERVED_DOMAINS,
    STREET_TYPES,
    STREETS,
    UNIQUE_HEX,
    Masker,
    Transform,
    _normal,
)

_hmac: Callable[[bytes, bytes, str], bytes]
try:  # the C function behind hmac.digest, without its Python wrapper
    from _hashlib import hmac_digest as _hmac
except ImportError:  # pragma: no cover - a Python without OpenSSL's hashlib
    _hmac = hmac.digest

_ASCII_DROP = bytes(b for b in range(128) if not chr(b).isalnum())
"""For ASCII text, `_normal` (casefold, keep what isalnum() keeps) is lower() then dropping these bytes."""
_FIRST_LOWER = tuple(name.lower() for name in FIRST_NAMES)
_LAST_LOWER = tuple(name.lower() for name in LAST_NAMES)
_ATTEMPT = tuple(bytes((n,)) for n in range(MAX_ATTEMPTS))

# the sizes each transform draws from, in order: all must fit the first block's 256 bits as
# _Draws.below spends them (it extends the pool when fewer than n.bit_length() + 64 bits are left)
_DRAWS: dict[str, tuple[int, ...]] = {
    "email": (len(FIRST_NAMES), len(LAST_NAMES), 9000, len(RESERVED_DOMAINS)),
    "name": (len(FIRST_NAMES), len(LAST_NAMES)),
    "first_name": (len(FIRST_NAMES),),
    "last_name": (len(LAST_NAMES),),
    "address": (9999, len(STREETS), len(STREET_TYPES)),
    "phone": (8, 9, 10, 100),
    "hash": (),
}


def _fits_first_block(sizes: tuple[int, ...]) -> bool:
    bits = 256
    for n in sizes:
        if bits < n.bit_length() + 64:
            return False
        bits -= n.bit_length()
    return True


assert all(_fits_first_block(sizes) for sizes in _DRAWS.values()), (
    "a fast transform would need a second block"
)

TextMask = Callable[[str], str]


def fast_masker(masker: Masker, transform: Transform) -> TextMask | None:
    """A function equal to `masker.mask(transform, value)` for any text value; None when there is none."""
    make = _FAST.get(transform.name)
    if make is None:
        return None
    # the package's own masker: its sub-key never leaves this module's closures
    key: bytes = masker._key
    prefix = b"\x00\x00" + transform.domain + b"\x00"  # block 0, then the message _Draws hashes
    return make(key, prefix, transform)


def _redrawn(compute: Callable[[bytes], str], key: bytes, prefix: bytes) -> TextMask:
    """Draw with attempt 0, 1, … while the output holds the input, as Masker.mask does."""

    def mask(value: str) -> str:
        seed = value.encode("utf-8", "surrogatepass")
        output = ""
        if value.isascii():
            # every output here is ASCII too, so both sides normalise as bytes, in C
            source = seed.lower().translate(None, _ASCII_DROP)
            check = len(source) >= LEAK_MIN
            for attempt in _ATTEMPT:
                output = compute(_hmac(key, prefix + attempt + seed, "sha256"))
                if not (check and source in output.encode().lower().translate(None, _ASCII_DROP)):
                    break
            return output
        text = _normal(value)
        check = len(text) >= LEAK_MIN
        for attempt in _ATTEMPT:
            output = compute(_hmac(key, prefix + attempt + seed, "sha256"))
            if not (check and text in _normal(output)):
                break
        return output

    return mask


def _email(key: bytes, prefix: bytes, t: Transform) -> TextMask:
    unique, domain = bool(t.option("unique")), t.option("domain")
    nf, nl = len(FIRST_NAMES), len(LAST_NAMES)

    def compute(digest: bytes) -> str:
        pool, first = divmod(int.from_bytes(digest, "big"), nf)
        pool, last = divmod(pool, nl)
        local = f"{_FIRST_LOWER[first]}.{_LAST_LOWER[last]}"
        if unique:
            local += "." + digest.hex()[:UNIQUE_HEX]
        else:
            pool, number = divmod(pool, 9000)
            local += str(1000 + number)
        if not domain:
            pool, which = divmod(pool, len(RESERVED_DOMAINS))
            return f"{local}@{RESERVED_DOMAINS[which]}"
        return f"{local}@{domain}"

    return _redrawn(compute, key, prefix)


def _name(key: bytes, prefix: bytes, t: Transform) -> TextMask:
    nf, nl = len(FIRST_NAMES), len(LAST_NAMES)

    def compute(digest: bytes) -> str:
        pool, first = divmod(int.from_bytes(digest, "big"), nf)
        return f"{FIRST_NAMES[first]} {LAST_NAMES[pool % nl]}"

    return _redrawn(compute, key, prefix)


def _one_of(words: tuple[str, ...]) -> Callable[[bytes, bytes, Transform], TextMask]:
    def make(key: bytes, prefix: bytes, t: Transform) -> TextMask:
        return _redrawn(lambda digest: words[int.from_bytes(digest, "big") % len(words)], key, prefix)

    return make


def _address(key: bytes, prefix: bytes, t: Transform) -> TextMask:
    def compute(digest: bytes) -> str:
        pool, number = divmod(int.from_bytes(digest, "big"), 9999)
        pool, street = divmod(pool, len(STREETS))
        return f"{1 + number} {STREETS[street]} {STREET_TYPES[pool % len(STREET_TYPES)]}"

    return _redrawn(compute, key, prefix)


def _phone(key: bytes, prefix: bytes, t: Transform) -> TextMask:
    def compute(digest: bytes) -> str:
        pool, a = divmod(int.from_bytes(digest, "big"), 8)
        pool, b = divmod(pool, 9)
        pool, c = divmod(pool, 10)
        area = f"{2 + a}{b}{c}"
        if area[1:] == "11":
            area = area[0] + "12"
        return f"+1{area}55501{pool % 100:02d}"

    return _redrawn(compute, key, prefix)


def _hash(key: bytes, prefix: bytes, t: Transform) -> TextMask:
    length = int(t.option("length"))
    return _redrawn(lambda digest: digest.hex()[:length], key, prefix)


_FAST: dict[str, Callable[[bytes, bytes, Transform], TextMask]] = {
    "email": _email,
    "name": _name,
    "first_name": _one_of(FIRST_NAMES),
    "last_name": _one_of(LAST_NAMES),
    "address": _address,
    "phone": _phone,
    "hash": _hash,
}
