package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// registryClient speaks the distribution (OCI) HTTP API to the local,
// unauthenticated test registry.
type registryClient struct {
	base   *url.URL
	client *http.Client
	// holder remembers a repository that has each blob, so later repositories
	// mount it instead of uploading it again.
	holder map[string]string
}

func newRegistryClient(addr string) (*registryClient, error) {
	base, err := url.Parse("http://" + addr)
	if err != nil {
		return nil, fmt.Errorf("registry address %q: %w", addr, err)
	}
	return &registryClient{base: base, client: &http.Client{Timeout: 2 * time.Minute}, holder: map[string]string{}}, nil
}

// manifestDigest returns the digest the registry holds for repo:tag, or ""
// when it has none.
func (r *registryClient) manifestDigest(repo, tag string) (string, error) {
	req, err := http.NewRequest(http.MethodHead, r.url("/v2/%s/manifests/%s", repo, tag), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", mediaManifest)
	resp, err := r.do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return resp.Header.Get("Docker-Content-Digest"), nil
	case http.StatusNotFound:
		return "", nil
	}
	return "", fmt.Errorf("HEAD manifest %s:%s: %s", repo, tag, resp.Status)
}

// push uploads the image's blobs to repo, then its manifest under tag.
func (r *registryClient) push(img *builtImage, ref imageRef) error {
	for _, l := range img.layers {
		if err := r.ensureBlob(ref.Repo, l.digest, l.blob); err != nil {
			return err
		}
	}
	if err := r.ensureBlob(ref.Repo, digestOf(img.config), img.config); err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPut, r.url("/v2/%s/manifests/%s", ref.Repo, ref.Tag), bytes.NewReader(img.manifest))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", mediaManifest)
	resp, err := r.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("PUT manifest %s:%s: %s: %s", ref.Repo, ref.Tag, resp.Status, readSome(resp.Body))
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != img.digest {
		return fmt.Errorf("PUT manifest %s:%s: registry computed digest %s, imagegen %s", ref.Repo, ref.Tag, got, img.digest)
	}
	return nil
}

// ensureBlob makes repo hold the blob: already there, mounted from another
// repository of the same registry, or uploaded in one request.
func (r *registryClient) ensureBlob(repo, digest string, data []byte) error {
	if ok, err := r.hasBlob(repo, digest); err != nil || ok {
		return err
	}
	uploadURL := r.url("/v2/%s/blobs/uploads/", repo)
	if from, ok := r.holder[digest]; ok && from != repo {
		uploadURL += "?" + url.Values{"mount": {digest}, "from": {from}}.Encode()
	}
	resp, err := r.do(mustRequest(http.MethodPost, uploadURL, nil))
	if err != nil {
		return err
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusCreated: // mounted
		r.holder[digest] = repo
		return nil
	case http.StatusAccepted:
	default:
		return fmt.Errorf("start upload of %s to %s: %s", digest, repo, resp.Status)
	}
	loc, err := r.base.Parse(resp.Header.Get("Location"))
	if err != nil {
		return fmt.Errorf("upload location for %s: %w", digest, err)
	}
	q := loc.Query()
	q.Set("digest", digest)
	loc.RawQuery = q.Encode()
	req := mustRequest(http.MethodPut, loc.String(), bytes.NewReader(data))
	req.Header.Set("Content-Type", "application/octet-stream")
	req.ContentLength = int64(len(data))
	resp, err = r.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("upload %s to %s: %s: %s", digest, repo, resp.Status, readSome(resp.Body))
	}
	r.holder[digest] = repo
	return nil
}

func (r *registryClient) hasBlob(repo, digest string) (bool, error) {
	resp, err := r.do(mustRequest(http.MethodHead, r.url("/v2/%s/blobs/%s", repo, digest), nil))
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		r.holder[digest] = repo
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, fmt.Errorf("HEAD blob %s in %s: %s", digest, repo, resp.Status)
}

func (r *registryClient) url(format string, args ...any) string {
	return r.base.String() + fmt.Sprintf(format, args...)
}

func (r *registryClient) do(req *http.Request) (*http.Response, error) {
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("registry %s: %w", r.base.Host, err)
	}
	return resp, nil
}

// mustRequest builds a request from a URL this client made itself.
func mustRequest(method, u string, body io.Reader) *http.Request {
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		panic(fmt.Sprintf("imagegen built a bad URL %q: %v", u, err))
	}
	return req
}

func readSome(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 512))
	return strings.TrimSpace(string(b))
}
