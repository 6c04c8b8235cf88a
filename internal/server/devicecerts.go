package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"path/filepath"
	"time"

	"github.com/warrentunnel/warren/internal/api"
	"github.com/warrentunnel/warren/internal/mqttbroker"
)

// Files of the device CA in the data directory: the CA that signs the
// certificates CreateKeysAndCertificate makes, and that the MQTT broker
// checks devices' certificates against. (Devices check the broker with the
// server's CA, ca.pem.)
const (
	DeviceCAFile      = "device-ca.pem"
	deviceCAKeyFile   = "device-ca-key.pem"
	deviceCertSubject = "Warren device certificate"
)

// deviceCA signs device certificates; it is the api's DeviceCA.
type deviceCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func loadOrCreateDeviceCA(dir string) (*deviceCA, error) {
	cert, key, err := loadOrCreateCAFiles(filepath.Join(dir, DeviceCAFile), filepath.Join(dir, deviceCAKeyFile), "Warren device CA")
	if err != nil {
		return nil, fmt.Errorf("device CA: %w", err)
	}
	return &deviceCA{cert: cert, key: key}, nil
}

// pool is the CA as a certificate pool, for the broker's client checks.
func (ca *deviceCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// deviceCertExpiry is when every device certificate expires, the date AWS
// IoT gives the certificates it creates.
var deviceCertExpiry = time.Date(2049, 12, 31, 23, 59, 59, 0, time.UTC)

// Issue makes a key pair and a client certificate for it. The private key
// exists only in the result.
func (ca *deviceCA) Issue() (api.IssuedCertificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return api.IssuedCertificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: deviceCertSubject, Organization: []string{"Warren"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     deviceCertExpiry,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return api.IssuedCertificate{}, fmt.Errorf("sign device certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return api.IssuedCertificate{}, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return api.IssuedCertificate{}, err
	}
	priv, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return api.IssuedCertificate{}, err
	}
	return api.IssuedCertificate{
		ID:             mqttbroker.CertificateID(cert),
		CertificatePEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		PublicKeyPEM:   string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})),
		PrivateKeyPEM:  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv})),
	}, nil
}
