package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// JWT verification settings.
const (
	// jwtLeeway tolerates clock skew between the token issuer and us.
	jwtLeeway = 30 * time.Second
	// jwksRefresh is how often a JWKS URL is fetched again (key rotation);
	// a token naming an unknown kid triggers an early fetch, at most once
	// per jwksMinRefetch.
	jwksRefresh    = 5 * time.Minute
	jwksMinRefetch = 30 * time.Second
	jwksMaxBytes   = 1 << 20
	// jwksFetchTimeout bounds a fetch of a JWKS URL, whatever the
	// configured HTTP client.
	jwksFetchTimeout = 10 * time.Second
)

// JWKSConfig configures a JWKS verifier.
type JWKSConfig struct {
	// Source is a JWKS (RFC 7517) file path or an https:// URL (http://
	// only on loopback). Files are re-read when they change, URLs every five minutes.
	Source string
	// Audience must appear in the token's aud claim. Required: a token
	// minted for another service must not open this one.
	Audience string
	// Issuer, when set, must equal the token's iss claim.
	Issuer string
	// RoleClaim names the claim holding the role: a string, or an array of
	// strings of which the highest known role counts. Empty means "role",
	// falling back to "roles".
	RoleClaim string
	// HTTPClient fetches URLs; nil means a client with a 10 s timeout.
	HTTPClient *http.Client
	// Now is the clock; nil means time.Now (tests move it).
	Now func() time.Time
	// OnError is told when a refresh fails (the previous keys stay); may be nil.
	OnError func(error)
}

// JWKS verifies JWTs signed with RS256 or ES256 by a key of a JSON Web Key
// Set, checking exp (required), nbf (when present), aud and optionally iss,
// with 30 s of leeway for clock skew.
type JWKS struct {
	cfg    JWKSConfig
	parser *jwt.Parser

	mu        sync.Mutex
	keys      map[string]crypto.PublicKey // by kid
	fetched   time.Time
	fileStamp time.Time
	// inflight is closed when the URL fetch under way ends; nil when none is.
	inflight chan struct{}
}

// NewJWKS loads the key set once (failing when it cannot be read or holds
// no usable key) and returns the verifier.
func NewJWKS(ctx context.Context, cfg JWKSConfig) (*JWKS, error) {
	if cfg.Audience == "" {
		return nil, errors.New("jwks: an audience is required (--auth-audience)")
	}
	if err := checkJWKSURL(cfg.Source); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: jwksFetchTimeout,
			CheckRedirect: func(req *http.Request, _ []*http.Request) error { return checkJWKSURL(req.URL.String()) }}
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{"RS256", "ES256"}),
		jwt.WithAudience(cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(jwtLeeway),
		jwt.WithTimeFunc(cfg.Now),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	j := &JWKS{cfg: cfg, parser: jwt.NewParser(opts...)}
	if err := j.refresh(ctx); err != nil {
		return nil, err
	}
	return j, nil
}

// checkJWKSURL refuses an http:// JWKS URL off loopback: whoever sits on
// the path could hand us their own keys and mint admin tokens.
func checkJWKSURL(source string) error {
	if !strings.HasPrefix(source, "http://") {
		return nil
	}
	u, err := url.Parse(source)
	if err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		return nil
	}
	return fmt.Errorf("jwks %s: plain http off loopback lets anyone on the path substitute the keys; use https://", source)
}

func (j *JWKS) isURL() bool {
	return strings.HasPrefix(j.cfg.Source, "https://") || strings.HasPrefix(j.cfg.Source, "http://")
}

// refresh loads the key set; j.mu must not be held.
func (j *JWKS) refresh(ctx context.Context) error {
	var data []byte
	var stamp time.Time
	if j.isURL() {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.cfg.Source, nil)
		if err != nil {
			return fmt.Errorf("jwks %s: %w", j.cfg.Source, err)
		}
		resp, err := j.cfg.HTTPClient.Do(req)
		if err != nil {
			return fmt.Errorf("jwks: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("jwks %s: HTTP %s", j.cfg.Source, resp.Status)
		}
		if data, err = io.ReadAll(io.LimitReader(resp.Body, jwksMaxBytes)); err != nil {
			return fmt.Errorf("jwks %s: %w", j.cfg.Source, err)
		}
	} else {
		fi, err := os.Stat(j.cfg.Source)
		if err != nil {
			return fmt.Errorf("jwks: %w", err)
		}
		if data, err = os.ReadFile(j.cfg.Source); err != nil {
			return fmt.Errorf("jwks: %w", err)
		}
		stamp = fi.ModTime()
	}
	keys, err := parseJWKS(data)
	if err != nil {
		return fmt.Errorf("jwks %s: %w", j.cfg.Source, err)
	}
	j.mu.Lock()
	j.keys, j.fetched, j.fileStamp = keys, j.cfg.Now(), stamp
	j.mu.Unlock()
	return nil
}

// maybeRefresh reloads the set when it is due: a changed file, a URL past
// jwksRefresh, or (unknownKid) a URL not fetched for jwksMinRefetch. A
// file is read at once (a revoked key must not verify the next call). A
// URL is fetched apart from the call that found it due, under its own
// timeout: a slow identity provider must not hold up the call that
// happened to come when the five minutes were up (nor, since every token
// is tried as a JWT first, the static tokens' callers), and a caller that
// gives up must not cancel the fetch for the others. Only a token naming a
// kid the set lacks (keys rotated) waits, up to its own deadline, for the
// fetch it started or for the one under way: the rotated keys may be in
// that one, whichever call started it.
func (j *JWKS) maybeRefresh(ctx context.Context, unknownKid bool) {
	j.mu.Lock()
	age := j.cfg.Now().Sub(j.fetched)
	stamp := j.fileStamp
	due := false
	var done chan struct{}
	if j.isURL() {
		due = age > jwksRefresh || (unknownKid && age > jwksMinRefetch)
		if due {
			// Claim the fetch: calls arriving meanwhile (say, a burst of
			// tokens naming made-up kids) wait for it or use the keys at
			// hand instead of each sending the identity provider a request.
			j.fetched = j.cfg.Now()
			j.inflight = make(chan struct{})
		}
		done = j.inflight
	}
	j.mu.Unlock()
	if !j.isURL() && age > time.Second {
		fi, err := os.Stat(j.cfg.Source)
		due = err == nil && !fi.ModTime().Equal(stamp)
		if !due {
			j.mu.Lock()
			j.fetched = j.cfg.Now()
			j.mu.Unlock()
		}
	}
	if due && !j.isURL() {
		j.reload(ctx)
		return
	}
	if due {
		go func() {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), jwksFetchTimeout)
			defer cancel()
			j.reload(fctx)
			j.mu.Lock()
			if j.inflight == done {
				j.inflight = nil
			}
			j.mu.Unlock()
			close(done)
		}()
	}
	if !unknownKid || done == nil {
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// reload refreshes the set, keeping the previous keys and reporting to
// OnError when that fails.
func (j *JWKS) reload(ctx context.Context) {
	if err := j.refresh(ctx); err != nil {
		j.mu.Lock()
		j.fetched = j.cfg.Now() // do not hammer a failing source
		j.mu.Unlock()
		if j.cfg.OnError != nil {
			j.cfg.OnError(err)
		}
	}
}

func (j *JWKS) key(kid string) (crypto.PublicKey, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if kid == "" && len(j.keys) == 1 {
		for _, k := range j.keys {
			return k, true
		}
	}
	k, ok := j.keys[kid]
	return k, ok
}

// maxNumericDate is the last second of the year 9999 (RFC 7519 §2's
// NumericDate, seconds since the epoch): a later exp is a mistake, not a
// lifetime.
const maxNumericDate = 253402300799

// Verify implements Verifier.
func (j *JWKS) Verify(ctx context.Context, token string) (Principal, error) {
	j.maybeRefresh(ctx, false)
	claims := jwt.MapClaims{}
	_, err := j.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		k, ok := j.key(kid)
		if !ok {
			j.maybeRefresh(ctx, true)
			if k, ok = j.key(kid); !ok {
				return nil, fmt.Errorf("no key with kid %q", kid)
			}
		}
		switch t.Method.Alg() {
		case "RS256":
			if _, ok := k.(*rsa.PublicKey); !ok {
				return nil, fmt.Errorf("key %q is not an RSA key", kid)
			}
		case "ES256":
			if ec, ok := k.(*ecdsa.PublicKey); !ok || ec.Curve != elliptic.P256() {
				return nil, fmt.Errorf("key %q is not a P-256 key", kid)
			}
		}
		return k, nil
	})
	if exp, ok := claims["exp"].(float64); ok && errors.Is(err, jwt.ErrTokenExpired) && exp > maxNumericDate {
		// golang-jwt reads a time past int64's nanoseconds as one long
		// gone (found by a review: exp 1e20 was "token is expired").
		err = fmt.Errorf("exp %g is no date: after the year 9999", exp)
	}
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	role, err := j.role(claims)
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	// The caller's name is what every line the call logs carries (who
	// cancelled or deleted a mission): a token that names nobody is
	// refused (found by a review: an admin token without sub logged
	// principal ""). RFC 9068 §2.2 requires sub of a JWT access token.
	sub, err := claims.GetSubject()
	if err != nil || strings.TrimSpace(sub) == "" {
		return Principal{}, fmt.Errorf("%w: no sub claim naming the caller (a string, RFC 9068 §2.2): the mesh logs who made each call", ErrInvalidToken)
	}
	return Principal{Subject: sub, Role: role}, nil
}

// role reads the role claim: a string, or the highest known role of an
// array; unknown role names in an array are ignored (an IdP may carry
// roles of other applications there).
func (j *JWKS) role(claims jwt.MapClaims) (Role, error) {
	names := []string{j.cfg.RoleClaim}
	if j.cfg.RoleClaim == "" {
		names = []string{"role", "roles"}
	}
	for _, name := range names {
		switch v := claims[name].(type) {
		case nil:
			continue
		case string:
			return ParseRole(v)
		case []any:
			best := RoleNone
			for _, e := range v {
				if s, ok := e.(string); ok {
					if r, err := ParseRole(s); err == nil && r > best {
						best = r
					}
				}
			}
			if best == RoleNone {
				return RoleNone, fmt.Errorf("claim %q names no known role", name)
			}
			return best, nil
		default:
			return RoleNone, fmt.Errorf("claim %q is neither a string nor an array", name)
		}
	}
	return RoleNone, fmt.Errorf("no role claim (%s)", strings.Join(names, " or "))
}

// jwk is the part of RFC 7517/7518 keys that RS256 and ES256 need.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseJWKS returns the signature keys of a set by kid; keys of other
// types or uses are skipped, a malformed RSA or EC key is an error.
func parseJWKS(data []byte) (map[string]crypto.PublicKey, error) {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, err
	}
	out := map[string]crypto.PublicKey{}
	for i, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		var pub crypto.PublicKey
		var err error
		switch k.Kty {
		case "RSA":
			pub, err = rsaKey(k)
		case "EC":
			pub, err = ecKey(k)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("keys[%d] (kid %q): %w", i, k.Kid, err)
		}
		out[k.Kid] = pub
	}
	if len(out) == 0 {
		return nil, errors.New("no RSA or P-256 signature key")
	}
	return out, nil
}

func b64int(s string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	return new(big.Int).SetBytes(b), nil
}

func rsaKey(k jwk) (*rsa.PublicKey, error) {
	n, err := b64int(k.N)
	if err != nil {
		return nil, fmt.Errorf("n: %w", err)
	}
	e, err := b64int(k.E)
	if err != nil {
		return nil, fmt.Errorf("e: %w", err)
	}
	if n.BitLen() < 2048 {
		return nil, fmt.Errorf("RSA modulus of %d bits, want at least 2048", n.BitLen())
	}
	if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31 {
		return nil, errors.New("bad RSA exponent")
	}
	return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
}

func ecKey(k jwk) (*ecdsa.PublicKey, error) {
	if k.Crv != "P-256" {
		return nil, fmt.Errorf("curve %q, want P-256", k.Crv)
	}
	x, err := b64int(k.X)
	if err != nil {
		return nil, fmt.Errorf("x: %w", err)
	}
	y, err := b64int(k.Y)
	if err != nil {
		return nil, fmt.Errorf("y: %w", err)
	}
	if x.BitLen() > 256 || y.BitLen() > 256 {
		return nil, errors.New("coordinate longer than 32 bytes")
	}
	// Build the uncompressed point and let crypto/ecdh-backed parsing check
	// that it lies on the curve.
	point := make([]byte, 65)
	point[0] = 4
	x.FillBytes(point[1:33])
	y.FillBytes(point[33:])
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		return nil, err
	}
	return pub, nil
}
