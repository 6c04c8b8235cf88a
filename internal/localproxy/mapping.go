package localproxy

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
)

// resolve checks the tunnel's service ids against the mapping, the way the
// official proxy does, and completes the mapping on the first call:
//   - an unnamed mapping (-s 5555) adopts the tunnel's only service id;
//   - an empty mapping is filled from the --config-dir files, and in source
//     mode services found nowhere listen on a free port;
//   - otherwise the configured ids must be exactly the tunnel's ids.
//
// Later calls (reconnects) require the same ids as the resolved mapping.
func (e *engine) resolve(ids []string) error {
	ids = dedupe(ids)
	if e.resolved {
		if _, unnamed := e.mapping[""]; unnamed && len(ids) == 0 {
			return nil // still a tunnel without services
		}
		if e.cfg.PartialMapping && e.cfg.Mode == ModeDestination {
			m, err := e.partial(e.mapping, ids)
			if err != nil || len(m) == len(e.mapping) {
				return err
			}
		}
		return sameServices(e.mapping, ids)
	}
	m := e.mapping
	_, unnamed := m[""]
	switch {
	case unnamed && len(m) == 1:
		switch len(ids) {
		case 0: // a tunnel without services: frames carry no service id
		case 1:
			m = map[string]string{ids[0]: m[""]}
			e.log.Info("unnamed mapping adopts the tunnel's service", "service", ids[0], "endpoint", m[ids[0]])
		default:
			return fmt.Errorf("%w: a single unnamed mapping serves a tunnel with exactly one service, this one has %v", ErrServiceMismatch, ids)
		}
	case len(m) == 0:
		var err error
		if m, err = e.mappingFromFiles(ids); err != nil {
			return err
		}
	case e.cfg.PartialMapping && e.cfg.Mode == ModeDestination:
		var err error
		if m, err = e.partial(m, ids); err != nil {
			return err
		}
	default:
		if err := sameServices(m, ids); err != nil {
			return err
		}
	}
	e.mapping = m
	e.resolved = true
	return nil
}

// partial keeps the mapped services the tunnel has (at least one) for a
// destination with Config.PartialMapping; the tunnel's other services are
// refused, each of their starts answered with a reset.
func (e *engine) partial(m map[string]string, ids []string) (map[string]string, error) {
	served := map[string]string{}
	var refused []string
	for _, id := range ids {
		if ep, ok := m[id]; ok {
			served[id] = ep
		} else {
			refused = append(refused, id)
		}
	}
	if len(served) == 0 {
		return nil, sameServices(m, ids)
	}
	if len(refused) > 0 {
		e.log.Warn("the tunnel has services without a mapping; refusing them", "services", refused)
	}
	return served, nil
}

// resolveWithoutServiceIDs completes the mapping for a V1 relay, which sends
// no SERVICE_IDS: a V1 tunnel has one unnamed service.
func (e *engine) resolveWithoutServiceIDs() error {
	if len(e.mapping) != 1 {
		return fmt.Errorf("%w: a V1 tunnel carries one service; configure exactly one mapping (have %d)", ErrServiceMismatch, len(e.mapping))
	}
	e.resolved = true
	return nil
}

func sameServices(m map[string]string, ids []string) error {
	ok := len(m) == len(ids)
	for _, id := range ids {
		if _, found := m[id]; !found {
			ok = false
		}
	}
	if ok {
		return nil
	}
	have := make([]string, 0, len(m))
	for id := range m {
		have = append(have, id)
	}
	slices.Sort(have)
	return fmt.Errorf("%w: configured %v, tunnel has %v; start the local proxy with the tunnel's service ids", ErrServiceMismatch, have, ids)
}

func dedupe(ids []string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// mappingFromFiles looks the tunnel's services up in the configuration
// files; the first file that names a service wins.
func (e *engine) mappingFromFiles(ids []string) (map[string]string, error) {
	m, err := MappingFromFiles(e.cfg.ConfigFiles, ids, e.cfg.Mode, e.log)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, id := range ids {
		if _, ok := m[id]; !ok {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		if e.cfg.Mode == ModeDestination {
			return nil, fmt.Errorf("%w: no destination configured for service(s) %v", ErrServiceMismatch, missing)
		}
		for _, id := range missing {
			m[id] = "0" // listen on a free port
		}
	}
	return m, nil
}

// MappingFromFiles looks services ids up in --config-dir files (ini files
// of SERVICE=ENDPOINT lines) and returns the ones found; the first file that
// names a service wins. A file that does not parse is skipped with a
// warning on log; an endpoint that is not valid for mode is an error.
func MappingFromFiles(files, ids []string, mode Mode, log *slog.Logger) (map[string]string, error) {
	m := map[string]string{}
	for _, f := range files {
		if len(m) == len(ids) {
			break
		}
		kv, err := readMappingFile(f)
		if err != nil {
			log.Warn("skipping configuration file", "file", f, "err", err)
			continue
		}
		for _, id := range ids {
			if _, done := m[id]; done {
				continue
			}
			if ep, ok := kv[id]; ok {
				if err := ValidateMappingEndpoint(ep, mode); err != nil {
					return nil, fmt.Errorf("configuration file %s: service %s: %w", f, id, err)
				}
				m[id] = ep
			}
		}
	}
	return m, nil
}

// readMappingFile parses an ini file of SERVICE=ENDPOINT lines. As with the
// official proxy's ini parser, keys inside [sections] are not top-level
// service ids, and a malformed file is skipped whole.
func readMappingFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	kv := map[string]string{}
	inSection := false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == ';' || line[0] == '#':
			continue
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") {
				return nil, fmt.Errorf("line %d: bad section header", n)
			}
			inSection = true
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: want SERVICE=ENDPOINT", n)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if inSection {
			continue
		}
		if _, dup := kv[k]; dup {
			return nil, fmt.Errorf("line %d: duplicate key %s", n, k)
		}
		kv[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return kv, nil
}

// isPort reports whether ep is a bare port number.
func isPort(ep string) bool {
	if ep == "" {
		return false
	}
	for i := 0; i < len(ep); i++ {
		if ep[i] < '0' || ep[i] > '9' {
			return false
		}
	}
	return true
}

// listenAddr is where a source service listens: a bare port on the bind
// address, or the mapping's own host:port.
func (e *engine) listenAddr(ep string) string {
	if !isPort(ep) {
		return ep
	}
	host := e.cfg.BindAddress
	if host == "" {
		host = e.cfg.Settings.DefaultBindAddress
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), ep)
}

// target is where a destination service connects: a unix socket path, a
// bare port on the bind address (127.0.0.1 by default), or host:port.
func (e *engine) target(service string) (network, addr string, err error) {
	ep, ok := e.mapping[service]
	if !ok {
		return "", "", errors.New("no mapping for service " + service)
	}
	switch {
	case strings.Contains(ep, "/"):
		return "unix", ep, nil
	case isPort(ep):
		host := e.cfg.BindAddress
		if host == "" {
			host = "127.0.0.1"
		}
		return "tcp", net.JoinHostPort(strings.Trim(host, "[]"), ep), nil
	}
	return "tcp", ep, nil
}
