package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/warrentunnel/warren/internal/tunnelapi"
)

// jsonOp runs one AWS JSON 1.1 operation.
type jsonOp func(ctx context.Context, c *call) (any, error)

// runJSON dispatches c to the operation its X-Amz-Target names.
func (a *API) runJSON(ctx context.Context, c *call) (any, error) {
	target := c.r.Header.Get("X-Amz-Target")
	op, ok := a.jsonOps[target]
	if !ok {
		return nil, errUnknownOperation("unknown operation %q: X-Amz-Target must be %s<Operation> or %s<Operation>", target, targetPrefix, accountsTargetPrefix)
	}
	return op(ctx, c)
}

// decodeJSON decodes a JSON 1.1 request body into v. An empty body is an
// empty object; unknown members are ignored, as newer SDKs may send them.
func decodeJSON(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if jsonTooDeep(body, MaxJSONDepth) {
		return errSerialization("the request body's JSON nests arrays and objects more than %d deep", MaxJSONDepth)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		if e, ok := errorsAsAPI(err); ok {
			return e // a member's own UnmarshalJSON found it invalid
		}
		var me *tunnelapi.MissingMemberError
		if errors.As(err, &me) {
			if me.Member == "value" {
				return errInvalid("tags: %s (give an empty string for a tag without a value)", me)
			}
			return errInvalid("tags: %s", me)
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return errSerialization("member %s has the wrong type: expected %s, got JSON %s", te.Field, te.Type, te.Value)
		}
		return errSerialization("the request body is not valid JSON: %v", err)
	}
	if dec.More() {
		return errSerialization("the request body has data after its JSON object")
	}
	return nil
}

// MaxJSONDepth bounds how deeply a request body's JSON may nest arrays and
// objects. The deepest shape of the models (a tag: an object in a list in
// the request's object) needs 3.
const MaxJSONDepth = 32

// jsonTooDeep reports whether body nests arrays and objects deeper than
// limit. It only counts brackets outside strings, so a deeply nested body is
// refused in one pass, before a decoder walks into it; whether the JSON is
// valid is the decoder's to say.
func jsonTooDeep(body []byte, limit int) bool {
	depth, inString, escaped := 0, false, false
	for _, b := range body {
		switch {
		case escaped:
			escaped = false
		case inString && b == '\\':
			escaped = true
		case b == '"':
			inString = !inString
		case inString:
		case b == '[' || b == '{':
			if depth++; depth > limit {
				return true
			}
		case b == ']' || b == '}':
			depth--
		}
	}
	return false
}

// epochTime is t as AWS JSON 1.1 writes it: seconds since the epoch, as a
// number with millisecond precision.
func epochTime(t time.Time) tunnelapi.EpochTime {
	return tunnelapi.EpochTime(*millis(t))
}

// millis is t to the millisecond, the precision of the API's timestamps.
func millis(t time.Time) *time.Time {
	m := time.UnixMilli(t.UnixMilli())
	return &m
}

// required names a missing required member.
func required(member string) error {
	return errInvalid("%s is required", member)
}

// intRange checks an optional integer member.
func intRange[T int | int32](member string, v *T, lo, hi int) error {
	if v != nil && (int(*v) < lo || int(*v) > hi) {
		return errInvalid("%s must be between %d and %d, not %d", member, lo, hi, *v)
	}
	return nil
}
