package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"slices"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/sys/user"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
)

// setUser resolves the uid, gid and supplementary groups of the first
// process against the image's /etc/passwd and /etc/group.
func (b *specBuilder) setUser() error {
	acct, err := loadAccounts(b.in.RootfsPath)
	if err != nil {
		return err
	}
	u, err := resolveUser(b.sc, imageConfig(b.in).User, acct)
	if err != nil {
		return err
	}
	b.spec.Process.User = u
	return nil
}

// accounts are the user and group databases of a container image; either
// may be empty (a scratch image has neither).
type accounts struct {
	users  []user.User
	groups []user.Group
}

// loadAccounts reads etc/passwd and etc/group inside rootfs, following
// symlinks as the container would see them, never out of the rootfs.
func loadAccounts(rootfs string) (accounts, error) {
	var acct accounts
	var err error
	if acct.users, err = parseInRootfs(rootfs, "/etc/passwd", user.ParsePasswdFile); err != nil {
		return accounts{}, err
	}
	if acct.groups, err = parseInRootfs(rootfs, "/etc/group", user.ParseGroupFile); err != nil {
		return accounts{}, err
	}
	return acct, nil
}

func parseInRootfs[T any](rootfs, name string, parse func(string) ([]T, error)) ([]T, error) {
	p, err := securejoin.SecureJoin(rootfs, name)
	if err != nil {
		return nil, fmt.Errorf("resolve %s in the image: %w", name, err)
	}
	items, err := parse(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the image's %s: %w", name, err)
	}
	return items, nil
}

func (a accounts) userByID(uid uint32) (user.User, bool) {
	i := slices.IndexFunc(a.users, func(u user.User) bool { return u.Uid == int(uid) })
	if i < 0 {
		return user.User{}, false
	}
	return a.users[i], true
}

func (a accounts) userByName(name string) (user.User, bool) {
	i := slices.IndexFunc(a.users, func(u user.User) bool { return u.Name == name })
	if i < 0 {
		return user.User{}, false
	}
	return a.users[i], true
}

func (a accounts) groupByName(name string) (user.Group, bool) {
	i := slices.IndexFunc(a.groups, func(g user.Group) bool { return g.Name == name })
	if i < 0 {
		return user.Group{}, false
	}
	return a.groups[i], true
}

// memberOf lists the gids of the groups whose member list names the user.
func (a accounts) memberOf(name string) []uint32 {
	var gids []uint32
	for _, g := range a.groups {
		if slices.Contains(g.List, name) {
			gids = append(gids, uint32(g.Gid))
		}
	}
	return gids
}

// identity is a resolved user before the supplementary groups are added.
type identity struct {
	uid, gid uint32
	name     string // "" when the uid has no passwd entry
}

// resolveUser applies the CRI rules: run_as_user or run_as_username win over
// the image's USER; run_as_group needs one of them; the supplementary groups
// are the primary gid, the requested ones and, under the Merge policy, the
// groups /etc/group lists the user in.
func resolveUser(sc *runtimeapi.LinuxContainerSecurityContext, imageUser string, acct accounts) (specs.User, error) {
	id, err := primaryIdentity(sc, imageUser, acct)
	if err != nil {
		return specs.User{}, err
	}
	gids := []uint32{id.gid}
	for _, g := range sc.GetSupplementalGroups() {
		gid, err := checkID("supplemental group", g)
		if err != nil {
			return specs.User{}, err
		}
		gids = append(gids, gid)
	}
	if sc.GetSupplementalGroupsPolicy() == runtimeapi.SupplementalGroupsPolicy_Merge && id.name != "" {
		gids = append(gids, acct.memberOf(id.name)...)
	}
	slices.Sort(gids)
	return specs.User{UID: id.uid, GID: id.gid, AdditionalGids: slices.Compact(gids)}, nil
}

func primaryIdentity(sc *runtimeapi.LinuxContainerSecurityContext, imageUser string, acct accounts) (identity, error) {
	runAsUser, runAsName, runAsGroup := sc.GetRunAsUser(), sc.GetRunAsUsername(), sc.GetRunAsGroup()
	var id identity
	var err error
	switch {
	case runAsUser != nil && runAsName != "":
		return identity{}, fmt.Errorf("%w: run_as_user and run_as_username are both set", errdefs.ErrInvalidArgument)
	case runAsGroup != nil && runAsUser == nil && runAsName == "":
		return identity{}, fmt.Errorf("%w: run_as_group is set without run_as_user or run_as_username", errdefs.ErrInvalidArgument)
	case runAsUser != nil:
		uid, err := checkID("run_as_user", runAsUser.GetValue())
		if err != nil {
			return identity{}, err
		}
		id = identityOfUID(uid, acct)
	case runAsName != "":
		id, err = identityOfName(runAsName, acct)
	default:
		id, err = imageIdentity(imageUser, acct)
	}
	if err != nil {
		return identity{}, err
	}
	if runAsGroup != nil {
		if id.gid, err = checkID("run_as_group", runAsGroup.GetValue()); err != nil {
			return identity{}, err
		}
	}
	return id, nil
}

// identityOfUID takes the primary group from /etc/passwd, or 0 when the uid
// has no entry (a uid need not exist in the image).
func identityOfUID(uid uint32, acct accounts) identity {
	if u, ok := acct.userByID(uid); ok {
		return identity{uid: uid, gid: uint32(u.Gid), name: u.Name}
	}
	return identity{uid: uid}
}

func identityOfName(name string, acct accounts) (identity, error) {
	u, ok := acct.userByName(name)
	if !ok {
		return identity{}, fmt.Errorf("%w: user %q not found in the image's /etc/passwd", errdefs.ErrInvalidArgument, name)
	}
	if u.Uid < 0 || u.Gid < 0 {
		return identity{}, fmt.Errorf("%w: user %q has a negative id in the image's /etc/passwd", errdefs.ErrInvalidArgument, name)
	}
	return identity{uid: uint32(u.Uid), gid: uint32(u.Gid), name: u.Name}, nil
}

// imageIdentity resolves an image USER: "", uid, name, uid:gid, name:group
// or any mix; an empty USER is root.
func imageIdentity(spec string, acct accounts) (identity, error) {
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	var id identity
	var err error
	if userPart == "" {
		userPart = "0"
	}
	if uid, numeric := parseID(userPart); numeric {
		id = identityOfUID(uid, acct)
	} else if id, err = identityOfName(userPart, acct); err != nil {
		return identity{}, fmt.Errorf("image USER %q: %w", spec, err)
	}
	if !hasGroup {
		return id, nil
	}
	if gid, numeric := parseID(groupPart); numeric {
		id.gid = gid
		return id, nil
	}
	g, ok := acct.groupByName(groupPart)
	if !ok {
		return identity{}, fmt.Errorf("%w: image USER %q: group %q not found in the image's /etc/group", errdefs.ErrInvalidArgument, spec, groupPart)
	}
	id.gid = uint32(g.Gid)
	return id, nil
}

// parseID reads a decimal uid or gid; anything else is a name.
func parseID(s string) (uint32, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == math.MaxUint32 {
		return 0, false
	}
	return uint32(n), true
}

// checkID bounds a CRI int64 id to what the kernel accepts; 2³²-1 is the
// kernel's "no id" value.
func checkID(what string, v int64) (uint32, error) {
	if v < 0 || v >= math.MaxUint32 {
		return 0, fmt.Errorf("%w: %s %d is out of range", errdefs.ErrInvalidArgument, what, v)
	}
	return uint32(v), nil
}
