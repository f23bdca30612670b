// Package record is the one on-disk codec of crib's durable records (pods
// under sandboxes/, containers under containers/): a JSON object of the
// record's plain fields with snake_case keys, plus the CRI config the
// record was made from under "config" in its canonical protojson form
// (encoding/json cannot encode protobuf messages faithfully). Files are
// written atomically. It knows nothing about pods or containers.
package record

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/crib-dev/crib/internal/atomicfile"
)

// configKey is the key of the CRI config in every record.
const configKey = "config"

// Marshal encodes fields (a pointer to a struct whose config field is
// tagged `json:"-"`) and config (nil: none) as one indented object.
func Marshal(fields any, config proto.Message) ([]byte, error) {
	obj, err := json.Marshal(fields)
	if err != nil {
		return nil, err
	}
	if config != nil && !reflect.ValueOf(config).IsNil() {
		cfg, err := protojson.Marshal(config)
		if err != nil {
			return nil, fmt.Errorf("encoding the CRI config: %w", err)
		}
		obj = spliceKey(obj, configKey, cfg)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, obj, "", "  "); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// spliceKey adds "key": value at the end of a JSON object.
func spliceKey(obj []byte, key string, value []byte) []byte {
	obj = bytes.TrimRight(obj, " \n")
	out := append([]byte(nil), obj[:len(obj)-1]...)
	if len(bytes.TrimSpace(out)) > 1 { // not "{"
		out = append(out, ',')
	}
	out = append(out, `"`+key+`":`...)
	out = append(out, value...)
	return append(out, '}')
}

// Unmarshal decodes a record into fields and config, and reports whether
// the record held a config. Keys are matched to fields ignoring case and
// underscores: crib before this package wrote pod records with Go field
// names ("NetNSPath"), which must still load as "net_ns_path". Unknown
// keys and unknown config fields (a newer crib's) are ignored.
func Unmarshal(data []byte, fields any, config proto.Message) (bool, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return false, err
	}
	keys := keysOf(reflect.TypeOf(fields))
	renamed := make(map[string]json.RawMessage, len(raw))
	var cfg json.RawMessage
	for k, v := range raw {
		n := normalize(k)
		if n == configKey {
			cfg = v
			continue
		}
		if key, ok := keys[n]; ok {
			k = key
		}
		renamed[k] = v
	}
	obj, err := json.Marshal(renamed)
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(obj, fields); err != nil {
		return false, err
	}
	if len(cfg) == 0 || string(cfg) == "null" || config == nil {
		return false, nil
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(cfg, config); err != nil {
		return false, fmt.Errorf("decoding the CRI config: %w", err)
	}
	return true, nil
}

func normalize(key string) string { return strings.ToLower(strings.ReplaceAll(key, "_", "")) }

// keysOf maps the normalized JSON key of every field of struct type t
// (through embedded structs) to the key its tag spells.
func keysOf(t reflect.Type) map[string]string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	out := map[string]string{}
	if t.Kind() != reflect.Struct {
		return out
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && name == "" {
			for k, v := range keysOf(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[normalize(name)] = name
	}
	return out
}

// Save writes data to path atomically (a crash leaves the old record or
// the new, never a torn one), creating its directory.
func Save(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, data, 0o600)
}

// SaveUnsynced replaces the record at path atomically but without
// syncing: a crash of crib still leaves the old record or the new, a
// power loss may keep the old one. For changes that recovery after a
// power loss would undo anyway.
func SaveUnsynced(path string, data []byte) error {
	return atomicfile.WriteVolatile(path, data, 0o600)
}

// LoadDir reads the record file named name in every subdirectory of dir
// and passes its bytes to decode. A directory without the file (a create
// that crashed before its first save) is skipped; a file that cannot be
// read or decoded is reported in errs and skipped. A missing dir holds
// no records.
func LoadDir(dir, name string, decode func(sub string, data []byte) error) (errs []error, err error) {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name(), name))
		if os.IsNotExist(err) {
			continue
		}
		if err == nil {
			err = decode(e.Name(), data)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("record %s: %w", filepath.Join(e.Name(), name), err))
		}
	}
	return errs, nil
}
