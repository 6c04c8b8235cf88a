package admin

import (
	"context"

	"github.com/warrentunnel/warren/internal/tunnelapi"
)

// RotateTunnelAccessToken replaces a tunnel's access tokens; local proxies
// connected with the old ones are disconnected.
func (c *TunnelClient) RotateTunnelAccessToken(ctx context.Context, in *tunnelapi.RotateTunnelAccessTokenInput) (*tunnelapi.RotateTunnelAccessTokenOutput, error) {
	out := new(tunnelapi.RotateTunnelAccessTokenOutput)
	return out, c.call(ctx, "RotateTunnelAccessToken", orEmpty(in), out)
}

var rotateTunnelAccessTokenCmd = &command{
	name:    "rotate-tunnel-access-token",
	summary: "Replaces a tunnel's access tokens and disconnects the local proxies that used them (IoT Secure Tunneling RotateTunnelAccessToken).",
	params: []param{
		tunnelIDParam,
		{name: "client-mode", apiName: "clientMode", kind: kindString, required: true, syntax: "SOURCE | DESTINATION | ALL",
			help: "Which side's token to replace: SOURCE, DESTINATION or ALL (both)."},
		{name: "destination-config", apiName: "destinationConfig", kind: kindStruct, shape: destinationConfigShape,
			syntax: "thingName=string,services=string,string | JSON",
			help:   "A new destination config, with DESTINATION or ALL only; required where the tunnel was opened without one."},
	},
	run: func(ctx context.Context, e *env, a parsedArgs) (any, error) {
		in := &tunnelapi.RotateTunnelAccessTokenInput{TunnelID: a.strp("tunnel-id"), ClientMode: a.strp("client-mode")}
		if v, ok := a["destination-config"]; ok {
			if err := decodeInto(v, &in.DestinationConfig); err != nil {
				return nil, &paramError{msg: "Error parsing parameter '--destination-config': " + err.Error()}
			}
		}
		return e.tunnels().RotateTunnelAccessToken(ctx, in)
	},
}
