package benchmark

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"unicode/utf8"
)

// Row is one line of the table: a figure measured on each path (nil where
// it does not apply) and how Warren compares.
type Row struct {
	Name   string   `json:"name"`
	Unit   string   `json:"unit"`
	Direct *float64 `json:"direct"`
	Floor  *float64 `json:"floor"`
	Warren *float64 `json:"warren"`
	// WarrenPerFloor and WarrenPerDirect are ratios of the figures.
	WarrenPerFloor  *float64 `json:"warren_per_floor"`
	WarrenPerDirect *float64 `json:"warren_per_direct"`
	// FloorAdded and WarrenAdded are, for times, what each path adds to
	// direct (in Unit).
	FloorAdded  *float64 `json:"floor_added,omitempty"`
	WarrenAdded *float64 `json:"warren_added,omitempty"`
	// HigherIsBetter rows (throughput) show ratios as percentages.
	HigherIsBetter bool   `json:"higher_is_better"`
	Note           string `json:"note,omitempty"`
	// OK is false when a check of the row failed (a connection that did
	// not succeed, descriptors or goroutines that did not come back).
	OK bool `json:"ok"`
}

// Table is the bench's result.
type Table struct {
	Quick bool  `json:"quick"`
	Rows  []Row `json:"rows"`
}

func num(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// newRow fills the ratios (and, for times, the added figures) from the
// measured values; a negative value means "not measured".
func newRow(name, unit string, direct, floor, warren float64, higherIsBetter, added bool) Row {
	r := Row{Name: name, Unit: unit, HigherIsBetter: higherIsBetter, OK: true}
	if direct >= 0 {
		r.Direct = num(direct)
	}
	if floor >= 0 {
		r.Floor = num(floor)
	}
	if warren >= 0 {
		r.Warren = num(warren)
	}
	if r.Warren != nil && r.Floor != nil && floor > 0 {
		r.WarrenPerFloor = num(warren / floor)
	}
	if r.Warren != nil && r.Direct != nil && direct > 0 {
		r.WarrenPerDirect = num(warren / direct)
	}
	if added && r.Direct != nil {
		if r.Floor != nil {
			r.FloorAdded = num(floor - direct)
		}
		if r.Warren != nil {
			r.WarrenAdded = num(warren - direct)
		}
	}
	return r
}

// Write prints the table as aligned text.
func (t *Table) Write(w io.Writer) error {
	// Figures align right, names left: pad every name to the longest.
	width := len("measure")
	for _, r := range t.Rows {
		width = max(width, utf8.RuneCountInString(r.Name))
	}
	pad := func(s string) string { return s + strings.Repeat(" ", width-utf8.RuneCountInString(s)) }
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, pad("measure")+"\tunit\tdirect\tfloor\twarren\twarren/floor\twarren/direct\tfloor added\twarren added\t note")
	for _, r := range t.Rows {
		cells := []string{pad(r.Name), r.Unit, fig(r.Direct, r.Unit), fig(r.Floor, r.Unit), fig(r.Warren, r.Unit),
			ratio(r.WarrenPerFloor, r.HigherIsBetter), ratio(r.WarrenPerDirect, r.HigherIsBetter),
			added(r.FloorAdded, r.Unit), added(r.WarrenAdded, r.Unit), " " + r.Note}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// WriteJSON writes the table to path as JSON.
func (t *Table) WriteJSON(path string) error {
	data, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// digits is how precisely each unit is worth printing.
func digits(unit string) int {
	switch unit {
	case "MB/s", "µs", "KiB":
		return 0
	case "CPU-s/GB":
		return 2
	}
	return 1
}

func fig(v *float64, unit string) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.*f", digits(unit), *v)
}

func added(v *float64, unit string) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%+.*f", digits(unit), *v)
}

func ratio(v *float64, percent bool) string {
	switch {
	case v == nil:
		return "-"
	case percent:
		return fmt.Sprintf("%.0f%%", *v*100)
	}
	return fmt.Sprintf("%.2fx", *v)
}
