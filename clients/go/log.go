package client

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"
)

// Level is a log line's level word (docs/cli-contract.md: never a number).
type Level string

const (
	LevelDebug Level = "debug"
	LevelInfo  Level = "info"
	LevelWarn  Level = "warn"
	LevelError Level = "error"
)

// Fields are a log line's extra keys: "target" on lines about one service, "session" (the
// Welcome's session id) on lines about a session, "trace_id" on lines about a traced request.
type Fields map[string]any

// Logger receives the client's log lines.
type Logger func(level Level, msg string, fields Fields)

// JSONLogger writes one JSON object per line — time (RFC 3339, milliseconds, UTC), level, msg,
// then the fields in key order — to w (safe for concurrent use). Debug lines only when verbose.
func JSONLogger(w io.Writer, verbose bool) Logger {
	var mu sync.Mutex
	return func(level Level, msg string, fields Fields) {
		if level == LevelDebug && !verbose {
			return
		}
		var b bytes.Buffer
		b.WriteString(`{"time":`)
		writeJSON(&b, time.Now().UTC().Format("2006-01-02T15:04:05.000Z"))
		b.WriteString(`,"level":`)
		writeJSON(&b, string(level))
		b.WriteString(`,"msg":`)
		writeJSON(&b, msg)
		keys := make([]string, 0, len(fields))
		for k, v := range fields {
			if v != nil && v != "" && k != "time" && k != "level" && k != "msg" {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			b.WriteByte(',')
			writeJSON(&b, k)
			b.WriteByte(':')
			writeJSON(&b, fields[k])
		}
		b.WriteString("}\n")
		mu.Lock()
		defer mu.Unlock()
		_, _ = w.Write(b.Bytes())
	}
}

// writeJSON appends v as JSON without HTML escaping (a log line keeps its ">").
func writeJSON(b *bytes.Buffer, v any) {
	e := json.NewEncoder(b)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		_ = e.Encode(fmt.Sprint(v))
	}
	b.Truncate(b.Len() - 1) // Encode's newline
}
