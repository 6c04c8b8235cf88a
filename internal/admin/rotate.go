package admin

import (
	"context"

	"github.com/warrentunnel/warren/internal/tunnelapi"
)

// RotateTunnelAccessTokenInput is the input of RotateTunnelAccessToken.
// ClientMode is SOURCE, DESTINATION or ALL; DestinationConfig may only come
// with the destination's token.
type RotateTunnelAccessTokenInput struct {
	TunnelID          string                       `json:"tunnelId"`
	ClientMode        string                       `json:"clientMode"`
	DestinationConfig *tunnelapi.DestinationConfig `json:"destinationConfig,omitempty"`
}

// RotateTunnelAccessTokenOutput is the output of RotateTunnelAccessToken:
// only the rotated sides' tokens are set.
type RotateTunnelAccessTokenOutput struct {
	TunnelArn              string `json:"tunnelArn,omitempty"`
	SourceAccessToken      string `json:"sourceAccessToken,omitempty"`
	DestinationAccessToken string `json:"destinationAccessToken,omitempty"`
}

// RotateTunnelAccessToken replaces a tunnel's access tokens; local proxies
// connected with the old ones are disconnected.
func (c *TunnelClient) RotateTunnelAccessToken(ctx context.Context, in *RotateTunnelAccessTokenInput) (*RotateTunnelAccessTokenOutput, error) {
	out := new(RotateTunnelAccessTokenOutput)
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
		in := &RotateTunnelAccessTokenInput{TunnelID: a.str("tunnel-id"), ClientMode: a.str("client-mode")}
		if v, ok := a["destination-config"]; ok {
			if err := decodeInto(v, &in.DestinationConfig); err != nil {
				return nil, &paramError{msg: "Error parsing parameter '--destination-config': " + err.Error()}
			}
		}
		return e.tunnels().RotateTunnelAccessToken(ctx, in)
	},
}
