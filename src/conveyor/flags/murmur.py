"""Pure: MurmurHash3 x86 32-bit, the hash flagd's `fractional` buckets with (seed 0, UTF-8 bytes)."""

from __future__ import annotations

_C1 = 0xCC9E2D51
_C2 = 0x1B873593
_MASK = 0xFFFFFFFF


def _rotl(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (32 - bits))) & _MASK


def murmur3_32(data: bytes, seed: int = 0) -> int:
    """The unsigned 32-bit MurmurHash3 (x86 variant) of `data`."""
    h = seed & _MASK
    tail_start = len(data) - len(data) % 4
    for i in range(0, tail_start, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = _rotl((k * _C1) & _MASK, 15)
        h ^= (k * _C2) & _MASK
        h = (_rotl(h, 13) * 5 + 0xE6546B64) & _MASK
    tail = data[tail_start:]
    if tail:
        k = int.from_bytes(tail, "little")
        k = _rotl((k * _C1) & _MASK, 15)
        h ^= (k * _C2) & _MASK
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK
    h ^= h >> 16
    return h
