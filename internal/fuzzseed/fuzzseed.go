// Package fuzzseed adds named seed inputs to a Go fuzz target and, on
// request, writes them as its committed seed corpus. It exists because
// the codec's and the engine's fuzz targets keep their seeds in code and
// both rewrite testdata/fuzz from them the same way.
package fuzzseed

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Seed is one named seed input; Name becomes the file seed-<Name>.
type Seed struct {
	Name string
	Data []byte
}

// Add adds seeds to f and, when write is set, also writes them to
// testdata/fuzz/<target>/seed-<name> in the corpus file format.
func Add(f *testing.F, seeds []Seed, write bool) {
	for _, s := range seeds {
		f.Add(s.Data)
	}
	if !write {
		return
	}
	dir := filepath.Join("testdata", "fuzz", f.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.Fatal(err)
	}
	for _, s := range seeds {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s.Data)
		if err := os.WriteFile(filepath.Join(dir, "seed-"+s.Name), []byte(body), 0o644); err != nil {
			f.Fatal(err)
		}
	}
}
