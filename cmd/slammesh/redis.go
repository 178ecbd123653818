package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"
)

// redisCAParam is the URL query parameter naming the CA file of a rediss://
// URL, as an alternative to --redis-ca; go-redis does not know it, so it
// is taken out before the URL is parsed.
const redisCAParam = "tls_ca"

// redisOptions is the one place a Redis client's options are built from
// configuration: the URL (redis:// or rediss://, with user:password@ for an
// ACL user), a CA file for rediss:// (--redis-ca, or tls_ca= in the URL),
// and a password file (REDIS_PASSWORD_FILE) that keeps the password out of
// the URL, the environment and the process list.
func redisOptions(rawURL string, sec securityConfig) (*redis.Options, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: redis URL: %w", errUsage, redactErr(err, rawURL))
	}
	caFile := sec.redisCA
	q := u.Query()
	if v := q.Get(redisCAParam); v != "" {
		if caFile != "" && caFile != v {
			return nil, fmt.Errorf("%w: redis CA given twice: --redis-ca %s and %s=%s in the URL", errUsage, caFile, redisCAParam, v)
		}
		caFile = v
		q.Del(redisCAParam)
		u.RawQuery = q.Encode()
	}
	opts, err := redis.ParseURL(u.String())
	if err != nil {
		return nil, fmt.Errorf("%w: redis URL %s: %w", errUsage, u.Redacted(), redactErr(err, rawURL))
	}
	if caFile != "" {
		if opts.TLSConfig == nil {
			return nil, fmt.Errorf("%w: a Redis CA (%s) needs a rediss:// URL, got %s", errUsage, caFile, u.Redacted())
		}
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("redis CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis CA %s holds no PEM certificate", caFile)
		}
		opts.TLSConfig.RootCAs = pool
	}
	if opts.TLSConfig != nil {
		opts.TLSConfig.MinVersion = tls.VersionTLS12
	}
	if sec.redisPasswordFile != "" {
		if opts.Password != "" {
			return nil, fmt.Errorf("%w: Redis password given twice: in the URL and in %s", errUsage, sec.redisPasswordFile)
		}
		b, err := os.ReadFile(sec.redisPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("redis password file: %w", err)
		}
		opts.Password = strings.TrimRight(string(b), "\r\n")
		if opts.Password == "" {
			return nil, fmt.Errorf("redis password file %s is empty", sec.redisPasswordFile)
		}
	}
	return opts, nil
}

// redactErr removes the URL's password from a parse error's text.
func redactErr(err error, rawURL string) error {
	u, perr := url.Parse(rawURL)
	if perr != nil || u.User == nil {
		return err
	}
	if pw, ok := u.User.Password(); ok && pw != "" {
		return errors.New(strings.ReplaceAll(err.Error(), pw, "xxxxx"))
	}
	return err
}

// redisStartError explains why the first PING failed when the cause is
// one an operator fixes in the configuration: a server certificate the CA
// does not sign, a TLS/plaintext mismatch, or credentials.
func redisStartError(opts *redis.Options, sec securityConfig, err error) error {
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var verifyErr *tls.CertificateVerificationError
	var recordErr tls.RecordHeaderError
	msg := err.Error()
	switch {
	case errors.As(err, &unknownCA) || (errors.As(err, &verifyErr) && !errors.As(err, &hostErr)):
		ca := sec.redisCA
		if ca == "" {
			ca = "the system roots (no --redis-ca / SLAMMESH_REDIS_CA given)"
		}
		return fmt.Errorf("redis at %s: TLS: the server's certificate is not signed by the Redis CA %s: %w", opts.Addr, ca, err)
	case errors.As(err, &hostErr):
		return fmt.Errorf("redis at %s: TLS: the server's certificate is not valid for that host name: %w", opts.Addr, err)
	case errors.As(err, &recordErr):
		return fmt.Errorf("redis at %s: TLS handshake got a non-TLS answer: the port serves plaintext, use redis:// (or the server's TLS port): %w", opts.Addr, err)
	case opts.TLSConfig == nil && strings.Contains(msg, "EOF"):
		return fmt.Errorf("redis at %s: connection closed at once: if that port serves TLS, use a rediss:// URL: %w", opts.Addr, err)
	case strings.HasPrefix(msg, "WRONGPASS"), strings.HasPrefix(msg, "NOAUTH"), strings.HasPrefix(msg, "NOPERM"):
		return fmt.Errorf("redis at %s: authentication as %q refused (check the URL's user:password@ or REDIS_PASSWORD_FILE, and the user's ACL, docs/security.md): %w", opts.Addr, userOrDefault(opts.Username), err)
	}
	return fmt.Errorf("redis at %s: %w", opts.Addr, err)
}

func userOrDefault(u string) string {
	if u == "" {
		return "default"
	}
	return u
}
