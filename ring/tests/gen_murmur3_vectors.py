#!/usr/bin/env python3
"""Generate the Murmur3 test vectors in ring/tests/murmur3_vectors.rs.

The vectors come from the DataStax Python driver (an implementation independent of ours):
`cassandra.murmur3.murmur3` (pure Python) and, when the C extension is installed,
`cassandra.cmurmur3.murmur3`; the two are checked against each other here. Composite partition
keys are serialized by the driver's own routing-key code (`SimpleStatement.routing_key = [...]`).

Usage:
    python3 -m venv /tmp/ringvenv && /tmp/ringvenv/bin/pip install cassandra-driver
    /tmp/ringvenv/bin/python ring/tests/gen_murmur3_vectors.py

It prints Rust table rows: (key as hex, raw 64-bit hash of the key). Paste them into
`ring/tests/murmur3_vectors.rs`.
"""
import struct

import cassandra
import cassandra.murmur3 as pure
from cassandra.query import SimpleStatement

try:
    from cassandra.cmurmur3 import murmur3 as c_murmur3
except ImportError:  # the C extension is optional
    c_murmur3 = None


def hash_of(key: bytes) -> int:
    h = pure._murmur3(key)  # always the pure-Python version
    if c_murmur3 is not None:
        assert c_murmur3(key) == h, key.hex()
    return h


def keys():
    # Every length 0..40: every tail length 0..15 appears at least twice, with and without full
    # 16-byte blocks. Bytes rise through 0x80..0xff so tails hold negative (sign-extended) bytes.
    for n in range(0, 41):
        yield "len%d_high" % n, bytes((0x80 + 7 * i) & 0xFF for i in range(n))
    # Same lengths with ASCII only (all tail bytes positive) for a few tail sizes.
    for n in (1, 7, 8, 9, 15, 16, 17, 31):
        yield "len%d_ascii" % n, bytes(0x41 + (i % 26) for i in range(n))
    # All-0xff tails: the most negative-heavy case.
    for n in (1, 8, 15, 16, 23):
        yield "ff_x%d" % n, b"\xff" * n
    yield "a", b"a"
    yield "hello", b"hello"
    yield "fox", b"The quick brown fox jumps over the lazy dog"
    for i in range(1, 6):
        yield "int32_%d" % i, struct.pack(">i", i)
    yield "int32_-1", struct.pack(">i", -1)
    yield "bigint_42", struct.pack(">q", 42)


def composites():
    parts = [
        ("composite_int_text", [struct.pack(">i", 1), b"abc"]),
        ("composite_text_text_int", [b"user", b"\xc3\xa9t\xc3\xa9", struct.pack(">i", -7)]),
        ("composite_empty_and_bigint", [b"", struct.pack(">q", 2**40)]),
    ]
    for name, p in parts:
        stmt = SimpleStatement("SELECT 1")
        stmt.routing_key = p
        yield name, p, stmt.routing_key


def main():
    print("// cassandra-driver %s; C extension: %s" % (cassandra.__version__, c_murmur3 is not None))
    print("// (name, key hex, murmur3 x64_128 first half as i64)")
    for name, key in keys():
        print('    ("%s", "%s", %d),' % (name, key.hex(), hash_of(key)))
    print("// composites: (name, [component hex], serialized hex, hash)")
    for name, p, serialized in composites():
        comps = ", ".join('"%s"' % c.hex() for c in p)
        print('    ("%s", &[%s], "%s", %d),' % (name, comps, serialized.hex(), hash_of(serialized)))


if __name__ == "__main__":
    main()
