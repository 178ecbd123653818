package auth

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
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
// "ROLE TOKEN" pair per line ('#' starts a comment). The file is re-read
// when it changes (checked at most once a second), so tokens are added and
// revoked by editing it; a file that fails to parse leaves the previous
// tokens in force and the error goes to OnError.
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
}

type tokenEntry struct {
	sum  [sha256.Size]byte
	role Role
	line int
}

// NewTokenFile reads path, failing on a missing file, an unknown role, a
// token shorter than MinStaticTokenLen, a duplicate token or a file with
// no token at all. onError may be nil.
func NewTokenFile(path string, onError func(error)) (*TokenFile, error) {
	f := &TokenFile{path: path, onError: onError}
	if err := f.reload(); err != nil {
		return nil, err
	}
	f.lastCheck = time.Now()
	return f, nil
}

func (f *TokenFile) reload() error {
	fi, err := os.Stat(f.path)
	if err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	entries, err := parseTokens(data)
	if err != nil {
		return fmt.Errorf("token file %s: %w", f.path, err)
	}
	f.entries, f.stamp, f.size = entries, fi.ModTime(), fi.Size()
	return nil
}

func parseTokens(data []byte) ([]tokenEntry, error) {
	var out []tokenEntry
	seen := map[[sha256.Size]byte]int{}
	// Windows editors start UTF-8 files with a byte order mark.
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 2 {
			return nil, fmt.Errorf("line %d: want ROLE TOKEN", n)
		}
		role, err := ParseRole(fields[0])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if len(fields[1]) < MinStaticTokenLen {
			return nil, fmt.Errorf("line %d: token shorter than %d characters", n, MinStaticTokenLen)
		}
		sum := sha256.Sum256([]byte(fields[1]))
		if prev, dup := seen[sum]; dup {
			return nil, fmt.Errorf("line %d: same token as line %d", n, prev)
		}
		seen[sum] = n
		out = append(out, tokenEntry{sum: sum, role: role, line: n})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no token in the file")
	}
	return out, nil
}

// current returns the entries, re-reading the file when it changed.
func (f *TokenFile) current() []tokenEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	if time.Since(f.lastCheck) < time.Second {
		return f.entries
	}
	f.lastCheck = time.Now()
	fi, err := os.Stat(f.path)
	if err == nil && fi.ModTime().Equal(f.stamp) && fi.Size() == f.size {
		return f.entries
	}
	if err == nil {
		err = f.reload()
	}
	if err != nil && f.onError != nil {
		f.onError(err)
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
