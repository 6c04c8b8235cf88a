// Package proxycli is the local proxy's command line: the official proxy's
// flags, exit statuses and messages around package localproxy's engine. It
// owns the parsing that makes a localproxy.Config: options from the command
// line, a --config file and the environment (ParseArgs), the --settings-json
// and --export-default-settings files, the listing of --config-dir and the
// HTTPS_PROXY web proxy, and the device agent's command line (`localproxy
// agent`, around package agent). It does not own anything the engine does at run
// time, such as reading the --config-dir files when the tunnel's service ids
// arrive. cmd/localproxy and warren's re-executed benchmark processes both
// run Main.
//
// Exit statuses follow the official proxy: 0 after a clean stop, a tunnel
// closed by the relay or a handshake the relay rejected (4xx); 1 for a bad
// command line, a service id mismatch or any other fatal error.
package proxycli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/warrentunnel/warren/internal/localproxy"
)

// Main runs the local proxy with command-line args (without the program
// name) and environment env until ctx is done, and returns its exit status.
// A first argument "agent" runs the device agent instead (see agentMain).
func Main(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == AgentCommand {
		return agentMain(ctx, args[1:], env, stdout, stderr)
	}
	cfg, err := ParseArgs(args, env)
	switch {
	case errors.Is(err, ErrHelp):
		Usage(stderr)
		return 0
	case errors.Is(err, ErrVersion):
		fmt.Fprintf(stdout, "Warren local proxy %s\n", localproxy.Version)
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "localproxy: %v\nTry 'localproxy --help' for a list of options.\n", err)
		return 1
	}
	if cfg.ExportSettingsPath != "" {
		if err := ExportDefaultSettings(cfg.ExportSettingsPath); err != nil {
			fmt.Fprintf(stderr, "localproxy: %v\n", err)
			return 1
		}
		return 0
	}
	cfg.Logger = localproxy.NewLogger(stderr, cfg.Verbosity)
	for _, w := range cfg.Warnings {
		cfg.Logger.Warn(w)
	}
	err = localproxy.Run(ctx, cfg.Config)
	var he *localproxy.HandshakeError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, localproxy.ErrTunnelClosed):
		fmt.Fprintf(stderr, "localproxy: %v\n", err)
		return 0
	case errors.As(err, &he):
		// Like the official proxy: a rejected handshake is final but not a
		// failure of the proxy itself.
		fmt.Fprintf(stderr, "localproxy: %v\n", err)
		return 0
	}
	fmt.Fprintf(stderr, "localproxy: %v\n", err)
	return 1
}
