// Package admin owns Warren's administrative commands (warren create-thing,
// open-tunnel, ...): AWS CLI-compatible flags, shorthand and JSON parameter
// syntax, configuration through the AWS SDK's default chain, output and error
// text and exit statuses as the AWS CLI v2 prints them. Things go through the
// SDK's IoT client; tunnels through TunnelClient, a small AWS JSON 1.1 client
// for the IoT Secure Tunneling API that other packages may use in-process;
// accounts (warren create-account, ...) through AccountClient, the same
// client for Warren's own account administration API.
//
// It does not own the service side of these APIs (internal/api) nor the
// top-level dispatch (cmd/warren).
package admin

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/iot"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Exit statuses of the AWS CLI v2.
const (
	exitOK       = 0
	exitCanceled = 130 // interrupted
	exitUsage    = 252 // bad command line or parameter value
	exitConfig   = 253 // configuration or credentials missing or invalid
	exitService  = 254 // the service answered with an error
	exitFailure  = 255 // anything else (could not connect, bad response)
)

// command is one admin command: its parameters and what it calls.
type command struct {
	name    string
	summary string // one line, for the overview
	more    string // more text for --help
	params  []param
	// ownsProfile, when set, says whether --profile names something of the
	// command's own rather than the profile to sign with (which is then the
	// default one).
	ownsProfile func(a parsedArgs) bool
	// run performs the call and returns what to print (nothing for an empty
	// response).
	run func(ctx context.Context, e *env, a parsedArgs) (any, error)
}

// env is what a command runs with: the loaded configuration and the
// --endpoint-url override, if any.
type env struct {
	cfg         aws.Config
	endpointURL string
}

// tunnels returns a tunnel client; --endpoint-url wins over configured
// endpoints, as it does in the AWS CLI.
func (e *env) tunnels() *TunnelClient {
	return NewTunnelClient(e.cfg, func(o *ClientOptions) {
		if e.endpointURL != "" {
			o.BaseEndpoint = aws.String(e.endpointURL)
		}
	})
}

// accounts returns an account administration client, with the same
// endpoint rules.
func (e *env) accounts() *AccountClient {
	return NewAccountClient(e.cfg, func(o *ClientOptions) {
		if e.endpointURL != "" {
			o.BaseEndpoint = aws.String(e.endpointURL)
		}
	})
}

func (e *env) iot() *iot.Client {
	return iot.NewFromConfig(e.cfg, func(o *iot.Options) {
		if e.endpointURL != "" {
			o.BaseEndpoint = aws.String(e.endpointURL)
		}
	})
}

// commands lists the admin commands in the order the usage shows them.
var commands = []*command{
	createThingCmd, describeThingCmd, listThingsCmd, deleteThingCmd,
	createKeysAndCertificateCmd, describeCertificateCmd, updateCertificateCmd,
	attachThingPrincipalCmd, detachThingPrincipalCmd, listThingPrincipalsCmd, describeEndpointCmd,
	openTunnelCmd, describeTunnelCmd, listTunnelsCmd, closeTunnelCmd, rotateTunnelAccessTokenCmd,
	tagResourceCmd, untagResourceCmd, listTagsForResourceCmd,
	createAccountCmd, listAccountsCmd, describeAccountCmd, updateAccountCmd, deleteAccountCmd,
}

// globalParams are the AWS CLI global options Warren understands.
var globalParams = []param{
	{name: "endpoint-url", kind: kindString, syntax: "<url>", help: "Send requests to this URL instead of the configured or default endpoint."},
	{name: "region", kind: kindString, help: "The region to sign requests for (default: AWS_REGION, the profile's region)."},
	{name: "profile", kind: kindString, help: "Use this profile from the shared config and credentials files."},
	{name: "ca-bundle", kind: kindString, syntax: "<path>", help: "PEM file of the CA certificates to trust when verifying TLS (default: AWS_CA_BUNDLE)."},
	{name: "no-verify-ssl", kind: kindSwitch, help: "Do not verify TLS certificates."},
	{name: "output", kind: kindString, syntax: "json", help: "Output format; only json is supported."},
}

// Commands returns the admin command names, for the top-level usage.
func Commands() []string {
	names := make([]string, len(commands))
	for i, c := range commands {
		names[i] = c.name
	}
	return names
}

// overview lists the commands, for Run without a command or with --help.
func overview() string {
	var b strings.Builder
	b.WriteString("usage: warren <command> [parameters]\n\nAdmin commands (run one with --help for its parameters):\n")
	width := 0
	for _, c := range commands {
		width = max(width, len(c.name))
	}
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-*s %s\n", width, c.name, c.summary)
	}
	return b.String()
}

func findCommand(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// Run runs the admin command args[0] with the rest of args as its flags,
// writes the result to stdout and any error to stderr, and returns the exit
// status the AWS CLI v2 would: 0, 252 (usage), 253 (configuration), 254
// (service error), 255 (other failure) or 130 (canceled).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, overview())
		return exitUsage
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, overview())
		return exitOK
	}
	c := findCommand(args[0])
	if c == nil {
		fmt.Fprintf(stderr, "usage: warren <command> [parameters]\nwarren: error: unknown command %q (commands: %s)\n",
			args[0], strings.Join(Commands(), ", "))
		return exitUsage
	}
	params := append(append([]param(nil), c.params...), globalParams...)
	vals, help, err := parseArgs(params, args[1:])
	if help {
		fmt.Fprint(stdout, helpText(c))
		return exitOK
	}
	if err == nil {
		err = checkGlobals(vals)
	}
	if err != nil {
		return reportError(stderr, c, err)
	}
	cfgVals := vals
	if c.ownsProfile != nil && c.ownsProfile(vals) {
		cfgVals = maps.Clone(vals)
		delete(cfgVals, "profile")
	}
	cfg, err := loadConfig(ctx, cfgVals)
	if err != nil {
		fmt.Fprintf(stderr, "\n%v\n", err)
		return exitConfig
	}
	out, err := c.run(ctx, &env{cfg: cfg, endpointURL: vals.str("endpoint-url")}, vals)
	var oe *outputError
	if errors.As(err, &oe) {
		if werr := writeOutput(stdout, oe.out); werr != nil {
			fmt.Fprintf(stderr, "\nwrite output: %v\n", werr)
		}
	}
	if err != nil {
		return reportError(stderr, c, err)
	}
	if err := writeOutput(stdout, out); err != nil {
		fmt.Fprintf(stderr, "\nwrite output: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// outputError is a failure after the call succeeded, whose output must be
// printed all the same (the keys of a new account are in no other place).
type outputError struct {
	out any
	err error
}

func (e *outputError) Error() string { return e.err.Error() }
func (e *outputError) Unwrap() error { return e.err }

// checkGlobals validates the global options the way the CLI does before it
// loads any configuration.
func checkGlobals(vals parsedArgs) error {
	if o, ok := vals["output"]; ok && o != "json" {
		return usagef("argument --output: Invalid choice '%s', only json is supported", o)
	}
	if ep := vals.str("endpoint-url"); vals.has("endpoint-url") {
		u, err := url.Parse(ep)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return &paramError{msg: fmt.Sprintf("Bad value for --endpoint-url %q: scheme is missing. Must be of the form http://<hostname>/ or https://<hostname>/", ep)}
		}
	}
	return nil
}

// loadConfig loads the SDK's default configuration chain with the global
// options applied, and checks that a region and credentials are present, so
// that their absence is a configuration error rather than a failed call.
func loadConfig(ctx context.Context, vals parsedArgs) (aws.Config, error) {
	var opts []func(*config.LoadOptions) error
	if r := vals.str("region"); r != "" {
		opts = append(opts, config.WithRegion(r))
	}
	if p := vals.str("profile"); p != "" {
		opts = append(opts, config.WithSharedConfigProfile(p))
	}
	if vals["no-verify-ssl"] == true {
		// A BuildableClient, so that a CA bundle from the config chain
		// can still be added to it.
		opts = append(opts, config.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
			if tr.TLSClientConfig == nil {
				tr.TLSClientConfig = &tls.Config{}
			}
			tr.TLSClientConfig.InsecureSkipVerify = true
		})))
	}
	if path := vals.str("ca-bundle"); path != "" {
		pem, err := os.ReadFile(path)
		if err != nil {
			return aws.Config{}, fmt.Errorf("read CA bundle: %w", err)
		}
		opts = append(opts, config.WithCustomCABundle(bytes.NewReader(pem)))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	var noProfile config.SharedConfigProfileNotExistError
	if errors.As(err, &noProfile) {
		return aws.Config{}, fmt.Errorf("The config profile (%s) could not be found", noProfile.Profile)
	}
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return aws.Config{}, errors.New("You must specify a region. You can also configure your region with --region, AWS_REGION or the profile's region setting.")
	}
	if cfg.Credentials == nil {
		return aws.Config{}, errors.New("Unable to locate credentials.")
	}
	if _, err := cfg.Credentials.Retrieve(ctx); err != nil {
		return aws.Config{}, fmt.Errorf("Unable to locate credentials. You can configure credentials with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile.\n(%v)", err)
	}
	return cfg, nil
}

// reportError prints err as the AWS CLI would and returns the exit status.
// Like the CLI, messages start with an empty line.
func reportError(w io.Writer, c *command, err error) int {
	var ue *usageError
	var pe *paramError
	var urlErr *url.Error
	var sendErr *smithyhttp.RequestSendError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(w, "%s\nwarren %s: error: %s\n", usageLine(c.name, c.params), c.name, ue.msg)
		return exitUsage
	case errors.As(err, &pe):
		fmt.Fprintf(w, "\n%s\n", pe.msg)
		return exitUsage
	case errors.Is(err, context.Canceled):
		fmt.Fprintf(w, "\n%v\n", err)
		return exitCanceled
	}
	if apiErr, ok := errorsAsAPI(err); ok {
		fmt.Fprintf(w, "\nAn error occurred (%s) when calling the %s operation%s: %s\n",
			apiErr.ErrorCode(), operationName(err), retryInfo(err), messageOrUnknown(apiErr.ErrorMessage()))
		return exitService
	}
	if errors.As(err, &sendErr) && errors.As(err, &urlErr) {
		fmt.Fprintf(w, "\nCould not connect to the endpoint URL: %q (%v)\n", urlErr.URL, urlErr.Err)
		return exitFailure
	}
	fmt.Fprintf(w, "\n%v\n", err)
	return exitFailure
}

func operationName(err error) string {
	var opErr *smithy.OperationError
	if errors.As(err, &opErr) {
		return opErr.OperationName
	}
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.Operation
	}
	return "unknown"
}

// retryInfo is botocore's note for an error that persisted through every
// attempt.
func retryInfo(err error) string {
	var maxErr *retry.MaxAttemptsError
	if errors.As(err, &maxErr) && maxErr.Attempt > 1 {
		return fmt.Sprintf(" (reached max retries: %d)", maxErr.Attempt-1)
	}
	return ""
}

func messageOrUnknown(msg string) string {
	if msg == "" {
		return "Unknown"
	}
	return msg
}
