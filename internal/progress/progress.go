// Package progress shows a person how a transfer of several blobs (the
// layers and config of an image pull) goes: on a terminal, one bar per blob
// redrawn in place; elsewhere, one line per blob once it is finished. It
// owns the wording and drawing only: it neither detects terminals nor knows
// where the events come from.
package progress

import (
	"fmt"
	"io"
	"strings"
	"sync"
)

// Kind says what happened to a blob.
type Kind int

const (
	Started Kind = iota // its transfer began
	Read                // more bytes arrived
	Done                // it is stored
	Skipped             // it was stored already
)

// Event reports on one blob.
type Event struct {
	ID     string // the blob's digest
	Kind   Kind
	Offset uint64 // bytes transferred so far
	Total  int64  // the blob's size; -1 when unknown
}

// Renderer draws events to a writer. Its methods are safe for concurrent
// use.
type Renderer struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	width int
	blobs []*blob
	byID  map[string]*blob
	drawn int // lines the last redraw wrote (terminal only)
}

type blob struct {
	id     string
	kind   Kind
	offset uint64
	total  int64
}

// New returns a renderer writing to w. With tty set it draws bars no wider
// than width columns (80 when width is not positive), redrawing them in
// place with ANSI cursor movements; otherwise it writes one plain line per
// finished blob.
func New(w io.Writer, tty bool, width int) *Renderer {
	if width <= 0 {
		width = 80
	}
	return &Renderer{w: w, tty: tty, width: width, byID: map[string]*blob{}}
}

// Update records e and draws what changed.
func (r *Renderer) Update(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, seen := r.byID[e.ID]
	if !seen {
		b = &blob{id: e.ID, total: -1}
		r.byID[e.ID] = b
		r.blobs = append(r.blobs, b)
	}
	finishedBefore := b.finished()
	b.kind = e.Kind
	if e.Offset > b.offset {
		b.offset = e.Offset
	}
	if e.Total >= 0 {
		b.total = e.Total
	}
	if r.tty {
		r.redraw()
		return
	}
	if b.finished() && !finishedBefore {
		fmt.Fprintln(r.w, plainLine(b))
	}
}

func (b *blob) finished() bool { return b.kind == Done || b.kind == Skipped }

// redraw moves the cursor back over the lines drawn last time and writes
// every blob's line again.
func (r *Renderer) redraw() {
	var sb strings.Builder
	if r.drawn > 0 {
		fmt.Fprintf(&sb, "\x1b[%dA", r.drawn)
	}
	for _, b := range r.blobs {
		sb.WriteString("\r\x1b[2K")
		sb.WriteString(barLine(b, r.width))
		sb.WriteByte('\n')
	}
	r.drawn = len(r.blobs)
	io.WriteString(r.w, sb.String())
}

// ShortID is a digest as people read it: the first 12 hex digits.
func ShortID(digest string) string {
	if _, hex, ok := strings.Cut(digest, ":"); ok {
		digest = hex
	}
	if len(digest) > 12 {
		return digest[:12]
	}
	return digest
}

func plainLine(b *blob) string {
	if b.kind == Skipped {
		return ShortID(b.id) + ": already stored"
	}
	size := b.total
	if size < 0 {
		size = int64(b.offset)
	}
	return fmt.Sprintf("%s: done (%s)", ShortID(b.id), HumanSize(size))
}

// barLine is "<id>  <state or bar>  <amounts>", fitted to width columns.
func barLine(b *blob, width int) string {
	id := fmt.Sprintf("%-12s", ShortID(b.id))
	switch b.kind {
	case Skipped:
		return id + "  already stored"
	case Done:
		size := b.total
		if size < 0 {
			size = int64(b.offset)
		}
		return id + "  done " + HumanSize(size)
	}
	amount := HumanSize(int64(b.offset))
	if b.total >= 0 {
		amount += " / " + HumanSize(b.total)
	}
	// The bar's width depends on the terminal only, so that it does not
	// jitter as the amount's digits change: the id, two gaps of two, the
	// brackets and the widest amount ("999kB / 999MB") take the rest.
	barWidth := min(max(width-len(id)-2-2-2-amountWidth, 5), 50)
	return id + "  " + bar(b.offset, b.total, barWidth) + "  " + amount
}

// amountWidth is the widest "done / total" text HumanSize makes.
const amountWidth = len("999kB / 999kB")

// bar is "[====>     ]" with width cells inside the brackets; with the
// total unknown it has no arrow, only the frame.
func bar(done uint64, total int64, width int) string {
	if total <= 0 {
		return "[" + strings.Repeat(" ", width) + "]"
	}
	filled := int(min(done, uint64(total)) * uint64(width) / uint64(total))
	switch {
	case filled >= width:
		return "[" + strings.Repeat("=", width) + "]"
	default:
		return "[" + strings.Repeat("=", filled) + ">" + strings.Repeat(" ", width-filled-1) + "]"
	}
}

// HumanSize writes a byte count with decimal units and three significant
// digits, as crictl and docker print image sizes ("4.26MB").
func HumanSize(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB", "PB", "EB"}
	v := float64(n)
	i := 0
	for v >= 999.5 && i < len(units)-1 {
		v /= 1000
		i++
	}
	return fmt.Sprintf("%.3g%s", v, units[i])
}
