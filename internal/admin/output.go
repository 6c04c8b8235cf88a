package admin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// writeOutput prints a response the way the AWS CLI's json output does:
// members in model order (struct field order), absent members left out,
// 4-space indent, non-ASCII and <>& unescaped, timestamps as ISO 8601 in the
// local zone with microseconds only when non-zero (Python's isoformat), and
// nothing at all for an empty response.
func writeOutput(w io.Writer, v any) error {
	var buf bytes.Buffer
	if !writeValue(&buf, reflect.ValueOf(v), 0) {
		return nil
	}
	if buf.String() == "{}" {
		return nil
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

var timeType = reflect.TypeFor[time.Time]()

// writeValue writes v at the given depth; false if v is absent (nil).
func writeValue(buf *bytes.Buffer, v reflect.Value, depth int) bool {
	if !v.IsValid() {
		return false
	}
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return false
		}
		v = v.Elem()
	}
	if v.Type() == timeType {
		writeString(buf, isoTimestamp(v.Interface().(time.Time)))
		return true
	}
	switch v.Kind() {
	case reflect.Struct:
		writeStruct(buf, v, depth)
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return false
		}
		writeSlice(buf, v, depth)
	case reflect.Map:
		if v.IsNil() {
			return false
		}
		writeMap(buf, v, depth)
	case reflect.String:
		writeString(buf, v.String())
	case reflect.Bool:
		fmt.Fprint(buf, v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		fmt.Fprint(buf, v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		fmt.Fprint(buf, v.Uint())
	case reflect.Float32, reflect.Float64:
		buf.WriteString(pythonFloat(v.Float()))
	default:
		writeString(buf, fmt.Sprint(v.Interface()))
	}
	return true
}

func writeStruct(buf *bytes.Buffer, v reflect.Value, depth int) {
	t := v.Type()
	n := 0
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, omit, ok := jsonField(f)
		if !ok {
			continue
		}
		fv := v.Field(i)
		if omit && fv.IsZero() {
			continue
		}
		var elem bytes.Buffer
		if !writeValue(&elem, fv, depth+1) {
			continue
		}
		openItem(buf, "{", n, depth+1)
		writeString(buf, name)
		buf.WriteString(": ")
		buf.Write(elem.Bytes())
		n++
	}
	closeItems(buf, "{", "}", n, depth)
}

func writeSlice(buf *bytes.Buffer, v reflect.Value, depth int) {
	for i := 0; i < v.Len(); i++ {
		openItem(buf, "[", i, depth+1)
		if !writeValue(buf, v.Index(i), depth+1) {
			buf.WriteString("null")
		}
	}
	closeItems(buf, "[", "]", v.Len(), depth)
}

func writeMap(buf *bytes.Buffer, v reflect.Value, depth int) {
	keys := v.MapKeys()
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	for i, k := range keys {
		openItem(buf, "{", i, depth+1)
		writeString(buf, k.String())
		buf.WriteString(": ")
		if !writeValue(buf, v.MapIndex(k), depth+1) {
			buf.WriteString("null")
		}
	}
	closeItems(buf, "{", "}", len(keys), depth)
}

// openItem starts the i-th item of a container: the opening bracket before
// the first, a comma before the others, then a newline and the indent.
func openItem(buf *bytes.Buffer, open string, i, depth int) {
	if i == 0 {
		buf.WriteString(open)
	} else {
		buf.WriteByte(',')
	}
	buf.WriteByte('\n')
	buf.WriteString(strings.Repeat("    ", depth))
}

func closeItems(buf *bytes.Buffer, open, close string, n, depth int) {
	if n == 0 {
		buf.WriteString(open + close)
		return
	}
	buf.WriteByte('\n')
	buf.WriteString(strings.Repeat("    ", depth))
	buf.WriteString(close)
}

// jsonField reads a field's JSON name and whether it is omitted when zero.
func jsonField(f reflect.StructField) (name string, omit, ok bool) {
	if !f.IsExported() {
		return "", false, false
	}
	tag := f.Tag.Get("json")
	if tag == "-" {
		return "", false, false
	}
	name, opts, _ := strings.Cut(tag, ",")
	if name == "" {
		name = f.Name
	}
	for _, o := range strings.Split(opts, ",") {
		if o == "omitempty" || o == "omitzero" {
			// For the kinds used here omitempty and omitzero agree,
			// except that an empty, non-nil slice (the service said
			// "[]") is printed, as the CLI prints it.
			omit = f.Type.Kind() != reflect.Slice
		}
	}
	return name, omit, true
}

// writeString writes s as a JSON string the way Python's json.dumps does
// with ensure_ascii=False: like encoding/json without HTML escaping, except
// that U+2028 and U+2029 stay raw.
func writeString(buf *bytes.Buffer, s string) {
	buf.WriteByte('"')
	for {
		i := strings.IndexFunc(s, func(r rune) bool { return r == '\u2028' || r == '\u2029' })
		if i < 0 {
			break
		}
		writeStringBody(buf, s[:i])
		buf.WriteString(s[i : i+3]) // both separators are 3 bytes in UTF-8
		s = s[i+3:]
	}
	writeStringBody(buf, s)
	buf.WriteByte('"')
}

// writeStringBody writes s JSON-escaped, without the quotes.
func writeStringBody(buf *bytes.Buffer, s string) {
	var tmp bytes.Buffer
	enc := json.NewEncoder(&tmp)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	b := tmp.Bytes()
	buf.Write(b[1 : len(b)-2]) // drop the quotes and the newline
}

// isoTimestamp formats t as Python's datetime.isoformat() does for the
// aware, local-time datetimes botocore produces.
func isoTimestamp(t time.Time) string {
	t = t.Round(time.Microsecond).In(time.Local)
	if t.Nanosecond() == 0 {
		return t.Format("2006-01-02T15:04:05-07:00")
	}
	return t.Format("2006-01-02T15:04:05.000000-07:00")
}

// pythonFloat writes a number as Python's json module does (its repr): the
// shortest form that reads back the same, always with a point or an
// exponent, exponents from 1e16 up and below 1e-4.
func pythonFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case math.IsNaN(f):
		return "NaN"
	}
	if abs := math.Abs(f); abs != 0 && (abs >= 1e16 || abs < 1e-4) {
		return strconv.FormatFloat(f, 'e', -1, 64)
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}
