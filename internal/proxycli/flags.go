// Command-line and --config file parsing, compatible with the official
// proxy's boost::program_options setup: -t X, --access-token X,
// --access-token=X, -tX, grouped switches and unique long prefixes.

package proxycli

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// option is one command-line option, named as the official proxy names it.
type option struct {
	long, short string
	flag        bool // takes no value
	help        string
}

// optionSet is a program's options: the local proxy's, or the agent's.
type optionSet []option

var options = optionSet{
	{"help", "h", true, "show this help and exit"},
	{"version", "V", true, "show the version and exit"},
	{"access-token", "t", false, "access token of the tunnel side (or " + envAccessToken + ")"},
	{"client-token", "i", false, "client token, 32-128 of [a-zA-Z0-9-] (or " + envClientToken + "); generated when absent"},
	{"proxy-endpoint", "e", false, "relay endpoint host[:port], default port 443 (or " + envEndpoint + ")"},
	{"region", "r", false, "AWS region of the tunnel; the endpoint is derived from it (or " + envRegion + ")"},
	{"source-listen-port", "s", false, "source mode: SERVICE=PORT[,SERVICE=PORT...] or a single PORT"},
	{"destination-app", "d", false, "destination mode: SERVICE=[HOST:]PORT|PATH[,...] or a single [HOST:]PORT"},
	{"local-bind-address", "b", false, "address to listen on (source) or default target host (destination)"},
	{"capath", "c", false, "PEM file or directory of CA certificates trusted besides the system roots"},
	{"no-ssl-host-verify", "k", true, "INSECURE, tests only: do not verify the relay's certificate"},
	{"export-default-settings", "", false, "write the default fine-grained settings as JSON to FILE and exit"},
	{"settings-json", "", false, "read fine-grained settings from a JSON FILE"},
	{"config", "", false, "read options (name = value lines) from FILE; the command line wins"},
	{"verbose", "v", false, "log level 0-6: 0 off, 1 fatal, 2 error, 3 warning, 4 info (default), 5 debug, 6 trace"},
	{"mode", "m", false, "src|source or dst|destination"},
	{"destination-client-type", "y", false, "V1 or V2 to talk to an older peer (default V3)"},
	{"config-dir", "", false, "directory of service mapping files (default ./config when present)"},
}

// Usage writes the option summary.
func Usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: localproxy [options]\n\nOptions:\n")
	options.usage(w)
}

func (opts optionSet) usage(w io.Writer) {
	for _, o := range opts {
		name := "--" + o.long
		if o.short != "" {
			name = "-" + o.short + ", " + name
		}
		if !o.flag {
			name += " ARG"
		}
		fmt.Fprintf(w, "  %-34s %s\n", name, o.help)
	}
}

func (opts optionSet) lookupLong(name string) (option, error) {
	var found []option
	for _, o := range opts {
		if o.long == name {
			return o, nil
		}
		if name != "" && strings.HasPrefix(o.long, name) {
			found = append(found, o)
		}
	}
	switch len(found) {
	case 1: // an unambiguous prefix, as the official parser allows
		return found[0], nil
	case 0:
		return option{}, fmt.Errorf("unrecognised option '--%s'", name)
	}
	return option{}, fmt.Errorf("option '--%s' is ambiguous", name)
}

func (opts optionSet) lookupShort(c string) (option, error) {
	for _, o := range opts {
		if o.short == c {
			return o, nil
		}
	}
	return option{}, fmt.Errorf("unrecognised option '-%s'", c)
}

// parseCommandLine returns option values by long name ("true" for flags).
func (opts optionSet) parseCommandLine(args []string) (map[string]string, error) {
	vals := map[string]string{}
	set := func(o option, v string) error {
		if _, dup := vals[o.long]; dup {
			return fmt.Errorf("option '--%s' cannot be specified more than once", o.long)
		}
		vals[o.long] = v
		return nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			if i+1 < len(args) {
				return nil, fmt.Errorf("unexpected argument %q", args[i+1])
			}
			return vals, nil
		case strings.HasPrefix(a, "--"):
			name, v, hasVal := strings.Cut(a[2:], "=")
			o, err := opts.lookupLong(name)
			if err != nil {
				return nil, err
			}
			switch {
			case o.flag && hasVal:
				return nil, fmt.Errorf("option '--%s' takes no value", o.long)
			case o.flag:
				v = "true"
			case !hasVal:
				if i+1 >= len(args) {
					return nil, fmt.Errorf("the required argument for option '--%s' is missing", o.long)
				}
				i++
				v = args[i]
			}
			if err := set(o, v); err != nil {
				return nil, err
			}
		case strings.HasPrefix(a, "-") && len(a) > 1:
			// Short options: switches may be grouped (-kV); an option that
			// takes a value takes the rest of the word (-v6) or the next one.
			rest := a[1:]
			for rest != "" {
				o, err := opts.lookupShort(rest[:1])
				if err != nil {
					return nil, err
				}
				rest = rest[1:]
				if o.flag {
					if err := set(o, "true"); err != nil {
						return nil, err
					}
					continue
				}
				v := rest
				if v == "" {
					if i+1 >= len(args) {
						return nil, fmt.Errorf("the required argument for option '--%s' is missing", o.long)
					}
					i++
					v = args[i]
				}
				if err := set(o, v); err != nil {
					return nil, err
				}
				rest = ""
			}
		default:
			return nil, fmt.Errorf("unexpected argument %q", a)
		}
	}
	return vals, nil
}

// parseConfigFile reads "name = value" lines (the official --config format:
// long option names, '#' comments, [section] prefixes).
func (opts optionSet) parseConfigFile(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	vals := map[string]string{}
	section := ""
	for n, line := range strings.Split(string(data), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = strings.TrimSpace(line[1:len(line)-1]) + "."
			continue
		}
		name, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("config file %s line %d: want name = value", path, n+1)
		}
		name = section + strings.TrimSpace(name)
		v = strings.TrimSpace(v)
		o, err := opts.lookupLong(name)
		if err != nil || o.long != name {
			return nil, fmt.Errorf("config file %s line %d: unrecognised option %q", path, n+1, name)
		}
		if o.flag {
			b, err := parseBool(v)
			if err != nil {
				return nil, fmt.Errorf("config file %s line %d: %s: %w", path, n+1, name, err)
			}
			if !b {
				continue
			}
			v = "true"
		}
		if _, dup := vals[name]; dup {
			return nil, fmt.Errorf("config file %s: option %q given more than once", path, name)
		}
		vals[name] = v
	}
	return vals, nil
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "true", "yes", "on", "1":
		return true, nil
	case "false", "no", "off", "0":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean", s)
}
