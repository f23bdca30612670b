package storage

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/crib-dev/crib/internal/steptrace"
	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/vbatts/tar-split/archive/tar"
	"github.com/vbatts/tar-split/tar/asm"
	tarsplit "github.com/vbatts/tar-split/tar/storage"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
	cstorage "go.podman.io/storage"
	graphdriver "go.podman.io/storage/drivers"
	"go.podman.io/storage/pkg/archive"
	"go.podman.io/storage/pkg/chrootarchive"
	"go.podman.io/storage/pkg/chunked/toc"
	"go.podman.io/storage/pkg/tarlog"
	"golang.org/x/sync/errgroup"
)

// Layers are fetched and unpacked ahead of the image library's copy, all
// at once, each streamed from the registry through one decompression
// straight into a staging directory of the storage driver: the library's
// own path spools every blob to a file, decompresses it twice and unpacks
// the layers one after the other. The copy that follows finds every layer
// already stored and only records the image. Staging is an accelerator:
// when it cannot be used (a driver without staging, an unusual image) or
// fails, the copy does the whole work and reports the errors.

// stageParallel bounds the layers fetched and unpacked at once.
const stageParallel = 6

// stagedLayer is one layer of the image being staged.
type stagedLayer struct {
	info   types.BlobInfo
	diffID digest.Digest
	id     string // the storage layer id the image library gives it
	out    *graphdriver.DriverWithDifferOutput
}

// stageLayers stores the layers of the image src serves that the store
// lacks, and says what it did. The image must
// pass the signature policy first: nothing of a refused image is stored.
func (s *Store) stageLayers(ctx context.Context, sys *types.SystemContext, policy *signature.PolicyContext, src *keptOpen, progress func(Progress)) (stagedImage, error) {
	if s.guest {
		// Storing a staged layer checks first that no layer has its id,
		// which only this process's lock makes safe: a guest leaves
		// layers to the image library, which creates them atomically.
		return stagedImage{}, errors.New("a guest does not stage layers")
	}
	if !s.canStage() {
		return stagedImage{}, errors.New("the storage driver cannot stage layers")
	}
	layers, err := s.planLayers(ctx, sys, policy, src)
	if err != nil {
		return stagedImage{}, err
	}
	// Each layer is stored as soon as it and the layers below it are
	// staged, while the later ones still download.
	ready := make([]chan struct{}, len(layers))
	for i := range ready {
		ready[i] = make(chan struct{})
	}
	g, gctx := errgroup.WithContext(ctx)
	applied := make(chan error, 1)
	go func() { applied <- s.applyStaged(gctx, layers, ready) }()
	g.SetLimit(stageParallel)
	for i := range layers {
		if s.hasLayer(layers[i].id) {
			close(ready[i])
			continue
		}
		g.Go(func() error {
			out, err := s.stageLayer(gctx, src, &layers[i], progress)
			if err != nil {
				return err
			}
			layers[i].out = out
			close(ready[i])
			return nil
		})
	}
	err = errors.Join(g.Wait(), <-applied)
	steptrace.Mark(ctx, "layers")
	fetched := map[digest.Digest]bool{}
	for _, l := range layers {
		if l.out != nil {
			fetched[l.info.Digest] = true
			if l.out.Target != "" {
				err = errors.Join(err, s.store.CleanupStagedLayer(l.out))
			}
		}
	}
	done := stagedImage{fetched: fetched}
	if err == nil && len(layers) > 0 {
		done.top = layers[len(layers)-1].id
	}
	return done, err
}

// stagedImage is what the staging did: the blobs it fetched and, when it
// stored every layer, the id of the top one.
type stagedImage struct {
	fetched map[digest.Digest]bool
	top     string
}

// planLayers reads the manifest (the platform's, from a list) and the
// config of src, checks the signature policy, and lists the layers with
// the ids the image library will look for.
func (s *Store) planLayers(ctx context.Context, sys *types.SystemContext, policy *signature.PolicyContext, src *keptOpen) ([]stagedLayer, error) {
	raw, mime, err := src.GetManifest(ctx, nil)
	if err != nil {
		return nil, err
	}
	steptrace.Mark(ctx, "manifest")
	var instance *digest.Digest
	if manifest.MIMETypeIsMultiImage(mime) {
		list, err := manifest.ListFromBlob(raw, mime)
		if err != nil {
			return nil, err
		}
		d, err := list.ChooseInstance(sys)
		if err != nil {
			return nil, err
		}
		instance = &d
	}
	unparsed := image.UnparsedInstance(src, instance)
	if allowed, err := policy.IsRunningImageAllowed(ctx, unparsed); !allowed || err != nil {
		return nil, fmt.Errorf("not staging a refused image: %w", err)
	}
	img, err := image.FromUnparsedImage(ctx, sys, unparsed)
	if err != nil {
		return nil, err
	}
	// Docker schema 1 images have empty layers and no DiffIDs in a config.
	if _, mt, err := img.Manifest(ctx); err != nil || (mt != manifest.DockerV2Schema2MediaType && mt != imgspecv1.MediaTypeImageManifest) {
		return nil, fmt.Errorf("not staging a %q manifest: %v", mt, err)
	}
	cfgBlob, err := img.ConfigBlob(ctx)
	if err != nil {
		return nil, err
	}
	src.keepConfig(img.ConfigInfo().Digest, cfgBlob) // the copy reads it again
	cfg, err := img.OCIConfig(ctx)
	if err != nil {
		return nil, err
	}
	steptrace.Mark(ctx, "config")
	infos := img.LayerInfos()
	if len(cfg.RootFS.DiffIDs) != len(infos) {
		return nil, fmt.Errorf("not staging: %d layers but %d diff ids", len(infos), len(cfg.RootFS.DiffIDs))
	}
	layers := make([]stagedLayer, len(infos))
	parent := ""
	for i, info := range infos {
		diffID := cfg.RootFS.DiffIDs[i]
		// A layer with a TOC (zstd:chunked, estargz) may be pulled
		// partially by the library under an id of its own.
		tocDigest, err := toc.GetTOCDigest(info.Annotations)
		if err != nil || tocDigest != nil || info.CryptoOperation != types.PreserveOriginalCrypto ||
			diffID.Validate() != nil || diffID.Algorithm() != digest.Canonical || info.Digest.Validate() != nil {
			return nil, fmt.Errorf("not staging layer %d (%s)", i, info.Digest)
		}
		layers[i] = stagedLayer{info: info, diffID: diffID, id: chainID(parent, diffID)}
		parent = layers[i].id
	}
	return layers, nil
}

// chainID is the id the image library gives a layer identified by its
// DiffID on top of parent: the DiffID's hex for a base layer, else the
// hex of sha256(parent + "+" + that hex).
func chainID(parent string, diffID digest.Digest) string {
	if parent == "" {
		return diffID.Encoded()
	}
	return digest.Canonical.FromString(parent + "+" + diffID.Encoded()).Encoded()
}

// canStage reports whether the driver unpacks into staging directories
// (overlay, native or through fuse-overlayfs; not vfs).
func (s *Store) canStage() bool {
	d, err := s.store.GraphDriver()
	if err != nil {
		return false
	}
	_, ok := d.(graphdriver.DriverWithDiffer)
	return ok
}

func (s *Store) hasLayer(id string) bool {
	_, err := s.store.Layer(id)
	return err == nil
}

// stageLayer fetches one layer and unpacks it into a staging directory.
func (s *Store) stageLayer(ctx context.Context, src types.ImageSource, l *stagedLayer, progress func(Progress)) (*graphdriver.DriverWithDifferOutput, error) {
	blob, _, err := src.GetBlob(ctx, l.info, none.NoCache)
	if err != nil {
		return nil, err
	}
	defer blob.Close()
	tarSplit, err := os.CreateTemp(s.tmpDir, "tar-split-")
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	os.Remove(tarSplit.Name()) // anonymous: the store reads it through the descriptor
	pr := &progressReader{r: blob, info: l.info, progress: progress}
	pr.report(ProgressStarted)
	d := &layerDiffer{blob: pr, want: l.info, wantDiffID: l.diffID, tarSplit: tarSplit, log: s.log}
	out, err := s.store.PrepareStagedLayer(nil, d)
	if err != nil {
		tarSplit.Close()
		if out != nil && out.Target != "" {
			s.store.CleanupStagedLayer(out)
		}
		return nil, err
	}
	pr.report(ProgressDone)
	return out, nil
}

// applyStaged turns the staged layers into store layers, base first,
// each as soon as it is ready. A layer stored meanwhile (by another pull)
// is kept and the staged copy dropped: the store would apply a staged
// layer over an existing one, replacing a directory that may be in use.
// So the check and the store are one step under stageMu, which the
// image library's copies, the other way layers are made, hold too.
func (s *Store) applyStaged(ctx context.Context, layers []stagedLayer, ready []chan struct{}) error {
	for i := range layers {
		select {
		case <-ready[i]:
		case <-ctx.Done():
			select {
			case <-ready[i]: // the staging finished: its context ends then too
			default:
				return ctx.Err()
			}
		}
		if err := s.applyLayer(layers, i); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) applyLayer(layers []stagedLayer, i int) error {
	s.stageMu.Lock()
	defer s.stageMu.Unlock()
	l := &layers[i]
	if l.out == nil || s.hasLayer(l.id) {
		return nil
	}
	parent := ""
	if i > 0 {
		parent = layers[i-1].id
	}
	out := l.out
	if _, err := s.store.ApplyStagedLayer(cstorage.ApplyStagedLayerOptions{ID: l.id, ParentLayer: parent, DiffOutput: out}); err != nil {
		return fmt.Errorf("storage: storing layer %s: %w", l.info.Digest, err)
	}
	// The layer took the unpacked directory; the driver leaves the (now
	// empty) directory that held it.
	if err := os.Remove(filepath.Dir(out.Target)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("removing a staging directory", "err", err)
	}
	out.Target = ""
	return nil
}

// layerDiffer unpacks one compressed layer stream for the storage driver,
// checking it against its manifest digest and its config DiffID, and
// records what the store keeps of a layer: its tar-split (to give the
// same tar back), the ids of its files' owners and its sizes.
type layerDiffer struct {
	blob       io.Reader
	want       types.BlobInfo
	wantDiffID digest.Digest
	tarSplit   *os.File
	log        *slog.Logger
}

func (d *layerDiffer) Close() error { return nil }

func (d *layerDiffer) ApplyDiff(dest string, opts *archive.TarOptions, _ *graphdriver.DifferOptions) (out graphdriver.DriverWithDifferOutput, retErr error) {
	defer func() {
		if retErr != nil {
			d.tarSplit.Close()
		}
	}()
	compressed := digest.Canonical.Digester()
	compressedCount := &countWriter{w: compressed.Hash()}
	in := io.TeeReader(d.blob, compressedCount)
	uncompressed, err := archive.DecompressStream(in)
	if err != nil {
		return out, err
	}
	defer uncompressed.Close()
	owners := newOwnerLog()
	diffID := digest.Canonical.Digester()
	uncompressedCount := &countWriter{w: diffID.Hash()}
	tarStream := io.TeeReader(uncompressed, uncompressedCount)
	split := tarsplit.NewJSONPacker(d.tarSplit)
	u, err := newUnpacker(dest, opts)
	switch {
	case err == nil:
		// One reading of the tar unpacks it and records its tar-split
		// and its files' owners.
		u.seen = owners.record
		err = u.run(tarStream, split)
		u.close()
	case errors.Is(err, errNotInProcess):
		d.log.Debug("unpacking a layer in the storage library's chroot child", "layer", d.want.Digest, "reason", err)
		err = untarInChild(tarStream, split, dest, opts, owners)
	}
	if err == nil {
		_, err = io.Copy(io.Discard, in) // anything after the compressed stream is in the blob's digest too
	}
	if err != nil {
		return out, err
	}
	if got := compressed.Digest(); got != d.want.Digest || (d.want.Size >= 0 && compressedCount.n != d.want.Size) {
		return out, fmt.Errorf("layer %s: got %s (%d bytes) from the registry", d.want.Digest, got, compressedCount.n)
	}
	if got := diffID.Digest(); got != d.wantDiffID {
		return out, fmt.Errorf("layer %s: uncompressed digest %s, the config says %s", d.want.Digest, got, d.wantDiffID)
	}
	return graphdriver.DriverWithDifferOutput{
		UncompressedDigest: d.wantDiffID,
		CompressedDigest:   d.want.Digest,
		Size:               uncompressedCount.n,
		UIDs:               owners.sorted(owners.uids),
		GIDs:               owners.sorted(owners.gids),
		RootDirMode:        owners.rootMode,
		TarSplit:           d.tarSplit,
	}, nil
}

// untarInChild has the library's chroot untar unpack the tar, tar-split's
// disassembler record the tar-split and the library's tar log the owners:
// two more readings of the tar, each through a pipe.
func untarInChild(tarStream io.Reader, split tarsplit.Packer, dest string, opts *archive.TarOptions, owners *ownerLog) error {
	idLogger, err := tarlog.NewLogger(owners.record)
	if err != nil {
		return err
	}
	// Handing the tar log a quarter megabyte at a time rather than each
	// read's few kilobytes spares goroutine switches.
	idBuf := bufio.NewWriterSize(idLogger, 256<<10)
	payload, done, err := asm.NewInputTarStreamWithDone(io.TeeReader(tarStream, idBuf), split, tarsplit.NewDiscardFilePutter())
	if err != nil {
		return errors.Join(err, idBuf.Flush(), idLogger.Close())
	}
	err = chrootarchive.UntarUncompressed(payload, dest, opts)
	if err == nil {
		// The tar's trailing padding belongs to the digests and the tar-split.
		_, err = io.Copy(io.Discard, payload)
	}
	payload.Close()
	return errors.Join(err, <-done, idBuf.Flush(), idLogger.Close())
}

// ownerLog collects the owners of a layer's entries (whiteouts aside, as
// the store does) and the mode its root directory entry sets.
type ownerLog struct {
	uids, gids map[uint32]struct{}
	rootMode   *os.FileMode
}

func newOwnerLog() *ownerLog {
	return &ownerLog{uids: map[uint32]struct{}{}, gids: map[uint32]struct{}{}}
}

func (o *ownerLog) record(h *tar.Header) {
	if p := path.Clean("/" + h.Name); p == "/" && h.Typeflag == tar.TypeDir {
		m := h.FileInfo().Mode()
		o.rootMode = &m
	}
	if !strings.HasPrefix(path.Base(h.Name), archive.WhiteoutPrefix) {
		o.uids[uint32(h.Uid)] = struct{}{}
		o.gids[uint32(h.Gid)] = struct{}{}
	}
}

func (o *ownerLog) sorted(set map[uint32]struct{}) []uint32 {
	return slices.Sorted(maps.Keys(set))
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// progressReader reports a staged blob's progress the way the image
// library reports the blobs it copies.
type progressReader struct {
	r        io.Reader
	info     types.BlobInfo
	progress func(Progress)
	mu       sync.Mutex
	n        uint64
	last     time.Time
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.mu.Lock()
	p.n += uint64(n)
	due := time.Since(p.last) >= progressInterval
	p.mu.Unlock()
	if n > 0 && due {
		p.report(ProgressRead)
	}
	return n, err
}

func (p *progressReader) report(ev ProgressEvent) {
	if p.progress == nil {
		return
	}
	p.mu.Lock()
	p.last = time.Now()
	off := p.n
	p.mu.Unlock()
	p.progress(Progress{Digest: p.info.Digest.String(), Event: ev, Offset: off, Total: p.info.Size})
}

// openedSource serves the image library's copy from a source the staging
// already opened (one registry session: no second ping, manifest or
// config fetch). Closing it is the pull's job.
type openedSource struct {
	types.ImageReference
	src *keptOpen
}

func (r openedSource) NewImageSource(context.Context, *types.SystemContext) (types.ImageSource, error) {
	return r.src, nil
}

// keptOpen is the opened source, which also keeps the config blob the
// staging read.
type keptOpen struct {
	types.ImageSource
	mu     sync.Mutex
	config digest.Digest
	blob   []byte
}

func (k *keptOpen) Close() error { return nil }

func (k *keptOpen) keepConfig(d digest.Digest, blob []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.config, k.blob = d, blob
}

func (k *keptOpen) GetBlob(ctx context.Context, info types.BlobInfo, cache types.BlobInfoCache) (io.ReadCloser, int64, error) {
	k.mu.Lock()
	blob := k.blob
	hit := blob != nil && info.Digest == k.config
	k.mu.Unlock()
	if hit {
		return io.NopCloser(bytes.NewReader(blob)), int64(len(blob)), nil
	}
	return k.ImageSource.GetBlob(ctx, info, cache)
}
