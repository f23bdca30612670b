package golden

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"
)

// CheckDecoded reads each file of want (names relative to dir), decodes it
// with decode and compares the result with want's value: fields holding
// protobuf messages with proto.Equal (reflect.DeepEqual looks into their
// internal state), every other field with reflect.DeepEqual. Packages that
// store records use it to prove an upgraded crib reads what an earlier one
// wrote.
func CheckDecoded[T any](t *testing.T, dir string, want map[string]*T, decode func([]byte) (*T, error)) {
	t.Helper()
	for file, w := range want {
		t.Run(file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dir, file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := decode(data)
			if err != nil {
				t.Fatal(err)
			}
			g, wv := *got, *w
			clearMessages(&g, &wv, t)
			if !reflect.DeepEqual(g, wv) {
				t.Errorf("got  %+v\nwant %+v", g, wv)
			}
		})
	}
}

// clearMessages compares the protobuf message fields of the structs got
// and want point to, reports a difference as an error, and sets both to
// nil so the rest can be compared with reflect.DeepEqual.
func clearMessages(got, want any, t *testing.T) {
	t.Helper()
	gv, wv := reflect.ValueOf(got).Elem(), reflect.ValueOf(want).Elem()
	if gv.Kind() != reflect.Struct {
		return
	}
	msgType := reflect.TypeFor[proto.Message]()
	for i := range gv.NumField() {
		f := gv.Type().Field(i)
		if !f.IsExported() || !f.Type.Implements(msgType) {
			continue
		}
		gm, _ := gv.Field(i).Interface().(proto.Message)
		wm, _ := wv.Field(i).Interface().(proto.Message)
		if !proto.Equal(gm, wm) {
			t.Errorf("%s: got %v, want %v", f.Name, gm, wm)
		}
		gv.Field(i).SetZero()
		wv.Field(i).SetZero()
	}
}
