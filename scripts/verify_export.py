#!/usr/bin/env python3
"""Verify a FAFCab audit export without FAFCab's code: Python 3 standard library only.

    fafcab audit export --ledger budget --format json --output budget.jsonl
    python3 scripts/verify_export.py budget.jsonl
    fafcab audit export --ledger all --format csv --output log.csv
    python3 scripts/verify_export.py log.csv --digest <hex> --position <n>

For every event it recomputes the content hash (`payload_hash`: hash version 1 or the version 2
Merkle root, with the subtree hashes a redaction recorded standing in for blanked values) and the
chain hash, and checks that each event links to the previous one of its stream. With --digest and
--position (on an export of `--ledger all`) it also recomputes the log digest. docs/AUDIT.md
explains every formula. Exit 0 when everything verifies, 1 at the first failure, 2 on bad input.
"""

import csv
import hashlib
import json
import sys


class Num(str):
    """A JSON number, kept as its exact text (the hashes cover the text, e.g. 49.90)."""


def load(text):
    return json.loads(text, parse_float=Num, parse_int=Num)


def jstr(s):
    # serde_json's escaping: \" \\ \b \f \n \r \t, other control characters as \u00xx, the rest raw.
    return json.dumps(s, ensure_ascii=False)


def canonical(v):
    """JSON with object keys sorted (by code point) and no whitespace."""
    if isinstance(v, dict):
        return "{" + ",".join(jstr(k) + ":" + canonical(v[k]) for k in sorted(v)) + "}"
    if isinstance(v, list):
        return "[" + ",".join(canonical(x) for x in v) + "]"
    if isinstance(v, Num):
        return str(v)
    if isinstance(v, str):
        return jstr(v)
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    raise ValueError(f"not JSON: {v!r}")


def sha256(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


def merkle(v, path, overrides):
    """Hash version 2: s = SHA-256("s" ‖ canonical(v)), a = SHA-256("a" ‖ h(item)…),
    o = SHA-256("o" ‖ (json(key) ‖ h(value))…) with keys sorted; a redacted value's recorded
    subtree hash stands in for it (by JSON pointer)."""
    if overrides and path in overrides:
        return overrides[path]
    h = hashlib.sha256()
    if isinstance(v, dict):
        h.update(b"o")
        for k in sorted(v):
            h.update(jstr(k).encode())
            h.update(merkle(v[k], path + "/" + k.replace("~", "~0").replace("/", "~1"), overrides))
    elif isinstance(v, list):
        h.update(b"a")
        for i, x in enumerate(v):
            h.update(merkle(x, f"{path}/{i}", overrides))
    else:
        h.update(b"s")
        h.update(canonical(v).encode())
    return h.digest()


def pointer(doc, ptr):
    """RFC 6901 JSON pointer; (found, value)."""
    if ptr == "":
        return True, doc
    cur = doc
    for part in ptr.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return False, None
    return True, cur


def content_hash_ok(version, payload, redaction, recorded):
    if redaction is not None:
        # A redacted value must really be gone.
        for p in redaction["paths"]:
            found, value = pointer(payload, p)
            if not found or value is not None:
                return False
    if version == 1:
        if redaction is None:
            return sha256(canonical(payload).encode()) == recorded
        rph = redaction.get("redacted_payload_hash")
        return rph is not None and sha256(canonical(payload).encode()).hex() == rph
    if version == 2:
        overrides = {}
        if redaction is not None:
            for p, h in redaction["paths"].items():
                if h is None:
                    return False
                overrides[p] = bytes.fromhex(h)
        return merkle(payload, "", overrides) == recorded
    return False


HEADER_METADATA = ("actor", "causation_id", "command_id", "correlation_id")


def chain_hash(row, prev):
    """SHA-256(prev chain hash ‖ canonical(header) ‖ content hash); None when the metadata is not
    exactly the four hashed keys, each a string (docs/AUDIT.md: a broken chain hash)."""
    meta = row["metadata"]
    if not isinstance(meta, dict) or sorted(meta) != sorted(HEADER_METADATA):
        return None
    if not all(isinstance(meta[k], str) and not isinstance(meta[k], Num) for k in HEADER_METADATA):
        return None
    header = {
        "aggregate_type": row["aggregate_type"],
        "aggregate_id": row["aggregate_id"],
        "sequence": Num(str(row["sequence"])),
        "event_type": row["event_type"],
        "event_version": row["event_version"],
        "event_id": row["event_id"],
        "recorded_at": row["recorded_at"],
        "metadata": {k: row["metadata"][k] for k in HEADER_METADATA},
    }
    return sha256(prev, canonical(header).encode(), row["content_hash"])


def rows(path):
    """The export's events, JSON columns parsed, numbers as ints, hashes as bytes."""
    with open(path, newline="", encoding="utf-8") as f:
        first = f.read(1)
        f.seek(0)
        if first == "{":
            source = (load(line) for line in f if line.strip())
        else:
            source = csv.DictReader(f)
        for r in source:
            row = dict(r)
            for k in ("metadata", "payload", "redaction"):
                if isinstance(row[k], str):
                    row[k] = load(row[k]) if row[k] != "" else None
            for k in ("position", "sequence", "hash_version"):
                row[k] = int(row[k])
            for k in ("content_hash", "prev_chain_hash", "chain_hash"):
                row[k] = bytes.fromhex(row[k])
            yield row


def main(argv):
    args = argv[1:]
    digest = position = None
    try:
        if "--digest" in args:
            i = args.index("--digest")
            digest = bytes.fromhex(args[i + 1])
            del args[i : i + 2]
        if "--position" in args:
            i = args.index("--position")
            position = int(args[i + 1])
            del args[i : i + 2]
        (path,) = args
    except (ValueError, IndexError):
        print(__doc__, file=sys.stderr)
        return 2
    if (digest is None) != (position is None):
        print("--digest and --position go together", file=sys.stderr)
        return 2
    heads = {}  # stream -> (last sequence, last chain hash)
    acc = bytes(32)
    events = 0
    last_position = 0
    for row in rows(path):
        stream = (row["aggregate_type"], row["aggregate_id"])
        where = f"position {row['position']} ({stream[0]}/{stream[1]} #{row['sequence']})"
        if row["position"] <= last_position:
            print(f"FAIL at {where}: positions are not ascending")
            return 1
        last_position = row["position"]
        seq, prev = heads.get(stream, (0, b""))
        if row["sequence"] != seq + 1 or row["prev_chain_hash"] != prev:
            print(f"FAIL at {where}: does not follow the stream's previous event")
            return 1
        if not content_hash_ok(row["hash_version"], row["payload"], row["redaction"], row["content_hash"]):
            print(f"FAIL at {where}: the content hash does not match the payload")
            return 1
        if chain_hash(row, prev) != row["chain_hash"]:
            print(f"FAIL at {where}: the chain hash does not match")
            return 1
        heads[stream] = (row["sequence"], row["chain_hash"])
        if position is not None and row["position"] <= position:
            acc = sha256(acc, row["position"].to_bytes(8, "big"), row["chain_hash"])
        events += 1
    print(f"ok: {events} events in {len(heads)} streams, every content hash and chain link verified")
    if digest is not None:
        if acc != digest:
            print(f"MISMATCH: digest up to position {position} is {acc.hex()}, not {digest.hex()}")
            return 1
        print(f"ok: digest up to position {position} matches")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
