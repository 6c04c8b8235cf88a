package tunnelapi

// RotateTunnelAccessTokenInput is the input of RotateTunnelAccessToken.
// ClientMode is SOURCE, DESTINATION or ALL; DestinationConfig may only come
// with the destination's token.
type RotateTunnelAccessTokenInput struct {
	TunnelID          *string            `json:"tunnelId,omitempty"`
	ClientMode        *string            `json:"clientMode,omitempty"`
	DestinationConfig *DestinationConfig `json:"destinationConfig,omitempty"`
}

// RotateTunnelAccessTokenOutput is the output of RotateTunnelAccessToken:
// only the rotated sides' tokens are set.
type RotateTunnelAccessTokenOutput struct {
	TunnelArn              string `json:"tunnelArn,omitempty"`
	SourceAccessToken      string `json:"sourceAccessToken,omitempty"`
	DestinationAccessToken string `json:"destinationAccessToken,omitempty"`
}

// TagResourceInput is the input of TagResource.
type TagResourceInput struct {
	ResourceArn *string `json:"resourceArn,omitempty"`
	Tags        []Tag   `json:"tags"`
}

// TagResourceOutput is the (empty) output of TagResource.
type TagResourceOutput struct{}

// UntagResourceInput is the input of UntagResource.
type UntagResourceInput struct {
	ResourceArn *string  `json:"resourceArn,omitempty"`
	TagKeys     []string `json:"tagKeys"`
}

// UntagResourceOutput is the (empty) output of UntagResource.
type UntagResourceOutput struct{}

// ListTagsForResourceInput is the input of ListTagsForResource.
type ListTagsForResourceInput struct {
	ResourceArn *string `json:"resourceArn,omitempty"`
}

// ListTagsForResourceOutput is the output of ListTagsForResource.
type ListTagsForResourceOutput struct {
	Tags []Tag `json:"tags,omitzero"`
}
