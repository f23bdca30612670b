package config

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// FileError is a problem in a config file, located by file, line and key.
type FileError struct {
	File string
	Line int // 0 when unknown
	Key  string
	Msg  string
}

func (e *FileError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	if e.Key != "" {
		return fmt.Sprintf("%s: key %q: %s", loc, e.Key, e.Msg)
	}
	return fmt.Sprintf("%s: %s", loc, e.Msg)
}

// LoadFile reads path over base. A missing file is not an error when
// optional is true (the default config path); a file named on the command
// line must exist.
func LoadFile(base Config, path string, optional bool) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if optional && errors.Is(err, fs.ErrNotExist) {
			return base, nil
		}
		return base, fmt.Errorf("reading config: %w", err)
	}
	return Parse(base, path, data)
}

// Parse decodes TOML data over base, refusing unknown keys and values of the
// wrong type, then validates the result. name is used in error messages.
func Parse(base Config, name string, data []byte) (Config, error) {
	cfg := base
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return base, fileError(name, err)
	}
	if err := cfg.Validate(); err != nil {
		var ve *ValueError
		if errors.As(err, &ve) {
			return base, &FileError{File: name, Line: lineOfKey(data, ve.Key), Key: ve.Key, Msg: ve.Msg}
		}
		return base, err
	}
	return cfg, nil
}

func fileError(name string, err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) && len(strict.Errors) > 0 {
		first := strict.Errors[0]
		row, _ := first.Position()
		return &FileError{File: name, Line: row, Key: strings.Join(first.Key(), "."), Msg: "unknown key"}
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, _ := de.Position()
		return &FileError{File: name, Line: row, Key: strings.Join(de.Key(), "."), Msg: de.Error()}
	}
	return &FileError{File: name, Msg: err.Error()}
}

// lineOfKey finds the line that sets a dotted key such as "storage.driver",
// so a semantic error points where a person must edit.
func lineOfKey(data []byte, dotted string) int {
	parts := strings.Split(dotted, ".")
	leaf := parts[len(parts)-1]
	table := strings.Join(parts[:len(parts)-1], ".")
	assign := regexp.MustCompile(`^\s*"?` + regexp.QuoteMeta(leaf) + `"?\s*=`)
	header := regexp.MustCompile(`^\s*\[\s*([^\]]+?)\s*\]`)
	current := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if m := header.FindStringSubmatch(line); m != nil {
			current = m[1]
			continue
		}
		if current == table && assign.MatchString(line) {
			return n
		}
	}
	return 0
}

// ValueError is a key whose value is of the right type but not allowed.
type ValueError struct {
	Key string
	Msg string
}

func (e *ValueError) Error() string { return fmt.Sprintf("key %q: %s", e.Key, e.Msg) }

func oneOf(key, val string, allowed ...string) error {
	if slices.Contains(allowed, val) {
		return nil
	}
	return &ValueError{Key: key, Msg: fmt.Sprintf("%q is not one of %s", val, strings.Join(allowed, ", "))}
}

func nonEmpty(key, val string) error {
	if val == "" {
		return &ValueError{Key: key, Msg: "must not be empty"}
	}
	return nil
}

// listenAddress accepts "" (off) or host:port with a fixed port: the
// port must be the same in crib's namespace and on the host, so crib
// cannot let the kernel pick one.
func listenAddress(key, val string) error {
	if val == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(val)
	if err != nil {
		return &ValueError{Key: key, Msg: fmt.Sprintf("%q is not host:port: %v", val, err)}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return &ValueError{Key: key, Msg: fmt.Sprintf("%q: port must be a number from 1 to 65535", val)}
	}
	return nil
}

// copyUpDirs accepts absolute, clean paths other than / (a tmpfs over / would
// hide everything) and the kernel's own trees, whose entries cannot be
// bound back.
func copyUpDirs(key string, dirs []string) error {
	for _, d := range dirs {
		switch {
		case !filepath.IsAbs(d) || filepath.Clean(d) != d:
			return &ValueError{Key: key, Msg: fmt.Sprintf("%q is not an absolute, clean path", d)}
		case d == "/" || d == "/proc" || d == "/sys" || d == "/dev" ||
			strings.HasPrefix(d, "/proc/") || strings.HasPrefix(d, "/sys/") || strings.HasPrefix(d, "/dev/"):
			return &ValueError{Key: key, Msg: fmt.Sprintf("%q cannot be copied up", d)}
		}
	}
	return nil
}

// duration accepts a positive Go duration such as "2s" or "500ms".
func duration(key, val string) error {
	d, err := time.ParseDuration(val)
	if err != nil || d <= 0 {
		return &ValueError{Key: key, Msg: fmt.Sprintf("%q is not a positive duration such as \"2s\"", val)}
	}
	return nil
}

// Validate checks every value that the types alone cannot.
func (c Config) Validate() error {
	checks := []error{
		nonEmpty("root", c.Root),
		nonEmpty("runroot", c.RunRoot),
		oneOf("log_level", c.LogLevel, "debug", "info", "warn", "error"),
		oneOf("log_format", c.LogFormat, "text", "json"),
		oneOf("storage.driver", c.Storage.Driver, "auto", "overlay", "fuse-overlayfs", "vfs"),
		oneOf("runtime.default_handler", c.Runtime.DefaultHandler, "auto", "runc", "crun"),
		oneOf("network.outbound", c.Network.Outbound, "auto", "slirp4netns", "pasta", "none"),
		oneOf("cgroup.manager", c.Cgroup.Manager, "auto", "cgroupfs", "none"),
	}
	if c.Streaming.Port < 0 || c.Streaming.Port > 65535 {
		checks = append(checks, &ValueError{Key: "streaming.port", Msg: fmt.Sprintf("%d is not a port number", c.Streaming.Port)})
	}
	if (c.Streaming.TLSCert == "") != (c.Streaming.TLSKey == "") {
		checks = append(checks, &ValueError{Key: "streaming.tls_cert", Msg: "tls_cert and tls_key must be set together"})
	}
	checks = append(checks, listenAddress("metrics.address", c.Metrics.Address))
	checks = append(checks, copyUpDirs("rootless.copy_up", c.Rootless.CopyUp))
	checks = append(checks, duration("nri.registration_timeout", c.NRI.RegistrationTimeout))
	checks = append(checks, duration("nri.request_timeout", c.NRI.RequestTimeout))
	return errors.Join(slices.DeleteFunc(checks, func(e error) bool { return e == nil })...)
}

// Key describes one configuration key, for flags and for `crib config`.
type Key struct {
	Name  string // dotted TOML name, e.g. "storage.driver"
	Flag  string
	Help  string
	value reflect.Value
}

// Keys lists every key of cfg in declaration order, bound to cfg's fields.
func Keys(cfg *Config) []Key {
	var keys []Key
	collectKeys(reflect.ValueOf(cfg).Elem(), "", &keys)
	return keys
}

func collectKeys(v reflect.Value, prefix string, keys *[]Key) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name := prefix + f.Tag.Get("toml")
		if f.Type.Kind() == reflect.Struct {
			collectKeys(v.Field(i), name+".", keys)
			continue
		}
		*keys = append(*keys, Key{Name: name, Flag: f.Tag.Get("flag"), Help: f.Tag.Get("help"), value: v.Field(i)})
	}
}

// String renders the key's current value as TOML would.
func (k Key) String() string {
	switch k.value.Kind() {
	case reflect.String:
		return tomlQuote(k.value.String())
	case reflect.Int:
		return strconv.FormatInt(k.value.Int(), 10)
	case reflect.Bool:
		return strconv.FormatBool(k.value.Bool())
	case reflect.Slice:
		quoted := make([]string, k.value.Len())
		for i := range quoted {
			quoted[i] = tomlQuote(k.value.Index(i).String())
		}
		return "[" + strings.Join(quoted, ", ") + "]"
	}
	return fmt.Sprint(k.value.Interface())
}

// flagValue adapts a config field to flag.Value. A list flag given on the
// command line replaces the file's list instead of appending to it.
type flagValue struct {
	v       reflect.Value
	touched bool
}

func (f *flagValue) String() string {
	if !f.v.IsValid() {
		return ""
	}
	return Key{value: f.v}.String()
}

func (f *flagValue) Set(s string) error {
	switch f.v.Kind() {
	case reflect.String:
		f.v.SetString(s)
	case reflect.Int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("%q is not a number", s)
		}
		f.v.SetInt(int64(n))
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not true or false", s)
		}
		f.v.SetBool(b)
	case reflect.Slice:
		if !f.touched {
			f.v.Set(reflect.MakeSlice(f.v.Type(), 0, 1))
			f.touched = true
		}
		for _, part := range strings.Split(s, ",") {
			if part = strings.TrimSpace(part); part != "" {
				f.v.Set(reflect.Append(f.v, reflect.ValueOf(part)))
			}
		}
	}
	return nil
}

func (f *flagValue) IsBoolFlag() bool { return f.v.IsValid() && f.v.Kind() == reflect.Bool }

// Overrides records flags given on the command line, to apply after the
// config file is read (flags win over the file).
type Overrides struct {
	set map[string][]string
}

// RegisterFlags adds a flag for every key to fs. The flags record their
// values; Apply copies them onto a Config later.
func RegisterFlags(fs *flag.FlagSet, defaults Config) *Overrides {
	o := &Overrides{set: map[string][]string{}}
	for _, k := range Keys(&defaults) {
		name := k.Flag
		fs.Func(name, k.Help+" (default "+k.String()+")", func(s string) error {
			// Check the value now so a bad flag fails at parse time.
			probe := defaults
			if err := probe.setByFlag(name, []string{s}); err != nil {
				return err
			}
			o.set[name] = append(o.set[name], s)
			return nil
		})
	}
	return o
}

// Apply copies the recorded flag values onto cfg, validates the result and
// fills the derived defaults (Finalize).
func (o *Overrides) Apply(cfg Config) (Config, error) {
	for name, vals := range o.set {
		if err := cfg.setByFlag(name, vals); err != nil {
			return cfg, fmt.Errorf("flag --%s: %w", name, err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("flags: %w", err)
	}
	return cfg.Finalize(), nil
}

func (c *Config) setByFlag(name string, vals []string) error {
	for _, k := range Keys(c) {
		if k.Flag != name {
			continue
		}
		fv := &flagValue{v: k.value}
		for _, s := range vals {
			if err := fv.Set(s); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("unknown flag --%s", name)
}

// Render prints cfg as a TOML file that Parse accepts.
func Render(cfg Config) string {
	var b strings.Builder
	section := ""
	for _, k := range Keys(&cfg) {
		table, leaf := "", k.Name
		if i := strings.LastIndex(k.Name, "."); i >= 0 {
			table, leaf = k.Name[:i], k.Name[i+1:]
		}
		if table != section {
			fmt.Fprintf(&b, "\n[%s]\n", table)
			section = table
		}
		fmt.Fprintf(&b, "# %s (--%s)\n%s = %s\n", k.Help, k.Flag, leaf, k.String())
	}
	return b.String()
}

// tomlQuote writes s as a TOML basic string. strconv.Quote would not do:
// Go escapes such as \a and \x01 are not TOML.
func tomlQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
