package admin

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Command-line parsing in the AWS CLI's manner: "--name value" or
// "--name=value", booleans as "--name" / "--no-name", list parameters taking
// every following argument up to the next option, "file://path" loading a
// value from a file, and usage errors that name every missing or unknown
// argument at once.

type paramKind int

const (
	kindString     paramKind = iota
	kindInt                  // a number, checked against min
	kindBool                 // --name sets true, --no-name false
	kindSwitch               // --name only (global switches)
	kindStruct               // one shorthand or JSON value, checked by shape
	kindStructList           // one or more values of a list shape
	kindStringList           // one or more strings, or one JSON list of strings
)

type param struct {
	name     string // without "--"
	apiName  string // member name in the request, for validation messages
	kind     paramKind
	required bool
	shape    *shape // kindStruct, kindStructList
	min      *int64 // kindInt
	syntax   string // value syntax shown in help
	help     string
}

// usageError is a command line the CLI would refuse before sending anything
// (exit status 252).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// paramError is a value that failed to parse or validate (also 252); it
// prints on its own, without the usage line.
type paramError struct{ msg string }

func (e *paramError) Error() string { return e.msg }

// parsedArgs holds the converted values by parameter name: string, int64,
// bool, or a normalized structured value.
type parsedArgs map[string]any

func (a parsedArgs) str(name string) string {
	s, _ := a[name].(string)
	return s
}

// strp is a string parameter for an input member: nil where it was not
// given.
func (a parsedArgs) strp(name string) *string {
	if s, ok := a[name].(string); ok {
		return &s
	}
	return nil
}

func (a parsedArgs) has(name string) bool {
	_, ok := a[name]
	return ok
}

// parseArgs parses args against params. help is true when -h or --help was
// given; nothing else is checked then.
func parseArgs(params []param, args []string) (vals parsedArgs, help bool, err error) {
	raw := map[string][]string{}
	var unknown []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "-h" || a == "--help" {
			return nil, true, nil
		}
		p, name, inline, hasInline, negated := lookupParam(params, a)
		if p == nil {
			unknown = append(unknown, a)
			continue
		}
		switch p.kind {
		case kindBool, kindSwitch:
			if hasInline {
				return nil, false, usagef("argument --%s: ignored explicit argument '%s'", name, inline)
			}
			raw[p.name] = []string{strconv.FormatBool(!negated)}
		case kindStructList, kindStringList:
			var vs []string
			if hasInline {
				vs = append(vs, inline)
			}
			for !hasInline && i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
				i++
				vs = append(vs, args[i])
			}
			if len(vs) == 0 {
				return nil, false, usagef("argument --%s: expected at least one argument", name)
			}
			raw[p.name] = vs
		default:
			if !hasInline {
				if i+1 >= len(args) || strings.HasPrefix(args[i+1], "--") {
					return nil, false, usagef("argument --%s: expected one argument", name)
				}
				i++
				inline = args[i]
			}
			raw[p.name] = []string{inline}
		}
	}
	if len(unknown) > 0 {
		return nil, false, usagef("Unknown options: %s", strings.Join(unknown, ", "))
	}
	var missing []string
	for _, p := range params {
		if _, ok := raw[p.name]; p.required && !ok {
			missing = append(missing, "--"+p.name)
		}
	}
	if len(missing) > 0 {
		return nil, false, usagef("the following arguments are required: %s", strings.Join(missing, ", "))
	}
	vals = parsedArgs{}
	for _, p := range params {
		vs, ok := raw[p.name]
		if !ok {
			continue
		}
		v, err := convertParam(p, vs)
		if err != nil {
			return nil, false, err
		}
		vals[p.name] = v
	}
	return vals, false, nil
}

// lookupParam finds the parameter an argument names.
func lookupParam(params []param, arg string) (p *param, name, inline string, hasInline, negated bool) {
	if !strings.HasPrefix(arg, "--") {
		return nil, "", "", false, false
	}
	name, inline, hasInline = strings.Cut(arg[2:], "=")
	for i := range params {
		if params[i].name == name {
			return &params[i], name, inline, hasInline, false
		}
	}
	if base, ok := strings.CutPrefix(name, "no-"); ok {
		for i := range params {
			if params[i].name == base && params[i].kind == kindBool {
				return &params[i], name, inline, hasInline, true
			}
		}
	}
	return nil, "", "", false, false
}

func convertParam(p param, vs []string) (any, error) {
	switch p.kind {
	case kindBool, kindSwitch:
		return vs[0] == "true", nil
	case kindInt:
		n, err := strconv.ParseInt(strings.TrimSpace(vs[0]), 10, 64)
		if err != nil {
			return nil, usagef("argument --%s: invalid integer value: '%s'", p.name, vs[0])
		}
		if p.min != nil && n < *p.min {
			return nil, &paramError{msg: fmt.Sprintf("Parameter validation failed:\nInvalid value for parameter %s, value: %d, valid min value: %d", p.apiName, n, *p.min)}
		}
		return n, nil
	case kindString:
		return loadParamFile(p, vs[0])
	case kindStringList:
		return convertStringList(p, vs)
	}
	for i, v := range vs {
		loaded, err := loadParamFile(p, v)
		if err != nil {
			return nil, err
		}
		vs[i] = loaded
	}
	var v any
	var err error
	if p.kind == kindStructList {
		v, err = parseStructuredList(vs)
	} else {
		v, err = parseStructured(vs[0])
	}
	if err != nil {
		return nil, &paramError{msg: fmt.Sprintf("Error parsing parameter '--%s': %v", p.name, err)}
	}
	v, err = normalize(p.shape, p.apiName, v)
	if err != nil {
		return nil, &paramError{msg: err.Error()}
	}
	return v, nil
}

// convertStringList reads a list of strings as the CLI does: each argument
// one string, or a single argument that is a JSON list.
func convertStringList(p param, vs []string) ([]string, error) {
	out := make([]string, 0, len(vs))
	for _, v := range vs {
		loaded, err := loadParamFile(p, v)
		if err != nil {
			return nil, err
		}
		out = append(out, loaded)
	}
	if len(out) != 1 || !strings.HasPrefix(strings.TrimSpace(out[0]), "[") {
		return out, nil
	}
	v, err := parseJSONValue(strings.TrimSpace(out[0]))
	if err != nil {
		return nil, &paramError{msg: fmt.Sprintf("Error parsing parameter '--%s': %v", p.name, err)}
	}
	v, err = normalize(listOf(stringShape), p.apiName, v)
	if err != nil {
		return nil, &paramError{msg: err.Error()}
	}
	items := v.([]any)
	out = make([]string, len(items))
	for i, item := range items {
		out[i] = item.(string)
	}
	return out, nil
}

// loadParamFile replaces "file://path" by the file's content, as the CLI
// does for every parameter value.
func loadParamFile(p param, v string) (string, error) {
	path, ok := strings.CutPrefix(v, "file://")
	if !ok {
		return v, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", &paramError{msg: fmt.Sprintf("Error parsing parameter '--%s': Unable to load paramfile %s: %v", p.name, v, err)}
	}
	return string(b), nil
}

// usageLine is the one-line synopsis of a command.
func usageLine(name string, params []param) string {
	var b strings.Builder
	b.WriteString("usage: warren ")
	b.WriteString(name)
	for _, p := range params {
		b.WriteByte(' ')
		b.WriteString(synopsis(p))
	}
	b.WriteString(" [global options]")
	return b.String()
}

func synopsis(p param) string {
	var s string
	switch p.kind {
	case kindBool:
		s = "--" + p.name + " | --no-" + p.name
	case kindSwitch:
		s = "--" + p.name
	case kindStructList, kindStringList:
		s = "--" + p.name + " <value> [<value> ...]"
	default:
		s = "--" + p.name + " <value>"
	}
	if p.required {
		return s
	}
	return "[" + s + "]"
}

// helpText is what -h/--help prints.
func helpText(c *command) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n%s\n", usageLine(c.name, c.params), c.summary)
	if c.more != "" {
		fmt.Fprintf(&b, "\n%s\n", c.more)
	}
	if len(c.params) > 0 {
		b.WriteString("\nOptions:\n")
		writeParamHelp(&b, c.params)
	}
	b.WriteString("\nGlobal options:\n")
	writeParamHelp(&b, globalParams)
	return b.String()
}

func writeParamHelp(b *strings.Builder, params []param) {
	for _, p := range params {
		head := "--" + p.name
		if p.kind == kindBool {
			head += " | --no-" + p.name
		} else if p.kind != kindSwitch {
			head += " " + valueSyntax(p)
		}
		fmt.Fprintf(b, "  %s\n      %s\n", head, p.help)
	}
}

func valueSyntax(p param) string {
	if p.syntax != "" {
		return p.syntax
	}
	if p.kind == kindInt {
		return "<integer>"
	}
	return "<string>"
}
