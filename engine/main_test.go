package engine

import (
	"os"
	"testing"
)

// TestMain stops the brokers FuzzConnection shares between its inputs
// (fuzz_test.go) once every test and fuzz input has run.
func TestMain(m *testing.M) {
	code := m.Run()
	fuzzStop()
	os.Exit(code)
}
