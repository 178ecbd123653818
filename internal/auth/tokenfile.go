package auth

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// MinStaticTokenLen is the shortest token a token file may hold: a
// guessable token is no authentication. `openssl rand -hex 32` gives 64.
const MinStaticTokenLen = 24

// TokenFile verifies opaque bearer tokens listed in a file, one
// "ROLE TOKEN" pair per line ('#' at the start of a line or after a space
// starts a comment; a token holding one is refused). The file is re-read
// when it changes (checked at most once a second, a change applied once
// two reads settle apart agree), so tokens are added and revoked by
// editing it: a reload puts exactly the file's valid lines in
// force, so that removing, commenting out or breaking a line revokes its
// token, and a file with no valid line, or one that cannot be read,
// revokes them all (fail closed: found by a review, where an emptied file
// kept every token). Each line a reload skips, and a reload that leaves
// no token, goes to OnError.
//
// Tokens are compared by their SHA-256 in constant time against every
// entry, so neither a token's length nor how much of it matches leaks
// through timing.
type TokenFile struct {
	path    string
	onError func(error)

	mu        sync.Mutex
	entries   []tokenEntry
	stamp     time.Time
	size      int64
	lastCheck time.Time
	// applied is the fingerprint of what is in force; seen, of a change
	// read once and waiting to be read the same again (settle).
	applied, seen string
	// told is the last report, not repeated while the file stays so.
	told string
}

// tokenCheck is how often, at most, a TokenFile looks at its file; settle
// is how soon it reads a changed file again, applying the change only when
// both reads agree, so that a file being written in place (truncated, then
// written at once) is not put in force half-way (found by a review: 13 of
// 227 calls refused during in-place rewrites that kept their token). A
// writer pausing longer than settle between its writes still is: the docs
// say to rename a whole file into place.
const (
	tokenCheck = time.Second
	settle     = 100 * time.Millisecond
)

type tokenEntry struct {
	sum  [sha256.Size]byte
	role Role
	line int
}

// NewTokenFile reads path, failing on a missing file, an unknown role, a
// token shorter than MinStaticTokenLen, a duplicate token or a file with
// no token at all: at start an operator is there to fix it. onError may be
// nil.
func NewTokenFile(path string, onError func(error)) (*TokenFile, error) {
	f := &TokenFile{path: path, onError: onError}
	fi, data, err := f.read()
	if err != nil {
		return nil, err
	}
	entries, lineErrs := parseTokens(data)
	if err := errors.Join(lineErrs...); err != nil {
		return nil, fmt.Errorf("token file %s: %w", path, err)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("token file %s: no token in the file", path)
	}
	f.entries, f.stamp, f.size = entries, fi.ModTime(), fi.Size()
	f.applied = fingerprint(data, nil)
	f.lastCheck = time.Now()
	return f, nil
}

// fingerprint names a read of the file: its content, or its error.
func fingerprint(data []byte, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	sum := sha256.Sum256(data)
	return string(sum[:])
}

func (f *TokenFile) read() (os.FileInfo, []byte, error) {
	fi, err := os.Stat(f.path)
	if err != nil {
		return nil, nil, fmt.Errorf("token file: %w", err)
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		return nil, nil, fmt.Errorf("token file: %w", err)
	}
	return fi, data, nil
}

// apply puts the file's valid lines in force (none when it could not be
// read: fail closed), and returns what it skipped.
func (f *TokenFile) apply(fi os.FileInfo, data []byte, readErr error) []error {
	if readErr != nil {
		f.entries, f.stamp, f.size = nil, time.Time{}, -1
		return []error{fmt.Errorf("%w: every token is revoked until it can be read", readErr)}
	}
	entries, errs := parseTokens(data)
	for i, e := range errs {
		errs[i] = fmt.Errorf("token file %s: %w: the line grants nothing", f.path, e)
	}
	if len(entries) == 0 {
		errs = append(errs, fmt.Errorf("token file %s: no token in the file: every call is refused", f.path))
	}
	f.entries, f.stamp, f.size = entries, fi.ModTime(), fi.Size()
	return errs
}

// parseTokens returns the entries of the valid lines, and an error for
// each other line that is not blank or a comment.
func parseTokens(data []byte) ([]tokenEntry, []error) {
	var out []tokenEntry
	var errs []error
	seen := map[[sha256.Size]byte]int{}
	// Windows editors start UTF-8 files with a byte order mark.
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		for i, fl := range fields {
			if strings.HasPrefix(fl, "#") {
				fields = fields[:i]
				break
			}
		}
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 2 {
			errs = append(errs, fmt.Errorf("line %d: want ROLE TOKEN", n))
			continue
		}
		role, err := ParseRole(fields[0])
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", n, err))
			continue
		}
		if strings.Contains(fields[1], "#") {
			// Releases before this one took it for the start of a comment:
			// refused rather than read as another token than it was.
			errs = append(errs, fmt.Errorf("line %d: '#' inside the token: a comment needs a space before its '#', and a token cannot hold one", n))
			continue
		}
		if len(fields[1]) < MinStaticTokenLen {
			errs = append(errs, fmt.Errorf("line %d: token shorter than %d characters", n, MinStaticTokenLen))
			continue
		}
		sum := sha256.Sum256([]byte(fields[1]))
		if prev, dup := seen[sum]; dup {
			errs = append(errs, fmt.Errorf("line %d: same token as line %d", n, prev))
			continue
		}
		seen[sum] = n
		out = append(out, tokenEntry{sum: sum, role: role, line: n})
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, err)
	}
	return out, errs
}

// current returns the entries, re-reading the file when it changed.
func (f *TokenFile) current() []tokenEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	wait := tokenCheck
	if f.seen != "" {
		wait = settle
	}
	if time.Since(f.lastCheck) < wait {
		return f.entries
	}
	f.lastCheck = time.Now()
	if fi, err := os.Stat(f.path); f.seen == "" && err == nil && fi.ModTime().Equal(f.stamp) && fi.Size() == f.size {
		return f.entries
	}
	fi, data, err := f.read()
	fp := fingerprint(data, err)
	switch {
	case fp == f.applied:
		f.seen = ""
		if err == nil {
			f.stamp, f.size = fi.ModTime(), fi.Size()
		}
		return f.entries
	case fp != f.seen:
		f.seen = fp // read again in a moment: it may be half-written
		return f.entries
	}
	f.seen, f.applied = "", fp
	errs := f.apply(fi, data, err)
	if told := fmt.Sprint(errs); told != f.told {
		f.told = told
		for _, e := range errs {
			if f.onError != nil {
				f.onError(e)
			}
		}
	}
	return f.entries
}

// Verify implements Verifier.
func (f *TokenFile) Verify(_ context.Context, token string) (Principal, error) {
	sum := sha256.Sum256([]byte(token))
	var match *tokenEntry
	entries := f.current()
	for i := range entries {
		// No early exit: every entry is compared.
		if subtle.ConstantTimeCompare(sum[:], entries[i].sum[:]) == 1 {
			match = &entries[i]
		}
	}
	if match == nil {
		return Principal{}, fmt.Errorf("%w: not a known static token", ErrInvalidToken)
	}
	return Principal{Subject: fmt.Sprintf("token:%s:line%d", match.role, match.line), Role: match.role}, nil
}
