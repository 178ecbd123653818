// Package meshtlstest issues throwaway certificates for tests: a CA, and
// server and client certificates it signs, written as PEM files. Keys are
// ECDSA P-256; certificates are valid from an hour ago for a day.
package meshtlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a certificate authority that issues certificates into Dir.
type CA struct {
	Name string
	// CertFile is the CA certificate as PEM: what peers pass as --tls-ca.
	CertFile string
	Dir      string
	cert     *x509.Certificate
	key      *ecdsa.PrivateKey
}

// Usage says what a certificate is for.
type Usage int

// Certificate usages (extended key usage, RFC 5280 §4.2.1.12).
const (
	Server Usage = 1 << iota
	Client
	// Any is anyExtendedKeyUsage, which crypto/x509 accepts for every
	// purpose.
	Any
)

// Cert is an issued certificate and its key, as PEM files.
type Cert struct {
	CertFile string
	KeyFile  string
	// DER is the certificate, to compare with what a peer presented.
	DER []byte
}

// NewCA creates a self-signed CA named name, writing name-ca.pem into dir.
func NewCA(dir, name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name + " test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	ca := &CA{Name: name, Dir: dir, cert: cert, key: key, CertFile: filepath.Join(dir, name+"-ca.pem")}
	return ca, writePEM(ca.CertFile, "CERTIFICATE", der)
}

// Issue signs a certificate for name (its common name and a DNS SAN) with
// the given usages; hosts become further SANs (IPs or DNS names). It
// writes <name>.pem and <name>-key.pem into the CA's Dir, replacing them if
// present (a rotation).
func (ca *CA) Issue(name string, usage Usage, hosts ...string) (Cert, error) {
	return ca.IssueValid(name, usage, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), hosts...)
}

// IssueValid is Issue with the validity period [notBefore, notAfter], e.g.
// in the past for an expired certificate.
func (ca *CA) IssueValid(name string, usage Usage, notBefore, notAfter time.Time, hosts ...string) (Cert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Cert{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if usage&Server != 0 {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if usage&Any != 0 {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageAny)
	}
	if usage&Client != 0 {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return Cert{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Cert{}, err
	}
	c := Cert{CertFile: filepath.Join(ca.Dir, name+".pem"), KeyFile: filepath.Join(ca.Dir, name+"-key.pem"), DER: der}
	// Key first: a reader between the two writes sees a new key with the
	// old certificate, which fails to load and is retried, never a silent
	// mismatch that loads.
	if err := writePEM(c.KeyFile, "PRIVATE KEY", keyDER); err != nil {
		return Cert{}, err
	}
	return c, writePEM(c.CertFile, "CERTIFICATE", der)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(fmt.Sprintf("meshtlstest: crypto/rand: %v", err)) // never fails since Go 1.24
	}
	return n
}

// writePEM writes one PEM block through a temporary file and a rename, as
// a rotation tool would, so readers never see half a file.
func writePEM(path, typ string, der []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
