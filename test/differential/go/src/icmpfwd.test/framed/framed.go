// Package framed reads and writes the big-endian uint32 words that frame the differential
// test's pipes (test/differential/framed.ts is the other end): counts, lengths and commands.
package framed

import (
	"encoding/binary"
	"io"
	"log"
)

// ReadU32 reads one word; io.EOF when the pipe closed between words.
func ReadU32(r io.Reader) (uint32, error) {
	var b [4]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(b[:]), nil
}

// WriteU32 writes one word; a broken pipe ends the program (the test went away).
func WriteU32(w io.Writer, v uint32) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	if _, err := w.Write(b[:]); err != nil {
		log.Fatalf("write: %v", err)
	}
}
