package benchmark

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// The floor is the least a TLS relay between two networks can do: three
// processes (source hop: TCP in, TLS out; relay hop: TLS in, TLS out;
// destination hop: TLS in, TCP out to the target), one TLS connection per
// TCP connection, bytes copied both ways with no framing. What Warren adds
// beyond it is the price of its protocol: multiplexing over one WebSocket,
// frames, tokens, the API.

// Hop modes.
const (
	hopSource      = "source"
	hopRelay       = "relay"
	hopDestination = "destination"
)

// HopMain runs one hop of the floor chain (`warren bench-hop`) until ctx is
// done. It listens on one loopback port per --to address, prints
// "listening ADDR,ADDR..." on stdout, and forwards each accepted
// connection to the address at the same position.
func HopMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("warren bench-hop", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mode := fs.String("mode", "", "source, relay or destination")
	to := fs.String("to", "", "comma-separated addresses to forward to")
	certFile := fs.String("cert", "", "PEM certificate (and CA) of the chain")
	keyFile := fs.String("key", "", "PEM key of --cert")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	h, err := newHop(*mode, strings.Split(*to, ","), *certFile, *keyFile)
	if err != nil {
		fmt.Fprintln(stderr, "warren bench-hop:", err)
		return 2
	}
	addrs, err := h.listen()
	if err != nil {
		fmt.Fprintln(stderr, "warren bench-hop:", err)
		return 1
	}
	fmt.Fprintf(stdout, "listening %s\n", strings.Join(addrs, ","))
	h.serve(ctx)
	return 0
}

// hop is one process of the floor chain.
type hop struct {
	in, out *tls.Config // nil: plain TCP on that side
	to      []string
	lns     []net.Listener
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
}

func newHop(mode string, to []string, certFile, keyFile string) (*hop, error) {
	if len(to) == 0 || to[0] == "" {
		return nil, errors.New("--to is required")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	server := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	client := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	h := &hop{to: to, conns: map[net.Conn]struct{}{}}
	switch mode {
	case hopSource:
		h.out = client
	case hopRelay:
		h.in, h.out = server, client
	case hopDestination:
		h.in = server
	default:
		return nil, fmt.Errorf("--mode %q: want source, relay or destination", mode)
	}
	return h, nil
}

func (h *hop) listen() ([]string, error) {
	var addrs []string
	for range h.to {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			h.closeListeners()
			return nil, err
		}
		h.lns = append(h.lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs, nil
}

func (h *hop) closeListeners() {
	for _, ln := range h.lns {
		ln.Close()
	}
}

// serve accepts until ctx is done, then closes every connection and waits
// for every goroutine.
func (h *hop) serve(ctx context.Context) {
	for i, ln := range h.lns {
		h.wg.Go(func() { h.accept(ln, h.to[i]) })
	}
	<-ctx.Done()
	h.closeListeners()
	h.mu.Lock()
	for c := range h.conns {
		c.Close()
	}
	h.conns = nil
	h.mu.Unlock()
	h.wg.Wait()
}

func (h *hop) accept(ln net.Listener, to string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if h.in != nil {
			c = tls.Server(c, h.in)
		}
		if !h.track(c) {
			c.Close()
			return
		}
		h.wg.Go(func() { h.forward(c, to) })
	}
}

// track registers c for closing at shutdown; false when shutdown began.
func (h *hop) track(c net.Conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conns == nil {
		return false
	}
	h.conns[c] = struct{}{}
	return true
}

func (h *hop) untrack(c net.Conn) {
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
	c.Close()
}

func (h *hop) forward(in net.Conn, to string) {
	defer h.untrack(in)
	d := net.Dialer{Timeout: 10 * time.Second}
	var out net.Conn
	var err error
	if h.out != nil {
		out, err = (&tls.Dialer{NetDialer: &d, Config: h.out}).Dial("tcp", to)
	} else {
		out, err = d.Dial("tcp", to)
	}
	if err != nil {
		return
	}
	if !h.track(out) {
		out.Close()
		return
	}
	defer h.untrack(out)
	done := make(chan struct{})
	go func() {
		pipe(out, in)
		close(done)
	}()
	pipe(in, out)
	<-done
}

// pipe copies src to dst and then passes the end of src on as a half
// close, so each direction ends on its own.
func pipe(dst, src net.Conn) {
	io.Copy(dst, src)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	} else {
		dst.Close()
	}
}

// writeChainCert makes a throwaway self-signed certificate for 127.0.0.1
// and writes it and its key into dir.
func writeChainCert(dir string) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "warren bench floor"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "floor-cert.pem"), filepath.Join(dir, "floor-key.pem")
	err = errors.Join(
		os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600),
		os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600),
	)
	return certFile, keyFile, err
}
