package admin

import (
	"fmt"
	"strings"
)

// The AWS CLI's shorthand syntax for structured parameters:
//
//	parameter     = keyval *( "," keyval )
//	keyval        = key "=" [ values ]
//	values        = explicit-list / hash-literal / csv-list
//	csv-list      = value *( "," value )   ; stops before a "," that starts a new key=
//	explicit-list = "[" [ element *( "," element ) ] "]"
//	hash-literal  = "{" [ keyval *( "," keyval ) ] "}"
//	value         = quoted string ('...' or "...") or bare text, "\" escapes
//
// So "thingName=t,services=SSH,HTTP" gives {"thingName":"t","services":["SSH","HTTP"]}:
// after a comma, text that is not "key=" continues the current key's list.
// Whitespace around keys and values is ignored. The result holds strings,
// []any and map[string]any; the parameter's shape converts and checks it.

// shorthandError reports where the input stopped making sense.
type shorthandError struct {
	msg   string
	input string
	pos   int
}

func (e *shorthandError) Error() string {
	return fmt.Sprintf("%s at position %d in %q", e.msg, e.pos, e.input)
}

type shorthandParser struct {
	in  string
	pos int
}

// parseShorthand parses one shorthand structure ("k=v,k2=v2").
func parseShorthand(s string) (map[string]any, error) {
	p := &shorthandParser{in: s}
	m, err := p.keyvals(0)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if !p.eof() {
		return nil, p.errorf("unexpected %q", p.peek())
	}
	return m, nil
}

func (p *shorthandParser) errorf(format string, args ...any) error {
	return &shorthandError{msg: fmt.Sprintf(format, args...), input: p.in, pos: p.pos}
}

func (p *shorthandParser) eof() bool  { return p.pos >= len(p.in) }
func (p *shorthandParser) peek() byte { return p.in[p.pos] }

func (p *shorthandParser) skipSpace() {
	for !p.eof() && isSpace(p.peek()) {
		p.pos++
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// keyvals parses keyval *("," keyval) up to end (0 for the top level, or the
// closing '}' of a hash literal, which it leaves in place).
func (p *shorthandParser) keyvals(end byte) (map[string]any, error) {
	m := map[string]any{}
	for {
		key, err := p.key()
		if err != nil {
			return nil, err
		}
		if _, dup := m[key]; dup {
			return nil, p.errorf("key %q given twice", key)
		}
		v, err := p.values(end)
		if err != nil {
			return nil, err
		}
		m[key] = v
		p.skipSpace()
		if p.eof() || p.peek() == end {
			return m, nil
		}
		if p.peek() != ',' {
			return nil, p.errorf("expected ',' but found %q", p.peek())
		}
		p.pos++
	}
}

// key reads a key and its '='.
func (p *shorthandParser) key() (string, error) {
	p.skipSpace()
	start := p.pos
	for !p.eof() && isKeyChar(p.peek()) {
		p.pos++
	}
	key := p.in[start:p.pos]
	if key == "" {
		if p.eof() {
			return "", p.errorf("expected a key but the input ended")
		}
		return "", p.errorf("expected a key but found %q", p.peek())
	}
	p.skipSpace()
	if p.eof() || p.peek() != '=' {
		return "", p.errorf("expected '=' after key %q", key)
	}
	p.pos++
	return key, nil
}

func isKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("-_.#/:@", c) >= 0
}

// startsKey reports whether a "key=" begins at i, which is what ends a
// csv-list.
func (p *shorthandParser) startsKey(i int) bool {
	for i < len(p.in) && isSpace(p.in[i]) {
		i++
	}
	start := i
	for i < len(p.in) && isKeyChar(p.in[i]) {
		i++
	}
	if i == start {
		return false
	}
	for i < len(p.in) && isSpace(p.in[i]) {
		i++
	}
	return i < len(p.in) && p.in[i] == '='
}

// values parses what follows "key=".
func (p *shorthandParser) values(end byte) (any, error) {
	p.skipSpace()
	if p.eof() {
		return "", nil
	}
	switch p.peek() {
	case '[':
		return p.list()
	case '{':
		return p.hash()
	}
	first, err := p.value(stopSet(',', end))
	if err != nil {
		return nil, err
	}
	items := []any{first}
	for {
		p.skipSpace()
		if p.eof() || p.peek() != ',' || p.startsKey(p.pos+1) {
			break
		}
		p.pos++
		p.skipSpace()
		if p.eof() || p.peek() == ',' || p.peek() == end {
			return nil, p.errorf("expected a value after ','")
		}
		v, err := p.value(stopSet(',', end))
		if err != nil {
			return nil, err
		}
		items = append(items, v)
	}
	if len(items) == 1 {
		return first, nil
	}
	return items, nil
}

func stopSet(cs ...byte) string {
	var b strings.Builder
	for _, c := range cs {
		if c != 0 {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// list parses an explicit list; elements may be lists or hashes themselves.
func (p *shorthandParser) list() ([]any, error) {
	p.pos++ // '['
	items := []any{}
	p.skipSpace()
	if !p.eof() && p.peek() == ']' {
		p.pos++
		return items, nil
	}
	for {
		p.skipSpace()
		if p.eof() {
			return nil, p.errorf("unterminated list, expected ']'")
		}
		var v any
		var err error
		switch p.peek() {
		case '[':
			v, err = p.list()
		case '{':
			v, err = p.hash()
		default:
			v, err = p.value(",]")
		}
		if err != nil {
			return nil, err
		}
		items = append(items, v)
		p.skipSpace()
		if p.eof() {
			return nil, p.errorf("unterminated list, expected ']'")
		}
		switch p.peek() {
		case ']':
			p.pos++
			return items, nil
		case ',':
			p.pos++
		default:
			return nil, p.errorf("expected ',' or ']' but found %q", p.peek())
		}
	}
}

// hash parses a hash literal "{k=v,...}".
func (p *shorthandParser) hash() (map[string]any, error) {
	p.pos++ // '{'
	p.skipSpace()
	if !p.eof() && p.peek() == '}' {
		p.pos++
		return map[string]any{}, nil
	}
	m, err := p.keyvals('}')
	if err != nil {
		return nil, err
	}
	if p.eof() {
		return nil, p.errorf("unterminated hash, expected '}'")
	}
	p.pos++ // '}'
	return m, nil
}

// value reads one scalar: a quoted string, or bare text up to a stop byte
// with surrounding whitespace trimmed. A backslash keeps the next byte
// literal in bare text, and the quote character in a quoted string.
func (p *shorthandParser) value(stops string) (string, error) {
	p.skipSpace()
	if !p.eof() && (p.peek() == '"' || p.peek() == '\'') {
		s, err := p.quoted()
		if err != nil {
			return "", err
		}
		p.skipSpace()
		if !p.eof() && strings.IndexByte(stops, p.peek()) < 0 {
			return "", p.errorf("unexpected %q after quoted value", p.peek())
		}
		return s, nil
	}
	var b strings.Builder
	trimTo := 0 // length of b without trailing unescaped whitespace
	for !p.eof() {
		c := p.peek()
		if strings.IndexByte(stops, c) >= 0 {
			break
		}
		if c == '\\' && p.pos+1 < len(p.in) {
			b.WriteByte(p.in[p.pos+1])
			p.pos += 2
			trimTo = b.Len()
			continue
		}
		b.WriteByte(c)
		p.pos++
		if !isSpace(c) {
			trimTo = b.Len()
		}
	}
	return b.String()[:trimTo], nil
}

func (p *shorthandParser) quoted() (string, error) {
	q := p.peek()
	start := p.pos
	p.pos++
	var b strings.Builder
	for !p.eof() {
		c := p.peek()
		switch {
		case c == '\\' && p.pos+1 < len(p.in) && (p.in[p.pos+1] == q || p.in[p.pos+1] == '\\'):
			b.WriteByte(p.in[p.pos+1])
			p.pos += 2
		case c == q:
			p.pos++
			return b.String(), nil
		default:
			b.WriteByte(c)
			p.pos++
		}
	}
	p.pos = start
	return "", p.errorf("unterminated quoted string")
}
