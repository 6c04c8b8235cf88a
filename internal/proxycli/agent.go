// The `localproxy agent` subcommand: the device agent's command line and
// --config file, in the local proxy's option syntax, around package agent.
// The official proxy takes no positional argument, so a first argument
// "agent" cannot clash with its command line.

package proxycli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/warrentunnel/warren/internal/agent"
	"github.com/warrentunnel/warren/internal/localproxy"
)

// AgentCommand is the first argument that selects the device agent.
const AgentCommand = "agent"

var agentOptions = optionSet{
	{"help", "h", true, "show this help and exit"},
	{"version", "V", true, "show the version and exit"},
	{"endpoint", "", false, "MQTT broker: host[:port] or mqtts://host[:port] (TLS, default port 8883, mutual TLS with --cert/--key), mqtt://host[:port] (plain TCP, 1883)"},
	{"thing-name", "", false, "this device's thing name; notifications arrive on $aws/things/NAME/tunnels/notify"},
	{"client-id", "", false, "MQTT client id (default: the thing name)"},
	{"cert", "", false, "PEM certificate the device authenticates to the broker with"},
	{"key", "", false, "PEM private key of --cert"},
	{"ca", "", false, "PEM file or directory of the CA certificates that verify the broker (default: the system roots)"},
	{"destination-app", "d", false, "SERVICE=[HOST:]PORT|PATH[,...]: where each service of a tunnel connects"},
	{"config-dir", "", false, "directory of service mapping files, for services -d does not name"},
	{"proxy-endpoint", "e", false, "relay endpoint host[:port] of the destinations (default: from the notification's region)"},
	{"proxy-ca", "c", false, "PEM file or directory of CA certificates trusted for the relay besides the system roots"},
	{"local-bind-address", "b", false, "default target host of a bare port (default 127.0.0.1)"},
	{"settings-json", "", false, "read fine-grained local proxy settings from a JSON FILE"},
	{"max-tunnels", "", false, "destinations running at once; a notification past it stops the oldest (default 10)"},
	{"verbose", "v", false, "log level 0-6: 0 off, 1 fatal, 2 error, 3 warning, 4 info (default), 5 debug, 6 trace"},
	{"config", "", false, "read options (name = value lines) from FILE; the command line wins"},
}

// AgentUsage writes the agent's option summary.
func AgentUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: localproxy agent [options]\n\n"+
		"Runs a destination local proxy for each tunnel notification of the thing.\n\nOptions:\n")
	agentOptions.usage(w)
}

// AgentOptions is a parsed agent command line.
type AgentOptions struct {
	agent.Config
	Verbosity int
}

// ParseAgentArgs parses the agent's command line (after "agent"); options on
// the command line win over a --config file. env is read for HTTPS_PROXY.
func ParseAgentArgs(args []string, env func(string) string) (AgentOptions, error) {
	if env == nil {
		env = func(string) string { return "" }
	}
	vals, err := agentOptions.parseCommandLine(args)
	if err != nil {
		return AgentOptions{}, err
	}
	if _, ok := vals["version"]; ok {
		return AgentOptions{}, ErrVersion
	}
	if _, ok := vals["help"]; ok {
		return AgentOptions{}, ErrHelp
	}
	if p, ok := vals["config"]; ok {
		file, err := agentOptions.parseConfigFile(p)
		if err != nil {
			return AgentOptions{}, err
		}
		for k, v := range file {
			if _, set := vals[k]; !set {
				vals[k] = v
			}
		}
	}
	o := AgentOptions{Verbosity: 4}
	if v, ok := vals["verbose"]; ok {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			return AgentOptions{}, fmt.Errorf("invalid value %q for --verbose: want a number 0-6", v)
		}
		o.Verbosity = min(int(n), 6)
	}
	ep, ok := vals["endpoint"]
	if !ok {
		return AgentOptions{}, errors.New("missing --endpoint: the MQTT broker")
	}
	if o.Broker, err = agent.BrokerURL(ep); err != nil {
		return AgentOptions{}, err
	}
	if o.TLS, err = agent.BrokerTLS(o.Broker, vals["cert"], vals["key"], vals["ca"]); err != nil {
		return AgentOptions{}, err
	}
	if o.ThingName, ok = vals["thing-name"]; !ok {
		return AgentOptions{}, errors.New("missing --thing-name")
	}
	o.ClientID = vals["client-id"]
	if v, ok := vals["max-tunnels"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return AgentOptions{}, fmt.Errorf("invalid value %q for --max-tunnels: want a number 1-1000", v)
		}
		o.MaxTunnels = n
	}
	if err := o.applyMapping(vals); err != nil {
		return AgentOptions{}, err
	}
	if err := o.applyRelay(vals, env); err != nil {
		return AgentOptions{}, err
	}
	return o, nil
}

func (o *AgentOptions) applyMapping(vals map[string]string) error {
	if spec, ok := vals["destination-app"]; ok {
		m, warnings, err := ParseMapping(spec, localproxy.ModeDestination)
		if err != nil {
			return err
		}
		if _, unnamed := m[""]; unnamed {
			return errors.New("-d/--destination-app: name each service (SERVICE=PORT): a notification names its services")
		}
		if len(warnings) > 0 {
			return errors.New(warnings[0])
		}
		o.Services = m
	}
	if dir, ok := vals["config-dir"]; ok {
		files, err := mappingFiles(dir)
		if err != nil {
			return fmt.Errorf("invalid configuration directory %s: %w", dir, err)
		}
		o.ConfigFiles = files
	}
	if len(o.Services) == 0 && len(o.ConfigFiles) == 0 {
		return errors.New("map the device's services: give -d/--destination-app SERVICE=PORT[,...] or --config-dir")
	}
	return nil
}

// applyRelay fills the destinations' template: the relay endpoint and CA as
// the local proxy's -e and -c take them, settings, bind address, web proxy.
func (o *AgentOptions) applyRelay(vals map[string]string, env func(string) string) error {
	lp := Options{}
	lp.Settings = localproxy.DefaultSettings()
	if p, ok := vals["settings-json"]; ok {
		if err := loadSettingsJSON(p, &lp.Settings); err != nil {
			return err
		}
	}
	if ep, ok := vals["proxy-endpoint"]; ok {
		ep = strings.ToLower(ep) // as the local proxy's -e
		if err := localproxy.ValidateEndpoint(ep); err != nil {
			return fmt.Errorf("-e/--proxy-endpoint: %w", err)
		}
		lp.Endpoint = ep
	}
	if c, ok := vals["proxy-ca"]; ok {
		if c == "" {
			return errors.New("-c/--proxy-ca needs a path")
		}
		lp.CAPath = c
	}
	if b, ok := vals["local-bind-address"]; ok {
		if !localproxy.ValidHost(b) {
			return fmt.Errorf("invalid local bind address %q", b)
		}
		lp.BindAddress = b
	}
	if err := lp.applyWebProxy(env); err != nil {
		return err
	}
	o.Proxy = lp.Config
	return nil
}

// agentMain runs `localproxy agent` and returns its exit status: 0 after a
// clean stop (SIGTERM), 1 for a bad command line.
func agentMain(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) int {
	o, err := ParseAgentArgs(args, env)
	switch {
	case errors.Is(err, ErrHelp):
		AgentUsage(stderr)
		return 0
	case errors.Is(err, ErrVersion):
		fmt.Fprintf(stdout, "Warren local proxy %s\n", localproxy.Version)
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "localproxy agent: %v\nTry 'localproxy agent --help' for a list of options.\n", err)
		return 1
	}
	o.Logger = localproxy.NewLogger(stderr, o.Verbosity)
	a, err := agent.New(o.Config)
	if err != nil {
		fmt.Fprintf(stderr, "localproxy agent: %v\n", err)
		return 1
	}
	if err := a.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "localproxy agent: %v\n", err)
		return 1
	}
	return 0
}
