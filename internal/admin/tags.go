package admin

import (
	"context"

	"github.com/warrentunnel/warren/internal/tunnelapi"
)

// Tags of tunnels, by ARN: warren tag-resource, untag-resource and
// list-tags-for-resource, with the AWS CLI's names, and the client calls
// behind them.

// TagResourceInput is the input of TagResource.
type TagResourceInput struct {
	ResourceArn string          `json:"resourceArn"`
	Tags        []tunnelapi.Tag `json:"tags"`
}

// TagResourceOutput is the (empty) output of TagResource.
type TagResourceOutput struct{}

// UntagResourceInput is the input of UntagResource.
type UntagResourceInput struct {
	ResourceArn string   `json:"resourceArn"`
	TagKeys     []string `json:"tagKeys"`
}

// UntagResourceOutput is the (empty) output of UntagResource.
type UntagResourceOutput struct{}

// ListTagsForResourceInput is the input of ListTagsForResource.
type ListTagsForResourceInput struct {
	ResourceArn string `json:"resourceArn"`
}

// ListTagsForResourceOutput is the output of ListTagsForResource.
type ListTagsForResourceOutput struct {
	Tags []tunnelapi.Tag `json:"tags,omitzero"`
}

// TagResource adds tags to a resource, replacing the values of keys it
// has already.
func (c *TunnelClient) TagResource(ctx context.Context, in *TagResourceInput) (*TagResourceOutput, error) {
	out := new(TagResourceOutput)
	return out, c.call(ctx, "TagResource", orEmpty(in), out)
}

// UntagResource removes tags from a resource by key.
func (c *TunnelClient) UntagResource(ctx context.Context, in *UntagResourceInput) (*UntagResourceOutput, error) {
	out := new(UntagResourceOutput)
	return out, c.call(ctx, "UntagResource", orEmpty(in), out)
}

// ListTagsForResource returns a resource's tags.
func (c *TunnelClient) ListTagsForResource(ctx context.Context, in *ListTagsForResourceInput) (*ListTagsForResourceOutput, error) {
	out := new(ListTagsForResourceOutput)
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
		in := &TagResourceInput{ResourceArn: a.str("resource-arn")}
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
		return e.tunnels().UntagResource(ctx, &UntagResourceInput{ResourceArn: a.str("resource-arn"), TagKeys: keys})
	},
}

var listTagsForResourceCmd = &command{
	name:    "list-tags-for-resource",
	summary: "Lists a tunnel's tags (IoT Secure Tunneling ListTagsForResource).",
	params:  []param{resourceARNParam},
	run: func(ctx context.Context, e *env, a parsedArgs) (any, error) {
		return e.tunnels().ListTagsForResource(ctx, &ListTagsForResourceInput{ResourceArn: a.str("resource-arn")})
	},
}
