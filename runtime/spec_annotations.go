package runtime

import "maps"

// OCI annotations crib sets on every container spec, under the keys
// containerd uses, so tools that read them (NRI plugins, runc hooks,
// monitoring) work unchanged.
const (
	AnnotationContainerType    = "io.kubernetes.cri.container-type"
	AnnotationContainerName    = "io.kubernetes.cri.container-name"
	AnnotationImageName        = "io.kubernetes.cri.image-name"
	AnnotationSandboxID        = "io.kubernetes.cri.sandbox-id"
	AnnotationSandboxName      = "io.kubernetes.cri.sandbox-name"
	AnnotationSandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
	AnnotationSandboxUID       = "io.kubernetes.cri.sandbox-uid"
	// ContainerTypeContainer is the value of AnnotationContainerType for
	// an application container (the sandbox package owns "sandbox").
	ContainerTypeContainer = "container"
)

// setAnnotations copies the request's annotations and adds crib's own; a
// request cannot override crib's keys.
func (b *specBuilder) setAnnotations() error {
	a := maps.Clone(b.in.Config.GetAnnotations())
	if a == nil {
		a = map[string]string{}
	}
	meta := b.in.Sandbox.GetMetadata()
	image := b.in.Config.GetImage().GetUserSpecifiedImage()
	if image == "" {
		image = b.in.Config.GetImage().GetImage()
	}
	for k, v := range map[string]string{
		AnnotationContainerType:    ContainerTypeContainer,
		AnnotationContainerName:    b.in.Config.GetMetadata().GetName(),
		AnnotationImageName:        image,
		AnnotationSandboxID:        b.in.SandboxID,
		AnnotationSandboxName:      meta.GetName(),
		AnnotationSandboxNamespace: meta.GetNamespace(),
		AnnotationSandboxUID:       meta.GetUid(),
	} {
		a[k] = v
	}
	b.spec.Annotations = a
	return nil
}
