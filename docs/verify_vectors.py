#!/usr/bin/env python3
"""An independent verifier of jifen's test vectors, written from docs/FORMAT.md alone.

It shares no code with the Rust implementation: Python's hashlib for SHA-256, the
`cryptography` package for Ed25519, and the algorithms of RFC 9162 and C2SP signed-note as
FORMAT.md restates them. Usage:

    python3 docs/verify_vectors.py [ledger/testdata/vectors.json]
    python3 docs/verify_vectors.py --bundle FILE --log-key KEY --witness-key KEY... --quorum N
    python3 docs/verify_vectors.py --token TOKEN --method PATH --ledger CODE --now SECONDS

The bundle check (section 11) covers the format, every checkpoint's log signature, the
consistency proofs, the chain, every event signature, every checkpoint's root and the last
checkpoint's cosignature quorum; it does not re-run the write-model's rules (step 4).
"""
import base64
import hashlib
import json
import struct
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def sha256(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


def tagged(tag, data):
    return sha256(tag, b"\x00", data)


def ed25519_ok(public_key, signature, message):
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
        return True
    except InvalidSignature:
        return False


# --- section 4: the record -----------------------------------------------------------------

class BadRecord(Exception):
    pass


def parse_record(b):
    pos = 0

    def take(n, what):
        nonlocal pos
        if len(b) - pos < n:
            raise BadRecord("truncated at " + what)
        out = b[pos:pos + n]
        pos += n
        return out

    (id_len,) = struct.unpack(">H", take(2, "ledger id length"))
    ledger_id = take(id_len, "ledger id")
    if len(ledger_id) != 12 or not ledger_id.isdigit():
        raise BadRecord("ledger id is not 12 digits")
    (seq,) = struct.unpack(">Q", take(8, "seq"))
    prev_hash = take(32, "prev_hash")
    (recorded_at,) = struct.unpack(">q", take(8, "recorded_at"))
    (body_len,) = struct.unpack(">I", take(4, "body length"))
    if body_len > 65536:
        raise BadRecord("body too large")
    body = take(body_len, "body")
    (n,) = struct.unpack(">H", take(2, "signature count"))
    if not 1 <= n <= 16:
        raise BadRecord("signature count out of range")
    sigs = [(take(32, "public key"), take(64, "signature")) for _ in range(n)]
    if pos != len(b):
        raise BadRecord("trailing bytes")
    keys = [k for k, _ in sigs]
    if any(keys[i] >= keys[i + 1] for i in range(len(keys) - 1)):
        raise BadRecord("signers not strictly ascending")
    return dict(ledger_id=ledger_id.decode(), seq=seq, prev_hash=prev_hash, recorded_at=recorded_at, body=body, sigs=sigs)


def proto_field_1(body):
    """The first field of the body, which FORMAT.md section 2 says is ledger_id (tag 0x0a)."""
    if body[0] != 0x0A:
        raise BadRecord("body does not start with ledger_id")
    n = body[1]
    return body[2:2 + n].decode()


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
    """RFC 9162 section 2.1.4.2."""
    if first == second:
        return not proof and first_hash == second_hash
    if first == 0 or first > second:
        return False
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

def parse_verifier_key(s):
    name, key_id, key = s.split("+", 2)  # the base64 key may itself contain '+'
    raw = base64.b64decode(key, validate=True)
    assert raw[0] == 0x01 and len(raw) == 33, "Ed25519 verifier key"
    computed = sha256(name.encode(), b"\n\x01", raw[1:])[:4]
    assert computed.hex() == key_id, "key ID of " + name
    return name, computed, raw[1:]


def open_note(note, known):
    """Returns (text, names of known keys that signed); raises on a bad known signature."""
    assert all(ord(c) >= 0x20 or c == "\n" for c in note), "control characters"
    split = note.rindex("\n\n")
    text, block = note[:split + 1], note[split + 2:]
    signed = []
    for line in block.rstrip("\n").split("\n"):
        assert line.startswith("\u2014 "), "signature line"
        name, b64 = line[2:].split(" ")
        raw = base64.b64decode(b64, validate=True)
        for kname, kid, key in known:
            if kname == name and kid == raw[:4]:
                assert ed25519_ok(key, raw[4:], text.encode()), "signature by " + name
                signed.append(name)
    return text, signed


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
        assert r["seq"] == rv["seq"] == len(record_hashes), "seq"
        assert r["prev_hash"] == prev, "chain link at seq %d" % r["seq"]
        assert r["body"].hex() == rv["body"]
        assert proto_field_1(r["body"]) == r["ledger_id"] == rv["ledger_id"]
        assert signing_message(r["body"]).hex() == rv["signing_message"]
        for key, sig in r["sigs"]:
            assert ed25519_ok(key, sig, signing_message(r["body"])), "signature at seq %d" % r["seq"]
            checks += 1
        h = record_hash(b)
        assert h.hex() == rv["record_hash"], "record hash at seq %d" % r["seq"]
        assert leaf_hash(h).hex() == rv["leaf_hash"]
        record_hashes.append(h)
        prev = h
        checks += 3
    leaves = [leaf_hash(h) for h in record_hashes]
    m = v["merkle"]
    for n, root in enumerate(m["roots_by_size"]):
        assert mth(leaves[:n]).hex() == root, "root of size %d" % n
        checks += 1
    for p in m["inclusion"]:
        i, n = p["index"], p["size"]
        proof = [bytes.fromhex(x) for x in p["proof"]]
        assert verify_inclusion(leaves[i], i, n, proof, mth(leaves[:n])), "inclusion %d/%d" % (i, n)
        bad = list(proof)
        bad[0] = bytes([bad[0][0] ^ 1]) + bad[0][1:]
        assert not verify_inclusion(leaves[i], i, n, bad, mth(leaves[:n]))
        checks += 2
    for p in m["consistency"]:
        o, n = p["old"], p["new"]
        proof = [bytes.fromhex(x) for x in p["proof"]]
        assert verify_consistency(o, n, mth(leaves[:o]), mth(leaves[:n]), proof), "consistency %d->%d" % (o, n)
        checks += 1
    c = v["checkpoint"]
    known = [parse_verifier_key(c["log_verifier_key"])] + [parse_verifier_key(k) for k in c["witness_verifier_keys"]]
    text, signed = open_note(c["note"], known)
    assert text == c["text"] and known[0][0] in signed and len(signed) == len(known), "checkpoint signatures"
    origin, size, root = text.rstrip("\n").split("\n")
    assert origin == c["origin"] and int(size) == m["size"] and str(int(size)) == size
    assert base64.b64decode(root) == mth(leaves[:int(size)]), "checkpoint root"
    checks += 2
    d = v["balance_digest"]
    assert balance_digest(d["households"]).hex() == d["digest"], "balance digest"
    checks += 1
    for bad in v["bad_records"]:
        b = bytes.fromhex(bad["record_bytes"])
        try:
            r = parse_record(b)
        except BadRecord:
            checks += 1
            continue
        assert not all(ed25519_ok(k, s, signing_message(r["body"])) for k, s in r["sigs"]), bad["desc"]
        checks += 1
    print("vectors: %d passed, 0 failed" % checks)


# --- section 11: the year bundle ----------------------------------------------------------

def verify_bundle(path, log_key, witness_keys, quorum):
    data = open(path, "rb").read()
    assert data[:8] == b"JIFENBDL", "magic"
    assert struct.unpack(">HH", data[8:12]) == (1, 0), "version 1, no flags"
    pos, sections = 12, []
    for tag in (0x01, 0x02, 0x03, 0x04, 0xFF):
        assert data[pos] == tag, "section %#x in order" % tag
        (length,) = struct.unpack(">Q", data[pos + 1:pos + 9])
        start = pos + 9
        assert start + length <= len(data), "section %#x truncated" % tag
        if tag == 0xFF:
            assert length == 32 and hashlib.sha256(data[:pos]).digest() == data[start:start + 32], "checksum"
        sections.append(data[start:start + length])
        pos = start + length
    assert pos == len(data), "nothing after END"
    header, recs, cps, proofs = sections[:4]

    def take(buf, at, n):
        assert at + n <= len(buf), "truncated"
        return buf[at:at + n], at + n

    raw, at = take(header, 1, header[0])
    ledger = raw.decode()
    (n,), at = struct.unpack(">H", header[at:at + 2]), at + 2
    origin, at = take(header, at, n)
    (n,), at = struct.unpack(">H", header[at:at + 2]), at + 2
    _hint, at = take(header, at, n)
    year, count, ncp = struct.unpack(">HQI", header[at:at + 14])
    assert at + 14 == len(header), "header length"
    origin = origin.decode()
    assert origin.endswith("/village/" + ledger), "origin names the ledger"

    at, prev, leaves = 0, bytes(32), []
    for seq in range(count):
        (n,), at = struct.unpack(">I", recs[at:at + 4]), at + 4
        b, at = take(recs, at, n)
        r = parse_record(b)
        assert r["seq"] == seq, "first bad record seq %d: found seq %d" % (seq, r["seq"])
        assert r["ledger_id"] == ledger, "ledger id at seq %d" % seq
        assert r["prev_hash"] == prev, "chain breaks between records %d and %d" % (seq - 1, seq)
        for key, sig in r["sigs"]:
            assert ed25519_ok(key, sig, signing_message(r["body"])), "first bad record seq %d: signature" % seq
        prev = record_hash(b)
        leaves.append(leaf_hash(prev))
    assert at == len(recs), "records section length"

    log = parse_verifier_key(log_key)
    assert log[0] == origin, "log key named after the origin"
    witnesses = [parse_verifier_key(k) for k in witness_keys]
    at, checkpoints = 0, []
    for _ in range(ncp):
        (n,), at = struct.unpack(">I", cps[at:at + 4]), at + 4
        note, at = take(cps, at, n)
        text, signed = open_note(note.decode(), [log] + witnesses)
        assert log[0] in signed, "log signature"
        o, size, root = text.rstrip("\n").split("\n")[:3]
        assert o == origin and str(int(size)) == size, "checkpoint text"
        size, root = int(size), base64.b64decode(root, validate=True)
        assert not checkpoints or size > checkpoints[-1][0], "sizes ascend"
        assert mth(leaves[:size]) == root, "fork: the records do not reproduce the root of checkpoint %d" % size
        checkpoints.append((size, root, len(set(signed) - {log[0]})))
    assert at == len(cps), "checkpoints section length"
    assert checkpoints[-1][0] == count, "the last checkpoint covers every record"
    at = 0
    for (o, oroot, _), (nn, nroot, _) in zip(checkpoints, checkpoints[1:]):
        old, new, k = struct.unpack(">QQB", proofs[at:at + 17])
        at += 17
        proof = [proofs[at + 32 * i:at + 32 * i + 32] for i in range(k)]
        at += 32 * k
        assert (old, new) == (o, nn) and verify_consistency(o, nn, oroot, nroot, proof), "consistency %d->%d" % (o, nn)
    assert at == len(proofs), "proofs section length"
    assert checkpoints[-1][2] >= quorum, "witnessed: %d of %d cosignatures" % (checkpoints[-1][2], quorum)
    print("bundle: %d records, %d checkpoints, last witnessed by %d: passed" % (count, len(checkpoints), checkpoints[-1][2]))


# --- section 12: request tokens ----------------------------------------------------------

def b64url(s):
    raw = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    assert base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == s, "canonical base64url"
    return raw


def verify_token(token, method, ledger, now):
    assert len(token) <= 1024
    v, key, payload, sig = token.split(".")
    assert v == "v1"
    key, payload, sig = b64url(key), b64url(payload), b64url(sig)
    assert len(key) == 32 and len(sig) == 64 and ed25519_ok(key, sig, payload), "token signature"
    lines = payload.decode().split("\n")
    assert len(lines) == 6 and lines[5] == "" and lines[0] == "jifen/request/v1", "payload lines"
    _, m, l, issued, nonce, _ = lines
    assert m == method and l == ledger, "method and ledger"
    assert str(int(issued)) == issued and now - 300 <= int(issued) <= now + 30, "fresh"
    assert len(nonce) == 32 and all(c in "0123456789abcdef" for c in nonce), "nonce"
    print("token: key %s, nonce %s: passed" % (key.hex(), nonce))


def cli(args):
    def opt(name, many=False):
        vals = [args[i + 1] for i, a in enumerate(args) if a == name]
        return vals if many else (vals[0] if vals else None)
    if opt("--bundle"):
        verify_bundle(opt("--bundle"), opt("--log-key"), opt("--witness-key", True), int(opt("--quorum") or 1))
    elif opt("--token"):
        verify_token(opt("--token"), opt("--method"), opt("--ledger"), int(opt("--now")))
    else:
        main(args[0] if args else "ledger/testdata/vectors.json")


if __name__ == "__main__":
    try:
        cli(sys.argv[1:])
    except AssertionError as e:
        print("FAILED: %s" % e)
        sys.exit(1)
