// Command tlogcheck verifies jifen's test vectors with Go's golang.org/x/mod/sumdb packages:
// note.Open must open the cosigned checkpoint, and tlog must agree on record hashes, the tree
// root, and the inclusion and consistency proofs (docs/FORMAT.md sections 5 and 6).
//
// Run from the repository root: GO111MODULE=off GOPATH=/usr/share/gocode go run tests/interop/tlogcheck.go ledger/testdata/vectors.json
package main

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type proof struct {
	Index int64    `json:"index"`
	Size  int64    `json:"size"`
	Old   int64    `json:"old"`
	New   int64    `json:"new"`
	Proof []string `json:"proof"`
}

type vectors struct {
	Records []struct {
		RecordHash string `json:"record_hash"`
		LeafHash   string `json:"leaf_hash"`
	} `json:"records"`
	Merkle struct {
		RootsBySize []string `json:"roots_by_size"`
		Inclusion   []proof  `json:"inclusion"`
		Consistency []proof  `json:"consistency"`
	} `json:"merkle"`
	Checkpoint struct {
		Origin         string   `json:"origin"`
		Text           string   `json:"text"`
		Note           string   `json:"note"`
		LogVerifierKey string   `json:"log_verifier_key"`
		WitnessKeys    []string `json:"witness_verifier_keys"`
	} `json:"checkpoint"`
}

func hash(s string) tlog.Hash {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		fail("bad hash %q", s)
	}
	var h tlog.Hash
	copy(h[:], b)
	return h
}

func hashes(ss []string) []tlog.Hash {
	out := make([]tlog.Hash, len(ss))
	for i, s := range ss {
		out[i] = hash(s)
	}
	return out
}

var passed int

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "tlogcheck: "+format+"\n", args...)
	fmt.Printf("go interop: %d passed, 1 failed\n", passed)
	os.Exit(1)
}

func main() {
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail("%v", err)
	}
	var v vectors
	if err := json.Unmarshal(raw, &v); err != nil {
		fail("%v", err)
	}

	// Record hashes are tlog's "record data": tlog.RecordHash(data) = SHA-256(0x00 || data).
	var stored []tlog.Hash
	for i, r := range v.Records {
		data, _ := hex.DecodeString(r.RecordHash)
		leaf := tlog.RecordHash(data)
		if leaf != hash(r.LeafHash) {
			fail("record %d: leaf hash differs", i)
		}
		more, err := tlog.StoredHashes(int64(i), data, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
			out := make([]tlog.Hash, len(idx))
			for j, x := range idx {
				out[j] = stored[x]
			}
			return out, nil
		}))
		if err != nil {
			fail("%v", err)
		}
		stored = append(stored, more...)
		passed++
	}
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for j, x := range idx {
			out[j] = stored[x]
		}
		return out, nil
	})
	for n, want := range v.Merkle.RootsBySize {
		if n == 0 {
			continue // tlog does not define the empty tree's hash
		}
		got, err := tlog.TreeHash(int64(n), reader)
		if err != nil || got != hash(want) {
			fail("tree hash of size %d differs", n)
		}
		passed++
	}
	for _, p := range v.Merkle.Inclusion {
		root := hash(v.Merkle.RootsBySize[p.Size])
		leaf := hash(v.Records[p.Index].LeafHash)
		if err := tlog.CheckRecord(tlog.RecordProof(hashes(p.Proof)), p.Size, root, p.Index, leaf); err != nil {
			fail("inclusion %d in %d: %v", p.Index, p.Size, err)
		}
		ours, err := tlog.ProveRecord(p.Size, p.Index, reader)
		if err != nil || len(ours) != len(p.Proof) {
			fail("tlog's own proof of %d in %d differs in length", p.Index, p.Size)
		}
		for i := range ours {
			if ours[i] != hash(p.Proof[i]) {
				fail("tlog's own proof of %d in %d differs at %d", p.Index, p.Size, i)
			}
		}
		passed += 2
	}
	for _, p := range v.Merkle.Consistency {
		if err := tlog.CheckTree(tlog.TreeProof(hashes(p.Proof)), p.New, hash(v.Merkle.RootsBySize[p.New]), p.Old, hash(v.Merkle.RootsBySize[p.Old])); err != nil {
			fail("consistency %d -> %d: %v", p.Old, p.New, err)
		}
		passed++
	}

	// The checkpoint opens with note.Open under the log key and the witness keys.
	c := v.Checkpoint
	var verifiers []note.Verifier
	for _, k := range append([]string{c.LogVerifierKey}, c.WitnessKeys...) {
		ver, err := note.NewVerifier(k)
		if err != nil {
			fail("verifier key %q: %v", k, err)
		}
		verifiers = append(verifiers, ver)
	}
	n, err := note.Open([]byte(c.Note), note.VerifierList(verifiers...))
	if err != nil {
		fail("note.Open: %v", err)
	}
	if n.Text != c.Text || len(n.Sigs) != len(verifiers) {
		fail("note text or verified signatures differ: %d of %d", len(n.Sigs), len(verifiers))
	}
	lines := strings.Split(strings.TrimSuffix(n.Text, "\n"), "\n")
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || lines[0] != c.Origin {
		fail("checkpoint text %q", n.Text)
	}
	root, _ := base64.StdEncoding.DecodeString(lines[2])
	if tlog.Hash(hash(hex.EncodeToString(root))) != hash(v.Merkle.RootsBySize[size]) {
		fail("checkpoint root differs from the tree of size %d", size)
	}
	passed += 2
	// A note signed only by an unknown key does not open.
	if _, err := note.Open([]byte(c.Note), note.VerifierList()); err == nil {
		fail("note opened with no known key")
	}
	passed++
	fmt.Printf("go interop: %d passed, 0 failed\n", passed)
}
