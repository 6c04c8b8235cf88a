package api

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/warrentunnel/warren/internal/tunnel"
	"github.com/warrentunnel/warren/internal/tunnelapi"
)

// tagPattern is the model's pattern for tag keys and values.
var tagPattern = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$`)

// validTags checks a TagList: absent (nil), or 1 to 200 tags, keys 1..128
// and values 0..256 characters of the model's pattern, no key twice.
func validTags(tags []tunnel.Tag) error {
	if tags != nil && len(tags) == 0 {
		return errInvalid("tags must have 1 to %d tags, not none; leave tags out for a tunnel without tags", tunnel.MaxTags)
	}
	if len(tags) > tunnel.MaxTags {
		return errInvalid("tags has %d tags; at most %d are allowed", len(tags), tunnel.MaxTags)
	}
	seen := make(map[string]bool, len(tags))
	for _, t := range tags {
		if err := validTagKey("tag key", t.Key); err != nil {
			return err
		}
		if n := utf8.RuneCountInString(t.Value); n > 256 || !tagPattern.MatchString(t.Value) {
			return errInvalid("the value of tag %q must be at most 256 letters, digits, spaces or _.:/=+-@", t.Key)
		}
		if seen[t.Key] {
			return errInvalid("tag key %q is given twice", t.Key)
		}
		seen[t.Key] = true
	}
	return nil
}

// validTagKey checks a TagKey: 1 to 128 characters of the model's pattern.
func validTagKey(member, k string) error {
	if n := utf8.RuneCountInString(k); n < 1 || n > 128 || !tagPattern.MatchString(k) {
		return errInvalid("%s %q must be 1 to 128 letters, digits, spaces or _.:/=+-@", member, k)
	}
	return nil
}

// domainTags converts the API's tags to the domain's.
func domainTags(tags []tunnelapi.Tag) []tunnel.Tag {
	if tags == nil {
		return nil
	}
	out := make([]tunnel.Tag, len(tags))
	for i, t := range tags {
		out[i] = tunnel.Tag(t)
	}
	return out
}

func (a *API) tagResource(ctx context.Context, c *call) (any, error) {
	var in tunnelapi.TagResourceInput
	if err := decodeJSON(c.body, &in); err != nil {
		return nil, err
	}
	if in.Tags == nil {
		return nil, required("tags")
	}
	newTags := domainTags(in.Tags)
	if err := validTags(newTags); err != nil {
		return nil, err
	}
	return tunnelapi.TagResourceOutput{}, a.updateTags(ctx, c.account.ID, in.ResourceArn, func(tags []tunnel.Tag) ([]tunnel.Tag, error) {
		for _, nt := range newTags {
			i := indexTag(tags, nt.Key)
			if i < 0 {
				tags = append(tags, nt)
			} else {
				tags[i].Value = nt.Value
			}
		}
		if len(tags) > tunnel.MaxTags {
			return nil, newError(http.StatusBadRequest, codeLimitExceeded, "a tunnel can have at most %d tags; this would make %d", tunnel.MaxTags, len(tags))
		}
		return tags, nil
	})
}

func (a *API) untagResource(ctx context.Context, c *call) (any, error) {
	var in tunnelapi.UntagResourceInput
	if err := decodeJSON(c.body, &in); err != nil {
		return nil, err
	}
	if in.TagKeys == nil {
		return nil, required("tagKeys")
	}
	if len(in.TagKeys) > tunnel.MaxTags {
		return nil, errInvalid("tagKeys has %d keys; at most %d are allowed", len(in.TagKeys), tunnel.MaxTags)
	}
	for _, k := range in.TagKeys {
		if err := validTagKey("tagKeys: key", k); err != nil {
			return nil, err
		}
	}
	return tunnelapi.UntagResourceOutput{}, a.updateTags(ctx, c.account.ID, in.ResourceArn, func(tags []tunnel.Tag) ([]tunnel.Tag, error) {
		for _, k := range in.TagKeys {
			if i := indexTag(tags, k); i >= 0 {
				tags = append(tags[:i], tags[i+1:]...)
			}
		}
		return tags, nil
	})
}

func (a *API) listTagsForResource(ctx context.Context, c *call) (any, error) {
	var in tunnelapi.ListTagsForResourceInput
	if err := decodeJSON(c.body, &in); err != nil {
		return nil, err
	}
	t, err := a.tunnelOfARN(ctx, c.account.ID, in.ResourceArn)
	if err != nil {
		return nil, err
	}
	out := tunnelapi.ListTagsForResourceOutput{Tags: make([]tunnelapi.Tag, 0, len(t.Tags))}
	for _, tag := range t.Tags {
		out.Tags = append(out.Tags, tunnelapi.Tag(tag))
	}
	return out, nil
}

// updateTags applies fn to the tags of the tunnel arn names.
func (a *API) updateTags(ctx context.Context, accountID string, arn *string, fn func([]tunnel.Tag) ([]tunnel.Tag, error)) error {
	cur, err := a.tunnelOfARN(ctx, accountID, arn)
	if err != nil {
		return err
	}
	id := cur.ID
	_, err = a.store.UpdateTunnel(ctx, id, func(t *tunnel.Tunnel) error {
		if t.AccountID != accountID {
			return errTunnelNotFound(id)
		}
		tags, err := fn(append([]tunnel.Tag(nil), t.Tags...))
		if err != nil {
			return err
		}
		t.Tags = tags
		return nil
	})
	if errors.Is(err, tunnel.ErrNotFound) {
		return errTunnelNotFound(id)
	}
	return err
}

// tunnelOfARN returns the account's tunnel that resourceArn names. Tunnels
// are the only taggable resources here.
func (a *API) tunnelOfARN(ctx context.Context, accountID string, arn *string) (tunnel.Tunnel, error) {
	if arn == nil || *arn == "" {
		return tunnel.Tunnel{}, required("resourceArn")
	}
	if len(*arn) > 1011 {
		return tunnel.Tunnel{}, errInvalid("resourceArn is longer than 1011 characters")
	}
	i := strings.LastIndex(*arn, ":tunnel/")
	if !strings.HasPrefix(*arn, "arn:") || i < 0 {
		return tunnel.Tunnel{}, errInvalid("resourceArn %q is not a tunnel ARN (arn:aws:iot:REGION:ACCOUNT:tunnel/ID)", *arn)
	}
	t, err := a.store.Tunnel(ctx, accountID, (*arn)[i+len(":tunnel/"):])
	if errors.Is(err, tunnel.ErrNotFound) || (err == nil && t.ARN != *arn) {
		return t, errNotFound("resource %s does not exist in this account", *arn)
	}
	return t, err
}

func indexTag(tags []tunnel.Tag, key string) int {
	for i, t := range tags {
		if t.Key == key {
			return i
		}
	}
	return -1
}
