package admin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// A shape is the slice of the API model a structured parameter needs: the
// members, which are required, scalar types and minimums. It turns what the
// shorthand or JSON parser produced into a value with the API's member names,
// or into the AWS CLI's "Parameter validation failed" messages.
type shapeKind int

const (
	shapeString shapeKind = iota
	shapeInt
	shapeBool
	shapeList
	shapeStruct
	shapeMap
)

type shape struct {
	kind    shapeKind
	members []member // shapeStruct, in model order
	elem    *shape   // shapeList element, shapeMap value
	min     *int64   // shapeInt
}

type member struct {
	name     string
	shape    *shape
	required bool
}

var (
	stringShape = &shape{kind: shapeString}
	boolShape   = &shape{kind: shapeBool}
)

func intShape(lo int64) *shape         { return &shape{kind: shapeInt, min: &lo} }
func listOf(elem *shape) *shape        { return &shape{kind: shapeList, elem: elem} }
func mapOf(elem *shape) *shape         { return &shape{kind: shapeMap, elem: elem} }
func structOf(m ...member) *shape      { return &shape{kind: shapeStruct, members: m} }
func opt(name string, s *shape) member { return member{name: name, shape: s} }
func req(name string, s *shape) member { return member{name: name, shape: s, required: true} }

// Shapes of the structured parameters Warren's commands take.
var (
	destinationConfigShape = structOf(
		opt("thingName", stringShape),
		req("services", listOf(stringShape)),
	)
	timeoutConfigShape = structOf(opt("maxLifetimeTimeoutMinutes", intShape(1)))
	tagShape           = structOf(req("key", stringShape), req("value", stringShape))
	tagListShape       = listOf(tagShape)
	attributePayload   = structOf(
		opt("attributes", mapOf(stringShape)),
		opt("merge", boolShape),
	)
)

// validationError lists everything wrong with a parameter, like botocore.
type validationError struct{ problems []string }

func (e *validationError) Error() string {
	return "Parameter validation failed:\n" + strings.Join(e.problems, "\n")
}

// normalize checks v against s and returns it with canonical member names and
// typed scalars (int64, bool). path names v in messages ("tags[0]").
func normalize(s *shape, path string, v any) (any, error) {
	var problems []string
	out := s.normalize(path, v, &problems)
	if len(problems) > 0 {
		return nil, &validationError{problems: problems}
	}
	return out, nil
}

func (s *shape) normalize(path string, v any, problems *[]string) any {
	bad := func(want string) any {
		*problems = append(*problems, fmt.Sprintf("Invalid type for parameter %s, value: %s, type: %s, valid types: %s",
			path, describeValue(v), typeName(v), want))
		return nil
	}
	switch s.kind {
	case shapeString:
		if str, ok := v.(string); ok {
			return str
		}
		return bad("string")
	case shapeInt:
		n, ok := toInt(v)
		if !ok {
			return bad("integer")
		}
		if s.min != nil && n < *s.min {
			*problems = append(*problems, fmt.Sprintf("Invalid value for parameter %s, value: %d, valid min value: %d", path, n, *s.min))
		}
		return n
	case shapeBool:
		switch b := v.(type) {
		case bool:
			return b
		case string:
			switch strings.ToLower(strings.TrimSpace(b)) {
			case "true":
				return true
			case "false":
				return false
			}
		}
		return bad("boolean")
	case shapeList:
		items, ok := v.([]any)
		if !ok {
			// Shorthand cannot tell a one-item list from a scalar
			// ("services=SSH"), and the CLI accepts one object for a
			// list of structures; both become one-item lists.
			items = []any{v}
		}
		out := make([]any, len(items))
		for i, item := range items {
			out[i] = s.elem.normalize(fmt.Sprintf("%s[%d]", path, i), item, problems)
		}
		return out
	case shapeMap:
		m, ok := v.(map[string]any)
		if !ok {
			return bad("map")
		}
		out := make(map[string]any, len(m))
		for _, k := range sortedKeys(m) {
			out[k] = s.elem.normalize(path+"."+k, m[k], problems)
		}
		return out
	case shapeStruct:
		m, ok := v.(map[string]any)
		if !ok {
			return bad("structure")
		}
		return s.normalizeStruct(path, m, problems)
	}
	panic("admin: unknown shape kind")
}

// normalizeStruct matches keys to members exactly, then ignoring case: the
// AWS CLI is case-sensitive, but "Key=a,Value=b" for a tag is what people
// type, and no member names here differ only in case.
func (s *shape) normalizeStruct(path string, m map[string]any, problems *[]string) map[string]any {
	// Like botocore: missing members first, then unknown ones, then each
	// member's own problems.
	canonical := make(map[string]string, len(m)) // member name → given key
	var unknown []string
	for _, k := range sortedKeys(m) {
		mem, ok := s.member(k)
		switch _, dup := canonical[mem.name]; {
		case !ok:
			unknown = append(unknown, fmt.Sprintf("Unknown parameter in %s: %q, must be one of: %s", path, k, s.memberNames()))
		case dup:
			unknown = append(unknown, fmt.Sprintf("Duplicate parameter in %s: %q", path, mem.name))
		default:
			canonical[mem.name] = k
		}
	}
	for _, mem := range s.members {
		if _, ok := canonical[mem.name]; mem.required && !ok {
			*problems = append(*problems, fmt.Sprintf("Missing required parameter in %s: %q", path, mem.name))
		}
	}
	*problems = append(*problems, unknown...)
	out := make(map[string]any, len(canonical))
	for _, mem := range s.members {
		if k, ok := canonical[mem.name]; ok {
			out[mem.name] = mem.shape.normalize(path+"."+mem.name, m[k], problems)
		}
	}
	return out
}

func (s *shape) member(key string) (member, bool) {
	for _, m := range s.members {
		if m.name == key {
			return m, true
		}
	}
	for _, m := range s.members {
		if strings.EqualFold(m.name, key) {
			return m, true
		}
	}
	return member{}, false
}

func (s *shape) memberNames() string {
	names := make([]string, len(s.members))
	for i, m := range s.members {
		names[i] = m.name
	}
	return strings.Join(names, ", ")
}

func toInt(v any) (int64, bool) {
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		return i, err == nil
	case string:
		i, err := strconv.ParseInt(strings.TrimSpace(n), 10, 64)
		return i, err == nil
	case int64:
		return n, true
	}
	return 0, false
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "boolean"
	case []any:
		return "list"
	case map[string]any:
		return "structure"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

func describeValue(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return "null"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// parseStructured reads one parameter value: JSON when it starts with '{' or
// '[' (as the CLI decides), shorthand otherwise.
func parseStructured(raw string) (any, error) {
	if t := strings.TrimSpace(raw); strings.HasPrefix(t, "{") || strings.HasPrefix(t, "[") {
		return parseJSONValue(t)
	}
	return parseShorthand(raw)
}

// parseStructuredList reads the arguments of a list parameter (nargs '+'):
// one JSON list, or one JSON object or shorthand structure per argument.
func parseStructuredList(raws []string) (any, error) {
	if len(raws) == 1 && strings.HasPrefix(strings.TrimSpace(raws[0]), "[") {
		return parseJSONValue(strings.TrimSpace(raws[0]))
	}
	items := make([]any, 0, len(raws))
	for _, raw := range raws {
		v, err := parseStructured(raw)
		if err != nil {
			return nil, err
		}
		items = append(items, v)
	}
	return items, nil
}

func parseJSONValue(s string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("Invalid JSON: %v\nJSON received: %s", err, s)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("Invalid JSON: extra data after the value\nJSON received: %s", s)
	}
	return v, nil
}

// decodeInto moves a normalized value into a typed request struct.
func decodeInto(v any, out any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(out)
}
