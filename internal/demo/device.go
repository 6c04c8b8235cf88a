package demo

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Device is the sample web server the demo's "device" runs: one page that
// references n resources, each a small script of resourceSize bytes served
// after a short think time, like a page of an embedded web UI.
type Device struct {
	srv       *http.Server
	ln        net.Listener
	wg        sync.WaitGroup
	resources int
}

const (
	resourceSize = 16 << 10
	// thinkTime is what an embedded device spends producing each resource;
	// it makes the benefit of parallel connections visible on loopback,
	// where the tunnel alone adds well under a millisecond.
	thinkTime = 10 * time.Millisecond
)

// StartDevice serves the sample page on a free loopback port.
func StartDevice(resources int) (*Device, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	d := &Device{ln: ln, resources: resources}
	mux := http.NewServeMux()
	mux.HandleFunc("/", d.page)
	mux.HandleFunc("/r/", d.resource)
	d.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.srv.Serve(ln)
	}()
	return d, nil
}

// Addr is the device web server's address.
func (d *Device) Addr() string { return d.ln.Addr().String() }

// Close stops the server and waits for it.
func (d *Device) Close() {
	d.srv.Close()
	d.wg.Wait()
}

func (d *Device) page(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	var b strings.Builder
	b.WriteString("<!doctype html>\n<html><head><title>Warren demo device</title></head><body>\n")
	b.WriteString("<h1>Hello from the device, through a Warren tunnel</h1>\n")
	fmt.Fprintf(&b, "<p>This page loads %d scripts; your browser fetches them over simultaneous connections through one tunnel.</p>\n<p id=\"n\">0 loaded</p>\n", d.resources)
	b.WriteString("<script>var loaded=0;function done(){document.getElementById('n').textContent=(++loaded)+' loaded';}</script>\n")
	for i := 0; i < d.resources; i++ {
		fmt.Fprintf(&b, "<script src=\"/r/%d.js\" async onload=\"done()\"></script>\n", i)
	}
	b.WriteString("</body></html>\n")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	io.WriteString(w, b.String())
}

func (d *Device) resource(w http.ResponseWriter, r *http.Request) {
	select {
	case <-time.After(thinkTime):
	case <-r.Context().Done():
		return
	}
	w.Header().Set("Content-Type", "text/javascript")
	w.Header().Set("Cache-Control", "no-store")
	body := resourceBody(r.URL.Path)
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.Write(body)
}

// resourceBody is a deterministic script of resourceSize bytes for path.
func resourceBody(path string) []byte {
	seed := sha256.Sum256([]byte(path))
	line := fmt.Sprintf("// %x\n", seed[:])
	var b strings.Builder
	for b.Len()+len(line) <= resourceSize {
		b.WriteString(line)
	}
	b.WriteString(strings.Repeat("/", resourceSize-b.Len()))
	return []byte(b.String())
}

var resourceRef = regexp.MustCompile(`src="(/r/[0-9]+\.js)"`)

// LoadPage fetches base's page and then all its resources over at most
// parallel simultaneous connections, checking every body, and returns how
// long it took.
func LoadPage(ctx context.Context, base string, parallel int) (time.Duration, error) {
	tr := &http.Transport{MaxConnsPerHost: parallel, MaxIdleConnsPerHost: parallel, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	start := time.Now()
	page, err := get(ctx, client, base+"/")
	if err != nil {
		return 0, err
	}
	refs := resourceRef.FindAllStringSubmatch(string(page), -1)
	if len(refs) == 0 {
		return 0, errors.New("page has no resources")
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	for _, m := range refs {
		path := m[1]
		g.Go(func() error {
			body, err := get(gctx, client, base+path)
			if err != nil {
				return err
			}
			if string(body) != string(resourceBody(path)) {
				return fmt.Errorf("%s: body differs from what the device sent", path)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func get(ctx context.Context, c *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return body, nil
}
