package localproxy

import (
	"io"
	"log/slog"
)

// Log levels beyond slog's four, for -v 1 (fatal) and -v 6 (trace).
const (
	LevelTrace = slog.LevelDebug - 4
	LevelFatal = slog.LevelError + 4
)

// NewLogger returns a text logger for a -v verbosity: 0 off, 1 fatal,
// 2 error, 3 warning, 4 info, 5 debug, 6 and above trace.
func NewLogger(w io.Writer, verbosity int) *slog.Logger {
	if verbosity <= 0 {
		return slog.New(slog.DiscardHandler)
	}
	levels := []slog.Level{LevelFatal, slog.LevelError, slog.LevelWarn, slog.LevelInfo, slog.LevelDebug, LevelTrace}
	lvl := levels[min(verbosity, 6)-1]
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: lvl,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.LevelKey {
				switch a.Value.Any().(slog.Level) {
				case LevelTrace:
					a.Value = slog.StringValue("TRACE")
				case LevelFatal:
					a.Value = slog.StringValue("FATAL")
				}
			}
			return a
		},
	}))
}
