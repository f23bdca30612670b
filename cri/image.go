package cri

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/crib-dev/crib/internal/errdefs"
	"github.com/crib-dev/crib/storage"
)

// ImageStore is what the image service needs from package storage.
type ImageStore interface {
	Pull(ctx context.Context, ref string, auth *storage.Auth, progress func(storage.Progress)) (storage.Image, error)
	List(ctx context.Context, filterRef string) ([]storage.Image, error)
	Status(ctx context.Context, ref string) (storage.Image, error)
	Remove(ctx context.Context, ref string) error
	FsInfo(ctx context.Context) (storage.FsInfo, error)
}

// PullImage pulls through registries.conf and answers the image id.
func (s *ImageService) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	ref := req.GetImage().GetImage()
	if strings.TrimSpace(ref) == "" {
		return nil, invalid("image reference is empty")
	}
	img, err := s.images.Pull(ctx, ref, authFrom(req.GetAuth()), nil)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PullImageResponse{ImageRef: img.ID}, nil
}

func authFrom(a *runtimeapi.AuthConfig) *storage.Auth {
	if a == nil {
		return nil
	}
	return &storage.Auth{
		Username:      a.Username,
		Password:      a.Password,
		Auth:          a.Auth,
		IdentityToken: a.IdentityToken,
		RegistryToken: a.RegistryToken,
		ServerAddress: a.ServerAddress,
	}
}

// ListImages lists stored images, or only the one the filter names.
func (s *ImageService) ListImages(ctx context.Context, req *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	images, err := s.images.List(ctx, req.GetFilter().GetImage().GetImage())
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ListImagesResponse{}
	for _, img := range images {
		resp.Images = append(resp.Images, toCRIImage(img))
	}
	return resp, nil
}

// ImageStatus describes one image; an unknown image is an empty answer,
// not an error, as the CRI specifies.
func (s *ImageService) ImageStatus(ctx context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	ref := req.GetImage().GetImage()
	if strings.TrimSpace(ref) == "" {
		return nil, invalid("image reference is empty")
	}
	img, err := s.images.Status(ctx, ref)
	if errors.Is(err, errdefs.ErrNotFound) {
		return &runtimeapi.ImageStatusResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ImageStatusResponse{Image: toCRIImage(img)}
	if req.GetVerbose() {
		info, err := json.Marshal(struct {
			ID          string `json:"id"`
			Config      any    `json:"imageSpec"`
			RepoTags    any    `json:"repoTags"`
			RepoDigests any    `json:"repoDigests"`
		}{img.ID, img.Config, img.RepoTags, img.RepoDigests})
		if err == nil {
			resp.Info = map[string]string{"info": string(info)}
		}
	}
	return resp, nil
}

func toCRIImage(img storage.Image) *runtimeapi.Image {
	out := &runtimeapi.Image{
		Id:          img.ID,
		RepoTags:    img.RepoTags,
		RepoDigests: img.RepoDigests,
		Size:        img.Size,
		Pinned:      img.Pinned,
		Spec:        &runtimeapi.ImageSpec{Image: img.ID},
	}
	uid, name := img.UserID()
	if uid != nil {
		out.Uid = &runtimeapi.Int64Value{Value: *uid}
	}
	out.Username = name
	return out
}

// RemoveImage removes an image by id, tag or digest; removing an image
// that is not there succeeds.
func (s *ImageService) RemoveImage(ctx context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	ref := req.GetImage().GetImage()
	if strings.TrimSpace(ref) == "" {
		return nil, invalid("image reference is empty")
	}
	if err := s.images.Remove(ctx, ref); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return nil, err
	}
	return &runtimeapi.RemoveImageResponse{}, nil
}

// ImageFsInfo reports the image and container file systems.
func (s *ImageService) ImageFsInfo(ctx context.Context, _ *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	info, err := s.images.FsInfo(ctx)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ImageFsInfoResponse{
		ImageFilesystems:     []*runtimeapi.FilesystemUsage{fsUsage(info.Images)},
		ContainerFilesystems: []*runtimeapi.FilesystemUsage{fsUsage(info.Containers)},
	}, nil
}

func fsUsage(u storage.FsUsage) *runtimeapi.FilesystemUsage {
	return &runtimeapi.FilesystemUsage{
		Timestamp:  u.Timestamp.UnixNano(),
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: u.Mountpoint},
		UsedBytes:  &runtimeapi.UInt64Value{Value: u.Bytes},
		InodesUsed: &runtimeapi.UInt64Value{Value: u.Inodes},
	}
}
