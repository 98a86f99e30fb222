#!/usr/bin/env python3
"""An independent verifier of jifen's test vectors, written from docs/FORMAT.md alone.

It shares no code with the Rust implementation: Python's hashlib for SHA-256 and SHA-512,
the `cryptography` package for the Ed25519 equation, a few lines of Edwards-curve arithmetic
for the checks FORMAT.md section 3.1 adds to it, and the algorithms of RFC 9162 and C2SP
signed-note as FORMAT.md restates them. Usage:

    python3 docs/verify_vectors.py [ledger/testdata/vectors.json]
    python3 docs/verify_vectors.py --bundle FILE [--log-key KEY] [--witness-key KEY]... [--quorum N]
    python3 docs/verify_vectors.py --token TOKEN --method PATH --ledger CODE --now SECONDS

The bundle check (section 11) follows section 11.3 step by step and reports the first failure
in its order: the format, the header, every checkpoint's log signature, the consistency
proofs, the chain, every event signature (strictly, section 3.1), every checkpoint's root, the
record count, the cosignatures and the last checkpoint's quorum. It does not re-run the
write-model's rules (step 4's replay); of the replay it checks only that every body names the
record's ledger and that the genesis names the bundle's origin, and it follows enrolments,
rotations, revocations and rulebooks to find the witnesses and the quorum of section 11.2
when no witness keys are given. `--quorum` replaces the ledger's quorum.
"""
import base64
import binascii
import datetime
import hashlib
import json
import struct
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def sha256(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


def tagged(tag, data):
    return sha256(tag, b"\x00", data)


def b64(s):
    """Canonical standard base64 (FORMAT.md conventions): exact padding, zero padding bits."""
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise Fail("not base64: %r" % s[:60])
    check(base64.b64encode(raw).decode() == s, "not canonical base64: %r" % s[:60])
    return raw


def canonical_decimal(s):
    check(s != "" and all(c in "0123456789" for c in s) and (s == "0" or s[0] != "0"), "not canonical decimal: %r" % s)
    return int(s)


# --- section 3.1: Ed25519 validity ---------------------------------------------------------

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
IDENTITY = (0, 1, 1, 0)


def pt_add(a, b):
    """Extended twisted-Edwards addition (a = -1), complete: also doubles."""
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa = (y1 - x1) * (y2 - x2) % P
    bb = (y1 + x1) * (y2 + x2) % P
    cc = 2 * t1 * t2 * D % P
    dd = 2 * z1 * z2 % P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def pt_mul(k, a):
    r = IDENTITY
    while k:
        if k & 1:
            r = pt_add(r, a)
        a = pt_add(a, a)
        k >>= 1
    return r


def pt_is_identity(a):
    x, y, z, _ = a
    return x % P == 0 and (y - z) % P == 0


def pt_encode(a):
    x, y, z, _ = a
    zi = pow(z, P - 2, P)
    x, y = x * zi % P, y * zi % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def pt_decode(b):
    """RFC 8032 5.1.3 with section 3.1 step 2's two tolerances (y >= p; x = 0 with the sign bit)."""
    v = int.from_bytes(b, "little")
    sign, y = v >> 255, (v & (2**255 - 1)) % P
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    if x & 1 != sign:
        x = -x % P
    return (x, y, 1, x * y % P)


BASE = pt_decode((4 * pow(5, P - 2, P) % P).to_bytes(32, "little"))
_decoded = {}


def ed25519_ok(a_bytes, sig, msg):
    """FORMAT.md section 3.1, steps 1-5."""
    if len(a_bytes) != 32 or len(sig) != 64:
        return False
    r_bytes, s = sig[:32], int.from_bytes(sig[32:], "little")
    if s >= L:  # step 1
        return False
    for b in (a_bytes, r_bytes):  # steps 2 and 3
        if b not in _decoded:
            p = pt_decode(b)
            _decoded[b] = p is not None and not pt_is_identity(pt_add(pt_add(pt_add(p, p), pt_add(p, p)), pt_add(pt_add(p, p), pt_add(p, p))))
        if not _decoded[b]:
            return False
    if pt_encode(pt_decode(a_bytes)) != a_bytes:
        # A non-canonical key: OpenSSL may refuse to decode it, so steps 4-5 by hand.
        a = pt_decode(a_bytes)
        k = int.from_bytes(hashlib.sha512(r_bytes + a_bytes + msg).digest(), "little") % L
        x, y, z, t = pt_mul(k, a)
        return pt_encode(pt_add(pt_mul(s, BASE), (-x % P, y, z, -t % P))) == r_bytes
    try:  # steps 4-5: OpenSSL compares the encoding of [S]B - [k]A with R_bytes
        Ed25519PublicKey.from_public_bytes(a_bytes).verify(sig, msg)
        return True
    except (InvalidSignature, ValueError):
        return False


# --- section 2: just enough protobuf to read a few fields ------------------------------------

def read_varint(buf, i):
    v, shift = 0, 0
    while True:
        check(i < len(buf) and shift < 70, "malformed protobuf")
        c = buf[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, i


def proto_fields(buf):
    """The (field number, value) pairs of a message: ints for varints, bytes otherwise."""
    out, i = [], 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        number, wire = key >> 3, key & 7
        check(number > 0 and wire in (0, 1, 2, 5), "malformed protobuf")
        if wire == 0:
            value, i = read_varint(buf, i)
        else:
            if wire == 2:
                n, i = read_varint(buf, i)
            else:
                n = 8 if wire == 1 else 4
            check(i + n <= len(buf), "malformed protobuf")
            value, i = buf[i:i + n], i + n
        out.append((number, value))
    return out


def varints(value):
    """A repeated varint field's values, packed (bytes) or not (an int)."""
    if isinstance(value, int):
        return [value]
    out, i = [], 0
    while i < len(value):
        v, i = read_varint(value, i)
        out.append(v)
    return out


def field(fields, number, default):
    vals = [v for f, v in fields if f == number]
    return vals[-1] if vals else default


def int64(v):
    return v - 2**64 if v >= 2**63 else v


# --- section 4: the record -----------------------------------------------------------------

def parse_record(b):
    pos = 0

    def take(n, what):
        nonlocal pos
        check(len(b) - pos >= n, "truncated at " + what)
        out = b[pos:pos + n]
        pos += n
        return out

    (id_len,) = struct.unpack(">H", take(2, "ledger id length"))
    ledger_id = take(id_len, "ledger id")
    check(len(ledger_id) == 12 and all(0x30 <= c <= 0x39 for c in ledger_id), "ledger id is not 12 digits")
    (seq,) = struct.unpack(">Q", take(8, "seq"))
    prev_hash = take(32, "prev_hash")
    (recorded_at,) = struct.unpack(">q", take(8, "recorded_at"))
    (body_len,) = struct.unpack(">I", take(4, "body length"))
    check(body_len <= 65536, "body too large")
    body = take(body_len, "body")
    (n,) = struct.unpack(">H", take(2, "signature count"))
    check(n <= 16, "more than 16 signatures")
    sigs = [(take(32, "public key"), take(64, "signature")) for _ in range(n)]
    check(pos == len(b), "trailing bytes")
    check(n >= 1, "no signature")
    keys = [k for k, _ in sigs]
    check(all(keys[i] < keys[i + 1] for i in range(len(keys) - 1)), "signers not strictly ascending")
    return dict(ledger_id=ledger_id.decode(), seq=seq, prev_hash=prev_hash, recorded_at=recorded_at, body=body, sigs=sigs)


def record_hash(record_bytes):
    return tagged(b"jifen/record/v1", record_bytes)


def signing_message(body):
    return b"jifen/event/v1\x00" + body


# --- section 5: RFC 9162 Merkle tree --------------------------------------------------------

def leaf_hash(data):
    return sha256(b"\x00", data)


def node_hash(l, r):
    return sha256(b"\x01", l, r)


def largest_pow2_below(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves):
    if not leaves:
        return sha256(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = largest_pow2_below(len(leaves))
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def verify_inclusion(leaf, index, size, proof, root):
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first, second, first_hash, second_hash, proof):
    """RFC 9162 section 2.1.4.2, for 0 < first <= second (FORMAT.md section 5)."""
    if first == 0 or first > second:
        return False
    if first == second:
        return not proof and first_hash == second_hash
    path = ([first_hash] if first & (first - 1) == 0 else []) + list(proof)
    if not path:
        return False
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_hash and sr == second_hash


# --- section 6: signed-note checkpoints -----------------------------------------------------

WHITE_SPACE = set(chr(c) for c in [*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000])


def valid_key_name(name):
    return name != "" and "+" not in name and not any(c in WHITE_SPACE for c in name)


def key_id(name, key):
    return sha256(name.encode(), b"\n\x01", key)[:4]


def parse_verifier_key(s):
    """Section 6.3: (name, key ID, public key)."""
    parts = s.split("+", 2)  # the first two '+' only: the base64 may contain its own
    check(len(parts) == 3, "verifier key %r" % s)
    name, kid, key = parts
    check(valid_key_name(name), "key name %r" % name)
    check(len(kid) == 8 and all(c in "0123456789abcdef" for c in kid), "key ID of %r" % s)
    raw = b64(key)
    check(len(raw) == 33 and raw[0] == 0x01, "Ed25519 verifier key %r" % s)
    check(key_id(name, raw[1:]).hex() == kid, "key ID of " + name)
    return name, bytes.fromhex(kid), raw[1:]


def parse_note(note):
    """Section 6.2: (text, [(name, key ID, signature bytes)])."""
    check(len(note) <= 1 << 20, "note larger than 1 MiB")
    try:
        s = note.decode("utf-8")
    except UnicodeDecodeError:
        raise Fail("note is not UTF-8")
    check(all(c >= " " or c == "\n" for c in s), "control character in note")
    split = s.rfind("\n\n")
    check(split >= 0, "no blank line before the signatures")
    text, block = s[:split + 1], s[split + 2:]
    check(block.endswith("\n"), "signature block")
    sigs = []
    for line in block[:-1].split("\n"):
        check(len(sigs) < 100, "more than 100 signatures")
        check(line.startswith("\u2014 "), "signature line %r" % line[:60])
        name, sp, rest = line[2:].partition(" ")
        check(sp == " " and valid_key_name(name) and rest != "", "signature line %r" % line[:60])
        raw = b64(rest)
        check(len(raw) >= 5, "signature line %r" % line[:60])
        sigs.append((name, raw[:4], raw[4:]))
    return text, sigs


def verified_names(text, sigs, known):
    """Section 6.4: the names of known keys whose lines verify; a failing known line fails."""
    names = []
    for name, kid, sig in sigs:
        for kname, kkid, key in known:
            if (kname, kkid) == (name, kid):
                check(ed25519_ok(key, sig, text.encode()), "signature by %s does not verify" % name)
                if name not in names:
                    names.append(name)
    return names


def parse_checkpoint_text(text, origin):
    """Section 6.1: (size, root)."""
    lines = text[:-1].split("\n")
    check(len(lines) >= 3, "checkpoint text needs three lines")
    check(lines[0] != "" and lines[0] == origin, "checkpoint origin %r" % lines[0])
    size = canonical_decimal(lines[1])
    check(size < 2**64, "tree size")
    root = b64(lines[2])
    check(len(root) == 32, "root hash")
    check(all(l != "" for l in lines[3:]), "empty extension line")
    return size, root


# --- section 7: balance digest --------------------------------------------------------------

def balance_digest(households):
    rows = sorted(households, key=lambda h: h["id"].encode())
    data = struct.pack(">I", len(rows))
    for h in rows:
        hid = h["id"].encode()
        data += struct.pack(">H", len(hid)) + hid
        for f in ("basic", "contribution", "deducted", "redeemed", "carried_in", "carried_out", "expired"):
            data += struct.pack(">q", h[f])
    return tagged(b"jifen/balances/v1", data)


def main(path):
    v = json.load(open(path))
    checks = 0
    prev = bytes(32)
    record_hashes = []
    for rv in v["records"]:
        b = bytes.fromhex(rv["record_bytes"])
        r = parse_record(b)
        check(r["seq"] == rv["seq"] == len(record_hashes), "seq")
        check(r["prev_hash"] == prev, "chain link at seq %d" % r["seq"])
        check(r["body"].hex() == rv["body"], "body")
        check(field(proto_fields(r["body"]), 1, b"").decode() == r["ledger_id"] == rv["ledger_id"], "ledger id")
        check(signing_message(r["body"]).hex() == rv["signing_message"], "signing message")
        for key, sig in r["sigs"]:
            check(ed25519_ok(key, sig, signing_message(r["body"])), "signature at seq %d" % r["seq"])
            checks += 1
        h = record_hash(b)
        check(h.hex() == rv["record_hash"], "record hash at seq %d" % r["seq"])
        check(leaf_hash(h).hex() == rv["leaf_hash"], "leaf hash")
        record_hashes.append(h)
        prev = h
        checks += 3
    leaves = [leaf_hash(h) for h in record_hashes]
    m = v["merkle"]
    for n, root in enumerate(m["roots_by_size"]):
        check(mth(leaves[:n]).hex() == root, "root of size %d" % n)
        checks += 1
    for p in m["inclusion"]:
        i, n = p["index"], p["size"]
        proof = [bytes.fromhex(x) for x in p["proof"]]
        check(verify_inclusion(leaves[i], i, n, proof, mth(leaves[:n])), "inclusion %d/%d" % (i, n))
        bad = list(proof)
        bad[0] = bytes([bad[0][0] ^ 1]) + bad[0][1:]
        check(not verify_inclusion(leaves[i], i, n, bad, mth(leaves[:n])), "a bad inclusion proof")
        checks += 2
    for p in m["consistency"]:
        o, n = p["old"], p["new"]
        proof = [bytes.fromhex(x) for x in p["proof"]]
        check(verify_consistency(o, n, mth(leaves[:o]), mth(leaves[:n]), proof), "consistency %d->%d" % (o, n))
        checks += 1
    c = v["checkpoint"]
    known = [parse_verifier_key(c["log_verifier_key"])] + [parse_verifier_key(k) for k in c["witness_verifier_keys"]]
    text, sigs = parse_note(c["note"].encode())
    signed = verified_names(text, sigs, known)
    check(text == c["text"] and known[0][0] in signed and len(signed) == len(known), "checkpoint signatures")
    size, root = parse_checkpoint_text(text, c["origin"])
    check(size == m["size"] and root == mth(leaves[:size]), "checkpoint root")
    checks += 2
    d = v["balance_digest"]
    check(balance_digest(d["households"]).hex() == d["digest"], "balance digest")
    checks += 1
    for bad in v["bad_records"]:
        b = bytes.fromhex(bad["record_bytes"])
        try:
            r = parse_record(b)
        except Fail:
            checks += 1
            continue
        check(not all(ed25519_ok(k, s, signing_message(r["body"])) for k, s in r["sigs"]), bad["desc"])
        checks += 1
    print("vectors: %d passed, 0 failed" % checks)


# --- section 11: the year bundle ----------------------------------------------------------

class Reader:
    def __init__(self, data, what):
        self.data, self.pos, self.what = data, 0, what

    def take(self, n):
        check(len(self.data) - self.pos >= n, "truncated in " + self.what)
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def section(self, tag, limit):
        found = self.u(">B")
        check(found == tag, "expected section %#04x, found %#04x" % (tag, found))
        n = self.u(">Q")
        check(n <= limit, "section %#04x is %d bytes, more than %d" % (tag, n, limit))
        return Reader(self.take(n), "section %#04x" % tag)

    def finish(self):
        check(self.pos == len(self.data), "%s: its content does not use exactly its length" % self.what)


def decode_bundle(data):
    """Section 11, in the decoding order it gives."""
    r = Reader(data, "the file")
    check(r.take(8) == b"JIFENBDL", "magic")
    check(r.u(">H") == 1, "version")
    check(r.u(">H") == 0, "flags")
    h = r.section(0x01, 4096)
    try:
        ledger = h.take(h.u(">B")).decode()
        origin = h.take(h.u(">H")).decode()
        log_key = h.take(h.u(">H")).decode()
    except UnicodeDecodeError:
        raise Fail("header: a string is not UTF-8")
    check(len(ledger) == 12 and all(c in "0123456789" for c in ledger), "header: ledger id")
    year, count, ncp = h.u(">H"), h.u(">Q"), h.u(">I")
    h.finish()
    check(count <= 1 << 26, "record count")
    check(1 <= ncp <= 1 << 20, "checkpoint count")
    rs = r.section(0x02, 2**64)
    slices = []
    for i in range(count):
        n = rs.u(">I")
        check(n <= 70000, "record %d is longer than 70000 bytes" % i)
        slices.append(rs.take(n))
    rs.finish()
    records = []
    for i, b in enumerate(slices):
        try:
            records.append((parse_record(b), b))
        except Fail as e:
            raise Fail("record %d: %s" % (i, e))
    cs = r.section(0x03, 2**64)
    notes = []
    for i in range(ncp):
        n = cs.u(">I")
        check(n <= 65536, "checkpoint %d is longer than 65536 bytes" % i)
        note = cs.take(n)
        try:
            note.decode("utf-8")
        except UnicodeDecodeError:
            raise Fail("checkpoint %d is not UTF-8" % i)
        notes.append(note)
    cs.finish()
    ps = r.section(0x04, 2**64)
    proofs = []
    for _ in range(ncp - 1):
        old, new, k = ps.u(">Q"), ps.u(">Q"), ps.u(">B")
        check(k <= 128, "a proof of more than 128 hashes")
        proofs.append((old, new, [ps.take(32) for _ in range(k)]))
    ps.finish()
    before_end = r.pos
    end = r.section(0xFF, 32)
    checksum = end.take(32)
    end.finish()
    check(r.pos == len(data), "bytes after the END section")
    check(hashlib.sha256(data[:before_end]).digest() == checksum, "checksum (END covers every byte before its tag)")
    return dict(ledger=ledger, origin=origin, log_key=log_key, year=year, records=records, notes=notes, proofs=proofs)


def days_of(micros):
    """Section 8: the China Standard Time date of a timestamp, as days since 1970-01-01."""
    return (micros + 8 * 3600 * 10**6) // (86400 * 10**6)


def days_of_date(s):
    return (datetime.date.fromisoformat(s) - datetime.date(1970, 1, 1)).days


class Actors:
    """Enrolments, rotations, revocations and rulebooks, as section 11.1 describes them."""

    def __init__(self):
        self.actors, self.rulebooks, self.genesis_origin = {}, [], None

    def apply(self, body):
        fields = proto_fields(body)
        for number, value in fields:
            if number == 10:
                p = proto_fields(value)
                self.genesis_origin = field(p, 1, b"").decode()
            elif number == 11:
                p = proto_fields(value)
                roles = [role for f, v in p if f == 3 for role in varints(v)]
                self.actors[field(p, 1, b"").decode()] = dict(key=field(p, 2, b""), roles=roles, start=int64(field(p, 4, 0)), end=int64(field(p, 5, 0)), revoked=False)
            elif number == 12:
                p = proto_fields(value)
                a = self.actors.get(field(p, 1, b"").decode())
                if a is not None:
                    a["key"] = field(p, 2, b"")
            elif number == 13:
                a = self.actors.get(field(proto_fields(value), 1, b"").decode())
                if a is not None:
                    a["revoked"] = True
            elif number == 20:
                p = proto_fields(value)
                self.rulebooks.append((days_of_date(field(p, 2, b"").decode()), field(p, 8, 0)))

    def witnesses(self, deployment, t):
        """Section 11.2: the witness keys of a checkpoint whose last record was recorded at t."""
        keys = []
        for actor_id, a in self.actors.items():
            in_term = a["start"] <= t and (a["end"] == 0 or t < a["end"])
            if 4 in a["roles"] and not a["revoked"] and in_term and len(a["key"]) == 32:
                name = "%s/witness/%s" % (deployment, actor_id)
                keys.append((name, key_id(name, a["key"]), a["key"]))
        return keys

    def quorum(self, t):
        in_force = [q for eff, q in self.rulebooks if eff <= days_of(t)]
        return in_force[-1] if in_force else 1


def verify_bundle(path, log_key, witness_keys, quorum_override):
    b = decode_bundle(open(path, "rb").read())
    ledger, origin, records = b["ledger"], b["origin"], b["records"]
    # 1. Header.
    check(origin.endswith("/village/" + ledger), "the origin %r does not name ledger %s" % (origin, ledger))
    given = log_key is not None
    log = parse_verifier_key(log_key if given else b["log_key"])
    check(log[0] == origin, "the log key is not named after the origin")
    # 2. Checkpoints.
    checkpoints = []
    for i, note in enumerate(b["notes"]):
        try:
            text, sigs = parse_note(note)
            size, root = parse_checkpoint_text(text, origin)
            check(log[0] in verified_names(text, sigs, [log]), "not signed by the log key")
        except Fail as e:
            raise Fail("checkpoint %d: %s" % (i, e))
        check(size >= 1 and (not checkpoints or size > checkpoints[-1][0]), "checkpoint %d: sizes must be at least 1 and grow" % i)
        checkpoints.append((size, root, text, sigs))
    # 3. Proofs.
    for i, ((old, new, proof), a, c) in enumerate(zip(b["proofs"], checkpoints, checkpoints[1:])):
        check((old, new) == (a[0], c[0]), "proof %d is for sizes %d->%d, not %d->%d" % (i, old, new, a[0], c[0]))
        check(verify_consistency(a[0], c[0], a[1], c[1], proof), "checkpoint inconsistency between sizes %d and %d" % (a[0], c[0]))
    # 4. Records: chain, signatures, and what this verifier checks of the replay.
    chain = sig = replay = None
    prev, hashes = bytes(32), []
    deployment = origin[:origin.rfind("/village/")]
    actors, at_checkpoint = Actors(), {}
    sizes = set(c[0] for c in checkpoints)
    for pos, (r, raw) in enumerate(records):
        h = record_hash(raw)
        if chain is None:
            if r["seq"] != pos:
                chain = (pos, "found the record of seq %d where seq %d belongs" % (r["seq"], pos))
            elif r["ledger_id"] != ledger:
                chain = (pos, "ledger id %s is not the bundle's %s" % (r["ledger_id"], ledger))
            elif r["prev_hash"] != prev:
                chain = (max(pos - 1, 0), "the chain breaks between records %d and %d" % (pos - 1, pos))
            elif pos > 0 and r["recorded_at"] < records[pos - 1][0]["recorded_at"]:
                chain = (pos, "recorded_at goes backwards")
        if sig is None and not all(ed25519_ok(k, s, signing_message(r["body"])) for k, s in r["sigs"]):
            sig = (pos, "a signature does not verify")
        if replay is None:
            try:
                check(field(proto_fields(r["body"]), 1, b"") == r["ledger_id"].encode(), "the body names another ledger")
                actors.apply(r["body"])
                check(pos != 0 or actors.genesis_origin == origin, "the genesis does not name the bundle's origin")
            except Fail as e:
                replay = (pos, str(e))
        prev = h
        hashes.append(h)
        if pos + 1 in sizes:
            at_checkpoint[pos + 1] = (actors.witnesses(deployment, r["recorded_at"]), actors.quorum(r["recorded_at"]))
    failures = [f for f in (chain, sig, replay) if f is not None]
    first = min(failures, key=lambda f: f[0]) if failures else None  # ties: chain, signature, replay
    # 5. Roots.
    if chain is None:
        leaves, start = [leaf_hash(h) for h in hashes], 0
        for size, root, _, _ in checkpoints:
            if size > len(records):
                break
            if mth(leaves[:size]) != root:
                if first is not None and first[0] < size:
                    break
                raise Fail("fork: the records %d..%d are not those the checkpoint of size %d commits to" % (start, size, size))
            start = size
    # 6. The first record failure.
    if first is not None:
        raise Fail("first bad record seq %d: %s" % first)
    # 7. Record count.
    last = checkpoints[-1][0]
    check(len(records) >= last, "first bad record seq %d: truncated, the last checkpoint covers %d records" % (len(records), last))
    check(len(records) == last, "%d records beyond the last checkpoint (size %d)" % (len(records) - last, last))
    # 8. Cosignatures; 9. quorum.
    given_witnesses = [parse_verifier_key(k) for k in witness_keys]
    for size, _, text, sigs in checkpoints:
        derived, quorum = at_checkpoint[size]
        try:
            names = verified_names(text, sigs, given_witnesses or derived)  # distinct names
        except Fail as e:
            raise Fail("checkpoint of size %d: a cosignature: %s" % (size, e))
    # names and quorum are now the last checkpoint's.
    quorum = quorum_override if quorum_override is not None else quorum
    check(len(names) >= quorum, "the last checkpoint is not witnessed: %d of %d cosignatures" % (len(names), quorum))
    print("bundle: %d records, %d checkpoints, last witnessed by %d of %d%s: passed" % (
        len(records), len(checkpoints), len(names), quorum, "" if given else " (the bundle's own log key)"))


# --- section 12: request tokens ----------------------------------------------------------

def b64url(s):
    try:
        raw = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except (binascii.Error, ValueError):
        raise Fail("not base64url")
    check(base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == s, "canonical base64url")
    return raw


def verify_token(token, method, ledger, now):
    check(len(token) <= 1024, "token longer than 1024 bytes")
    parts = token.split(".")
    check(len(parts) == 4 and parts[0] == "v1", "v1 and four parts")
    key, payload, sig = (b64url(p) for p in parts[1:])
    check(len(key) == 32 and len(sig) == 64, "key and signature lengths")
    try:
        lines = payload.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        raise Fail("payload is not UTF-8")
    check(len(lines) == 6 and lines[5] == "" and lines[0] == "jifen/request/v1", "payload lines")
    _, m, l, issued, nonce, _ = lines
    check(m.startswith("/") and len(m) <= 200 and all(c.isascii() and (c.isalnum() or c in "./_") for c in m), "method")
    check(len(l) == 12 and l.isdigit() and l.isascii(), "ledger")
    issued = canonical_decimal(issued)
    check(len(nonce) == 32 and all(c in "0123456789abcdef" for c in nonce), "nonce")
    check(ed25519_ok(key, sig, payload), "token signature")
    check(m == method and l == ledger, "method and ledger")
    check(now - 300 <= issued <= now + 30, "fresh")
    print("token: key %s, nonce %s: passed" % (key.hex(), nonce))


def cli(args):
    def opt(name, many=False):
        vals = [args[i + 1] for i, a in enumerate(args) if a == name]
        return vals if many else (vals[0] if vals else None)
    if opt("--bundle"):
        q = opt("--quorum")
        verify_bundle(opt("--bundle"), opt("--log-key"), opt("--witness-key", True), int(q) if q is not None else None)
    elif opt("--token"):
        verify_token(opt("--token"), opt("--method"), opt("--ledger"), int(opt("--now")))
    else:
        main(args[0] if args else "ledger/testdata/vectors.json")


if __name__ == "__main__":
    try:
        cli(sys.argv[1:])
    except (Fail, AssertionError) as e:
        print("FAILED: %s" % e)
        sys.exit(1)
