package admin

import (
	"context"

	"github.com/warrentunnel/warren/internal/tunnelapi"
)

// Tags of tunnels, by ARN: warren tag-resource, untag-resource and
// list-tags-for-resource, with the AWS CLI's names, and the client calls
// behind them.

// TagResource adds tags to a resource, replacing the values of keys it
// has already.
func (c *TunnelClient) TagResource(ctx context.Context, in *tunnelapi.TagResourceInput) (*tunnelapi.TagResourceOutput, error) {
	out := new(tunnelapi.TagResourceOutput)
	return out, c.call(ctx, "TagResource", orEmpty(in), out)
}

// UntagResource removes tags from a resource by key.
func (c *TunnelClient) UntagResource(ctx context.Context, in *tunnelapi.UntagResourceInput) (*tunnelapi.UntagResourceOutput, error) {
	out := new(tunnelapi.UntagResourceOutput)
	return out, c.call(ctx, "UntagResource", orEmpty(in), out)
}

// ListTagsForResource returns a resource's tags.
func (c *TunnelClient) ListTagsForResource(ctx context.Context, in *tunnelapi.ListTagsForResourceInput) (*tunnelapi.ListTagsForResourceOutput, error) {
	out := new(tunnelapi.ListTagsForResourceOutput)
	return out, c.call(ctx, "ListTagsForResource", orEmpty(in), out)
}

var resourceARNParam = param{name: "resource-arn", apiName: "resourceArn", kind: kindString, required: true,
	help: "The ARN of the tunnel (arn:aws:iot:REGION:ACCOUNT:tunnel/ID)."}

var tagResourceCmd = &command{
	name:    "tag-resource",
	summary: "Adds tags to a tunnel, or changes their values (IoT Secure Tunneling TagResource). Prints nothing on success.",
	params: []param{
		resourceARNParam,
		{name: "tags", apiName: "tags", kind: kindStructList, shape: tagListShape, required: true,
			syntax: "key=string,value=string ... | JSON", help: "The tags to add (Key=/Value= also accepted)."},
	},
	run: func(ctx context.Context, e *env, a parsedArgs) (any, error) {
		in := &tunnelapi.TagResourceInput{ResourceArn: a.strp("resource-arn")}
		if err := decodeInto(a["tags"], &in.Tags); err != nil {
			return nil, &paramError{msg: "Error parsing parameter '--tags': " + err.Error()}
		}
		return e.tunnels().TagResource(ctx, in)
	},
}

var untagResourceCmd = &command{
	name:    "untag-resource",
	summary: "Removes tags from a tunnel by key (IoT Secure Tunneling UntagResource). Prints nothing on success.",
	params: []param{
		resourceARNParam,
		{name: "tag-keys", apiName: "tagKeys", kind: kindStringList, required: true,
			syntax: "<string> [<string> ...] | JSON", help: "The keys of the tags to remove."},
	},
	run: func(ctx context.Context, e *env, a parsedArgs) (any, error) {
		keys, _ := a["tag-keys"].([]string)
		return e.tunnels().UntagResource(ctx, &tunnelapi.UntagResourceInput{ResourceArn: a.strp("resource-arn"), TagKeys: keys})
	},
}

var listTagsForResourceCmd = &command{
	name:    "list-tags-for-resource",
	summary: "Lists a tunnel's tags (IoT Secure Tunneling ListTagsForResource).",
	params:  []param{resourceARNParam},
	run: func(ctx context.Context, e *env, a parsedArgs) (any, error) {
		return e.tunnels().ListTagsForResource(ctx, &tunnelapi.ListTagsForResourceInput{ResourceArn: a.strp("resource-arn")})
	},
}
