// Package storage owns crib's images and container filesystems, on
// go.podman.io/storage (layers, images, container layers) and
// go.podman.io/image/v5 (registries, archives, signature policy).
//
// It pulls, lists, inspects, removes and imports images, creates, mounts
// and deletes container root filesystems, and reports disk usage. It must
// not know about pods: callers give it image references and container ids,
// never sandboxes, and it imports no CRI types. Errors that a client can
// act on wrap a sentinel of internal/errdefs (ErrNotFound, ErrInvalidArgument,
// ErrUnavailable, ErrPermissionDenied, ErrFailedPrecondition,
// ErrAlreadyExists) so the cri package can map them to gRPC codes.
//
// # Where things live
//
// The store's graph root is Options.Root/storage and its run root is
// Options.RunRoot/storage, whatever storage.conf says: crib's config owns
// those paths. Everything else of storage.conf is honoured (driver options,
// pull options, id maps): the file named by Options.StorageConf, or the
// usual places (containers-storage.conf(5): the user's
// $XDG_CONFIG_HOME/containers/storage.conf, /etc/containers/storage.conf,
// /usr/share/containers/storage.conf).
//
// # Storage driver
//
// Open picks the driver once and reports it with the reason (DriverChoice):
// a driver forced by Options.Driver wins; otherwise storage.conf's driver
// wins when it names vfs or another non-overlay driver, or overlay with a
// mount_program; otherwise crib tries native kernel overlay (which works in
// a user namespace on kernel >= 5.13), then fuse-overlayfs (its binary and
// a usable /dev/fuse), then vfs. A store that was once written with
// fuse-overlayfs stays on it (the storage library records that, because
// its layers are not readable by kernel overlay).
//
// # Registries and signatures
//
// Pulls read registries.conf (v2) from the usual places
// (containers-registries.conf(5): ~/.config/containers/registries.conf,
// /etc/containers/registries.conf and their registries.conf.d drop-ins),
// so prefix rewrites, mirrors, insecure (plain HTTP) and blocked
// registries work as they do for Podman. Options.RegistriesConf names one
// more file that is read after all of those, as the last drop-in: for
// every [[registry]] prefix it defines, its entry replaces the usual
// one, and any top-level key it sets replaces the usual value. Open and
// Store.Reload copy the files and read the copies; edits take effect at
// the next Reload (crib's SIGHUP), and one that does not parse leaves the
// files in force as they were. Store.ImageConfigInForce names them.
//
// The signature policy is Options.PolicyPath, else the user's
// ~/.config/containers/policy.json, else /etc/containers/policy.json. When
// none exists crib uses its documented default, which accepts any image
// without checking signatures ({"default":[{"type":"insecureAcceptAnything"}]}),
// the same policy Debian and Fedora ship.
//
// References are normalized as the kubelet does: "busybox" is
// "docker.io/library/busybox:latest"; tags and digests are kept, and when
// a reference has both, the digest wins. Short names are never searched
// across registries.
//
// # How a pull unpacks
//
// On overlay (native or fuse-overlayfs) the layers of an image are
// fetched and unpacked all at once, each streamed from the registry
// through one decompression into a staging directory of the driver and
// checked against its digest and the config's DiffID, then stored in
// order as soon as the layers below it are; the image library's copy then
// finds them and records the image (stage.go). On vfs, for guests and for
// images staging does not handle, the library's copy does all of it.
//
// # Failure and crash safety
//
// The storage library commits a pulled image's layers before the image
// record. When a pull or import fails or is cancelled, crib deletes the
// layers that no image and no container uses, once no other pull, import
// or container creation is running; Open does the same after a crash. So a
// failed pull leaves neither an image nor its layers behind.
//
// The program must call ReexecInit first thing in main: the storage
// library re-executes the binary to unpack layers inside a chroot. A
// pull's staged layers are unpacked in process instead (unpack.go), each
// path resolved by openat2 inside the layer directory; the library's
// chroot untar remains for the layers that cannot go that way.
package storage
