// Command localproxy is Warren's local proxy, flag-compatible with the
// official AWS IoT Secure Tunneling local proxy. It only wires signals to
// package proxycli, which holds the command line.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/warrentunnel/warren/internal/proxycli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := proxycli.Main(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
