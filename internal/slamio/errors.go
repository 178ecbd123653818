package slamio

import (
	"errors"
	"fmt"
)

// ErrSyntax is wrapped by every ParseError: the file is not what its
// extension promises.
var ErrSyntax = errors.New("malformed file")

// ParseError says where in which file the input went wrong. Line is 1-based
// for text (CARMEN logs, map YAML, P2 images); for binary P5 pixel data Line
// is 0 and Offset is the byte offset from the start of the file.
type ParseError struct {
	// File is the path as given by the caller.
	File string
	// Line is 1-based; 0 for a byte offset into binary data.
	Line int
	// Offset is the byte offset when Line is 0.
	Offset int64
	// Msg says what is wrong there.
	Msg string
}

// Error reads "file:line: msg", or "file: byte N: msg" for binary data, the
// form editors and grep users jump to.
func (e *ParseError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: byte %d: %s", e.File, e.Offset, e.Msg)
}

// Unwrap lets callers test for ErrSyntax.
func (e *ParseError) Unwrap() error { return ErrSyntax }

func lineErr(file string, line int, format string, args ...any) error {
	return &ParseError{File: file, Line: line, Msg: fmt.Sprintf(format, args...)}
}

func byteErr(file string, off int64, format string, args ...any) error {
	return &ParseError{File: file, Offset: off, Msg: fmt.Sprintf(format, args...)}
}
