// Package authtest mints JWTs and writes JWKS and token files for tests of
// authentication: an Issuer holds an RSA (RS256) and a P-256 (ES256) key,
// publishes them as a JWKS file, and signs tokens with either.
package authtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Issuer signs tokens with keys its JWKS file publishes.
type Issuer struct {
	// JWKSFile is the public key set, for --auth-jwks.
	JWKSFile string
	rsa      *rsa.PrivateKey
	ec       *ecdsa.PrivateKey
	prefix   string
}

// NewIssuer generates keys whose kids start with prefix and writes their
// JWKS to dir/<prefix>-jwks.json.
func NewIssuer(dir, prefix string) (*Issuer, error) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	iss := &Issuer{rsa: rk, ec: ek, prefix: prefix, JWKSFile: filepath.Join(dir, prefix+"-jwks.json")}
	b64 := base64.RawURLEncoding.EncodeToString
	ecPub, err := ek.PublicKey.Bytes() // uncompressed point 0x04 || X || Y
	if err != nil {
		return nil, err
	}
	set := map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": prefix + "-rsa", "use": "sig", "alg": "RS256",
			"n": b64(rk.N.Bytes()), "e": b64(bigEndian(rk.E))},
		{"kty": "EC", "kid": prefix + "-ec", "use": "sig", "alg": "ES256", "crv": "P-256",
			"x": b64(ecPub[1:33]), "y": b64(ecPub[33:])},
	}}
	data, err := json.Marshal(set)
	if err != nil {
		return nil, err
	}
	return iss, os.WriteFile(iss.JWKSFile, data, 0o600)
}

func bigEndian(e int) []byte {
	var out []byte
	for ; e > 0; e >>= 8 {
		out = append([]byte{byte(e)}, out...)
	}
	return out
}

// Alg picks the signing key.
type Alg string

// Signing algorithms an Issuer offers.
const (
	RS256 Alg = "RS256"
	ES256 Alg = "ES256"
)

// Token returns a JWT for role with audience aud, valid from nbf until
// exp, signed with alg. An empty role leaves the claim out.
func (iss *Issuer) Token(alg Alg, role, aud string, nbf, exp time.Time) (string, error) {
	claims := jwt.MapClaims{"sub": "test-" + role, "aud": aud, "nbf": nbf.Unix(), "exp": exp.Unix(), "iat": nbf.Unix()}
	if role != "" {
		claims["role"] = role
	}
	return iss.Sign(alg, claims)
}

// Sign returns a JWT of claims signed with alg, with the key's kid.
func (iss *Issuer) Sign(alg Alg, claims jwt.MapClaims) (string, error) {
	var method jwt.SigningMethod
	var key crypto.Signer
	var kid string
	switch alg {
	case RS256:
		method, key, kid = jwt.SigningMethodRS256, iss.rsa, iss.prefix+"-rsa"
	case ES256:
		method, key, kid = jwt.SigningMethodES256, iss.ec, iss.prefix+"-ec"
	default:
		return "", fmt.Errorf("authtest: unknown alg %q", alg)
	}
	t := jwt.NewWithClaims(method, claims)
	t.Header["kid"] = kid
	return t.SignedString(key)
}

// Valid returns a token for role and aud valid for an hour.
func (iss *Issuer) Valid(alg Alg, role, aud string) (string, error) {
	return iss.Token(alg, role, aud, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
}

// WriteTokenFile writes a token file with one line per role→token pair.
func WriteTokenFile(path string, tokens map[string]string) error {
	var b []byte
	b = append(b, "# role token\n"...)
	for role, tok := range tokens {
		b = append(b, role+" "+tok+"\n"...)
	}
	return os.WriteFile(path, b, 0o600)
}
