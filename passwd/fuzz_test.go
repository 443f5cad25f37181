package passwd

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzParsePasswd: Parse never panics and returns an error or a whole file;
// the Editor reads every file Parse accepts and writes it back unchanged.
func FuzzParsePasswd(f *testing.F) {
	f.Add(golden)
	f.Add("u:$7$1$AAAAAAAAAAAAAAAA$" + strings.Repeat("A", 86) + "==\n#c\n\n")
	f.Add("u:plain\n")
	f.Add("u:$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$AAAAAA\r\n")
	f.Fuzz(func(t *testing.T, text string) {
		file, err := Parse(strings.NewReader(text), "fuzz")
		if err != nil {
			if file != nil {
				t.Fatal("file and error")
			}
			return
		}
		if file.dummy == nil {
			t.Fatal("no dummy hash")
		}
		e, err := ReadEditor(strings.NewReader(text), "fuzz")
		if err != nil {
			t.Fatalf("Parse accepts, ReadEditor refuses: %v", err)
		}
		if len(e.Users()) != file.Len() {
			t.Fatalf("Editor has %d users, File %d", len(e.Users()), file.Len())
		}
		var out bytes.Buffer
		if _, err := e.WriteTo(&out); err != nil {
			t.Fatal(err)
		}
		want := text
		if want != "" && !strings.HasSuffix(want, "\n") {
			want += "\n"
		}
		if out.String() != want {
			t.Fatalf("round trip changed the file:\n%q\n%q", want, out.String())
		}
	})
}
