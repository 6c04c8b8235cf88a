package admin

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/warrentunnel/warren/internal/tunnelapi"
)

// The IoT Secure Tunneling service's identity in the AWS model: the SDK ID
// names the service-specific endpoint setting (AWS_ENDPOINT_URL_IOTSECURETUNNELING,
// the "iotsecuretunneling" services section of the shared config), the
// signing name goes into the SigV4 scope and the target prefix into
// X-Amz-Target.
const tunnelSigningName = "IoTSecuredTunneling"

var tunnelService = &jsonService{
	sdkID:        "IoTSecureTunneling",
	signingName:  tunnelSigningName,
	targetPrefix: tunnelSigningName + ".",
	apiName:      "iotsecuretunneling",
	defaultEndpoint: func(region string) string {
		return "https://api.tunneling.iot." + region + ".amazonaws.com"
	},
	modeledErrors: map[string]bool{"ResourceNotFoundException": true, "LimitExceededException": true},
}

// TunnelClient calls the IoT Secure Tunneling management API (AWS JSON 1.1)
// the way the AWS SDKs do: SigV4 signed, retried with the SDK's retryer,
// errors decoded into *APIError. Safe for concurrent use.
type TunnelClient struct{ *jsonClient }

// NewTunnelClient returns a client configured from cfg: region, credentials,
// HTTP client (and so any CA bundle), retryer, and the endpoint, resolved as
// the SDK resolves a service's endpoint (service-specific setting, then
// cfg.BaseEndpoint, then the AWS default for the region).
func NewTunnelClient(cfg aws.Config, optFns ...func(*ClientOptions)) *TunnelClient {
	return &TunnelClient{newJSONClient(tunnelService, cfg, optFns)}
}

// OpenTunnel creates a tunnel and returns its access tokens.
func (c *TunnelClient) OpenTunnel(ctx context.Context, in *tunnelapi.OpenTunnelInput) (*tunnelapi.OpenTunnelOutput, error) {
	out := new(tunnelapi.OpenTunnelOutput)
	return out, c.call(ctx, "OpenTunnel", orEmpty(in), out)
}

// DescribeTunnel returns a tunnel's description.
func (c *TunnelClient) DescribeTunnel(ctx context.Context, in *tunnelapi.DescribeTunnelInput) (*tunnelapi.DescribeTunnelOutput, error) {
	out := new(tunnelapi.DescribeTunnelOutput)
	return out, c.call(ctx, "DescribeTunnel", orEmpty(in), out)
}

// ListTunnels returns one page of tunnel summaries.
func (c *TunnelClient) ListTunnels(ctx context.Context, in *tunnelapi.ListTunnelsInput) (*tunnelapi.ListTunnelsOutput, error) {
	out := new(tunnelapi.ListTunnelsOutput)
	return out, c.call(ctx, "ListTunnels", orEmpty(in), out)
}

// CloseTunnel closes a tunnel, and deletes it when in.Delete is true.
func (c *TunnelClient) CloseTunnel(ctx context.Context, in *tunnelapi.CloseTunnelInput) (*tunnelapi.CloseTunnelOutput, error) {
	out := new(tunnelapi.CloseTunnelOutput)
	return out, c.call(ctx, "CloseTunnel", orEmpty(in), out)
}

// orEmpty sends {} for a nil input, as the SDKs do.
func orEmpty[T any](in *T) *T {
	if in == nil {
		return new(T)
	}
	return in
}
