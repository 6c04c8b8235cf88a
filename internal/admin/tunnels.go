package admin

import (
	"context"

	"github.com/warrentunnel/warren/internal/tunnelapi"
)

// The tunnel commands call the IoT Secure Tunneling API through TunnelClient.

var tunnelIDParam = param{name: "tunnel-id", apiName: "tunnelId", kind: kindString, required: true, help: "The ID of the tunnel."}

var openTunnelCmd = &command{
	name:    "open-tunnel",
	summary: "Opens a tunnel and prints its access tokens (IoT Secure Tunneling OpenTunnel).",
	params: []param{
		{name: "description", apiName: "description", kind: kindString, help: "A short text description of the tunnel."},
		{name: "destination-config", apiName: "destinationConfig", kind: kindStruct, shape: destinationConfigShape,
			syntax: "thingName=string,services=string,string | JSON", help: "The thing the destination runs on and the services the tunnel carries."},
		{name: "timeout-config", apiName: "timeoutConfig", kind: kindStruct, shape: timeoutConfigShape,
			syntax: "maxLifetimeTimeoutMinutes=integer | JSON", help: "How long the tunnel may stay open (1 to 720 minutes, default 720)."},
		{name: "tags", apiName: "tags", kind: kindStructList, shape: tagListShape,
			syntax: "key=string,value=string ... | JSON", help: "Tags for the tunnel (Key=/Value= also accepted)."},
	},
	run: openTunnel,
}

func openTunnel(ctx context.Context, e *env, a parsedArgs) (any, error) {
	in := &tunnelapi.OpenTunnelInput{Description: a.strp("description")}
	for flag, dst := range map[string]any{
		"destination-config": &in.DestinationConfig,
		"timeout-config":     &in.TimeoutConfig,
		"tags":               &in.Tags,
	} {
		if v, ok := a[flag]; ok {
			if err := decodeInto(v, dst); err != nil {
				return nil, &paramError{msg: "Error parsing parameter '--" + flag + "': " + err.Error()}
			}
		}
	}
	return e.tunnels().OpenTunnel(ctx, in)
}

var describeTunnelCmd = &command{
	name:    "describe-tunnel",
	summary: "Describes a tunnel (IoT Secure Tunneling DescribeTunnel).",
	params:  []param{tunnelIDParam},
	run: func(ctx context.Context, e *env, a parsedArgs) (any, error) {
		return e.tunnels().DescribeTunnel(ctx, &tunnelapi.DescribeTunnelInput{TunnelID: a.strp("tunnel-id")})
	},
}

var listTunnelsCmd = &command{
	name:    "list-tunnels",
	summary: "Lists tunnels, one page (IoT Secure Tunneling ListTunnels).",
	params: []param{
		{name: "thing-name", apiName: "thingName", kind: kindString, help: "Only tunnels whose destination is this thing."},
		{name: "max-results", apiName: "maxResults", kind: kindInt, min: int64p(1), help: "The most tunnels to return (1 to 100)."},
		{name: "next-token", apiName: "nextToken", kind: kindString, help: "The token of the page to return, from a previous nextToken."},
	},
	run: func(ctx context.Context, e *env, a parsedArgs) (any, error) {
		in := &tunnelapi.ListTunnelsInput{ThingName: a.strp("thing-name"), NextToken: a.strp("next-token")}
		if n, ok := a["max-results"].(int64); ok {
			m := int32(min(n, 1<<31-1))
			in.MaxResults = &m
		}
		return e.tunnels().ListTunnels(ctx, in)
	},
}

var closeTunnelCmd = &command{
	name:    "close-tunnel",
	summary: "Closes a tunnel, and with --delete removes it (IoT Secure Tunneling CloseTunnel). Prints nothing on success.",
	params: []param{
		tunnelIDParam,
		{name: "delete", apiName: "delete", kind: kindBool, help: "Also delete the tunnel's record."},
	},
	run: func(ctx context.Context, e *env, a parsedArgs) (any, error) {
		in := &tunnelapi.CloseTunnelInput{TunnelID: a.strp("tunnel-id")}
		if d, ok := a["delete"].(bool); ok {
			in.Delete = &d
		}
		return e.tunnels().CloseTunnel(ctx, in)
	},
}
