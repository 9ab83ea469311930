package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/remotecommand"
)

// The Kubernetes backend. Each user's workspace is three objects in one
// namespace, all named after the container name and labelled as the
// spawner's:
//
//   - a Pod <name> that runs the workspace: the "container". Deleting it is
//     the stop (idle stop, restart); nothing else is lost.
//   - a Service <name> selecting that Pod, so that the director's
//     <prefix>-<user>.<namespace>.svc.cluster.local resolves; it is the
//     record that the workspace exists while its Pod is stopped.
//   - a PersistentVolumeClaim <name>-home (SPAWNER_VOLUME) with the home,
//     which outlives every Pod; only an administrator deletes it.
//
// Why a bare Pod and not a one-replica StatefulSet: the spawner is the
// workspace's controller. It decides when it starts (a page load), when it
// stops (the idle stop) and what a crash shows (the error page with exit
// code and logs, and a restart button). A StatefulSet's controller would
// restart a crashed workspace on its own, hiding the crash behind a
// CrashLoopBackOff, and scaling it to zero and back would put a second
// controller between the spawner and the Pod for no gain: the claim, the
// only thing that must persist, is the spawner's own object either way.
// A Pod with restartPolicy Never keeps the exit code and the reason after a
// crash, exactly what the Docker backend shows. If a node dies with the Pod,
// the next page load finds it failed or gone and starts it again, with the
// same claim.

// LabelContainer holds the container name on the Pod and is the Service's
// selector: two spawners with different prefixes may serve the same user in
// one namespace, so the user label alone would not do.
const LabelContainer = "container-director.container"

// kubeContainerName is the name of the workspace's container in its Pod.
const kubeContainerName = "workspace"

// KubernetesConfig configures the Kubernetes backend.
type KubernetesConfig struct {
	// REST is the API server's client configuration. Default: the
	// in-cluster configuration (the Pod's ServiceAccount), or Kubeconfig
	// when set.
	REST *rest.Config
	// Kubeconfig is the path of a kubeconfig file, for a spawner outside
	// the cluster. Default: empty, in-cluster.
	Kubeconfig string
	// Namespace holds every workspace's objects. Default: "workspaces".
	Namespace string
	// Image is the image of every workspace. Default:
	// "codercom/code-server:4.100.3".
	Image string
	// Prefix is the container name prefix (SPAWNER_CONTAINER_PREFIX): the
	// objects are labelled with it (LabelPrefix) and the backend lists,
	// counts and acts on its own alone. Default: "vscode".
	Prefix string
	// Port is the port every workspace answers on. Default: 8080.
	Port int
	// Volume is the name template of each user's claim, with {name}
	// replaced by the container name. Default: empty, no claim (the home is
	// lost with the Pod).
	Volume string
	// VolumePath is where the claim is mounted. Default: "/home/coder".
	VolumePath string
	// StorageSize is the size each claim requests. Default: "10Gi".
	StorageSize string
	// StorageClass is the claims' storage class. Default: empty, the
	// cluster's default class.
	StorageClass string
	// Memory limits each workspace's memory, in bytes. Default: 0, none.
	Memory int64
	// NanoCPUs limits each workspace's CPU, in billionths of a CPU.
	// Default: 0, none.
	NanoCPUs int64
	// Env is extra "KEY=value" environment of each workspace, after
	// USER_NAME. Default: none.
	Env []string
	// Command replaces the image's CMD (the Pod's args). Default: the
	// image's.
	Command []string
	// StopTimeout is the Pods' termination grace period. Default: 10s.
	StopTimeout time.Duration
}

// kubeBackend drives the Kubernetes API through client-go.
type kubeBackend struct {
	cfg     KubernetesConfig
	rest    *rest.Config
	client  kubernetes.Interface
	storage resource.Quantity
	limits  corev1.ResourceList
}

var (
	_ Backend       = (*kubeBackend)(nil)
	_ ActivityMeter = (*kubeBackend)(nil)
)

// NewKubernetesBackend validates cfg and returns a Backend for the API
// server. It does not contact the server; CheckAccess does.
func NewKubernetesBackend(cfg KubernetesConfig) (*kubeBackend, error) {
	if cfg.Namespace == "" {
		cfg.Namespace = "workspaces"
	}
	if cfg.Image == "" {
		cfg.Image = defaultImage
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "vscode"
	}
	if cfg.Port == 0 {
		cfg.Port = 8080
	}
	if cfg.VolumePath == "" {
		cfg.VolumePath = "/home/coder"
	}
	if cfg.StorageSize == "" {
		cfg.StorageSize = "10Gi"
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 10 * time.Second
	}
	if !validLabelStart(cfg.Namespace) || len(cfg.Namespace) > 63 || strings.HasSuffix(cfg.Namespace, "-") {
		return nil, fmt.Errorf("SPAWNER_KUBERNETES_NAMESPACE: %q is not a valid namespace name", cfg.Namespace)
	}
	if cfg.Volume != "" {
		if !strings.Contains(cfg.Volume, "{name}") {
			return nil, fmt.Errorf("SPAWNER_VOLUME: %q must contain {name}, so that no two users share a claim", cfg.Volume)
		}
		if !validSubdomain(strings.ReplaceAll(cfg.Volume, "{name}", "vscode-x")) {
			return nil, fmt.Errorf("SPAWNER_VOLUME: %q does not make a valid claim name (lower case letters, digits, '-' and '.')", cfg.Volume)
		}
		if !strings.HasPrefix(cfg.VolumePath, "/") {
			return nil, fmt.Errorf("SPAWNER_VOLUME_PATH: %q must be an absolute path", cfg.VolumePath)
		}
	}
	storage, err := resource.ParseQuantity(cfg.StorageSize)
	if err != nil || storage.Sign() <= 0 {
		return nil, fmt.Errorf("SPAWNER_KUBERNETES_STORAGE_SIZE: %q is not a size such as 10Gi", cfg.StorageSize)
	}
	if cfg.Memory < 0 {
		return nil, fmt.Errorf("SPAWNER_MEMORY: must not be negative, got %d", cfg.Memory)
	}
	if cfg.NanoCPUs < 0 {
		return nil, fmt.Errorf("SPAWNER_CPUS: must not be negative, got %d", cfg.NanoCPUs)
	}
	limits := corev1.ResourceList{}
	if cfg.Memory > 0 {
		limits[corev1.ResourceMemory] = *resource.NewQuantity(cfg.Memory, resource.BinarySI)
	}
	if cfg.NanoCPUs > 0 {
		// Millicores, rounded up: the API's CPU unit.
		limits[corev1.ResourceCPU] = *resource.NewMilliQuantity((cfg.NanoCPUs+999_999)/1_000_000, resource.DecimalSI)
	}
	for _, e := range cfg.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return nil, fmt.Errorf("SPAWNER_ENV: %q is not KEY=value", e)
		}
	}

	rc := cfg.REST
	switch {
	case rc != nil:
	case cfg.Kubeconfig != "":
		rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("KUBECONFIG: %w", err)
		}
	default:
		rc, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("SPAWNER_BACKEND=kubernetes: no in-cluster configuration (run the spawner in a Pod with its ServiceAccount, or set KUBECONFIG): %w", err)
		}
	}
	rc = rest.CopyConfig(rc)
	if rc.UserAgent == "" {
		rc.UserAgent = "container-spawner"
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("configuring the Kubernetes client: %w", err)
	}
	return &kubeBackend{cfg: cfg, rest: rc, client: cs, storage: storage, limits: limits}, nil
}

// validSubdomain reports whether s is a DNS-1123 subdomain, the rule of
// most object names.
func validSubdomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, part := range strings.Split(s, ".") {
		if part == "" || len(part) > 63 || !validLabelStart(part) || strings.HasSuffix(part, "-") {
			return false
		}
	}
	return true
}

// CheckAccess makes sure the API server answers and lets the spawner list
// the Pods of its namespace: a spawner that cannot create workspaces must
// not start.
func (k *kubeBackend) CheckAccess(ctx context.Context) error {
	_, err := k.client.CoreV1().Pods(k.cfg.Namespace).List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		return fmt.Errorf("SPAWNER_KUBERNETES_NAMESPACE: listing Pods in %q: %w", k.cfg.Namespace, err)
	}
	return nil
}

// Endpoint implements Backend: the Service's name in cluster DNS.
func (k *kubeBackend) Endpoint(name string) string {
	return net.JoinHostPort(name+"."+k.cfg.Namespace+".svc", strconv.Itoa(k.cfg.Port))
}

// claimName is name's claim, or "" without claims.
func (k *kubeBackend) claimName(name string) string {
	if k.cfg.Volume == "" {
		return ""
	}
	return strings.ReplaceAll(k.cfg.Volume, "{name}", name)
}

// owner reports whether the labels l of the object name make it this
// spawner's (see ownedBy), and whose it is.
func (k *kubeBackend) owner(l map[string]string, name string) (managed bool, user string) {
	return ownedBy(l, name, k.cfg.Prefix), l[LabelUser]
}

// Inspect implements Backend. A workspace whose Pod is gone (stopped) but
// whose Service remains is "created": the next visit starts it.
func (k *kubeBackend) Inspect(ctx context.Context, name string) (State, error) {
	pod, err := k.client.CoreV1().Pods(k.cfg.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		return podState(pod, k.cfg.Prefix), nil
	}
	if !apierrors.IsNotFound(err) {
		return State{}, fmt.Errorf("reading Pod %q: %w", name, err)
	}
	svc, err := k.client.CoreV1().Services(k.cfg.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return State{}, ErrNotFound
	}
	if err != nil {
		return State{}, fmt.Errorf("reading Service %q: %w", name, err)
	}
	managed, user := k.owner(svc.Labels, name)
	return State{Name: name, Status: StatusCreated, Managed: managed, User: user}, nil
}

// waitingFailures are the reasons a container that never ran reports when
// it cannot start: the workspace has failed, not "is starting".
var waitingFailures = map[string]bool{
	"ErrImagePull": true, "ImagePullBackOff": true, "InvalidImageName": true, "ErrImageNeverPull": true,
	"CreateContainerConfigError": true, "CreateContainerError": true, "RunContainerError": true,
	"CrashLoopBackOff": true,
}

// podState turns a Pod into a State, in the Docker backend's words; Managed
// if the Pod is prefix's spawner's.
func podState(pod *corev1.Pod, prefix string) State {
	st := State{Name: pod.Name}
	st.Managed, st.User = ownedBy(pod.Labels, pod.Name, prefix), pod.Labels[LabelUser]
	if pod.DeletionTimestamp != nil {
		st.Status = StatusRemoving
		return st
	}
	var cs *corev1.ContainerStatus
	for i := range pod.Status.ContainerStatuses {
		if pod.Status.ContainerStatuses[i].Name == kubeContainerName {
			cs = &pod.Status.ContainerStatuses[i]
		}
	}
	terminated := func(t *corev1.ContainerStateTerminated) {
		st.Status = StatusExited
		st.ExitCode = int(t.ExitCode)
		st.StartedAt = t.StartedAt.Time
		st.FinishedAt = t.FinishedAt.Time
		st.OOMKilled = t.Reason == "OOMKilled"
		if t.Reason != "" && t.Reason != "Error" && t.Reason != "Completed" {
			st.Error = t.Reason
		}
	}
	switch {
	case cs != nil && cs.State.Terminated != nil:
		terminated(cs.State.Terminated)
	case cs != nil && cs.State.Waiting != nil && waitingFailures[cs.State.Waiting.Reason]:
		if t := cs.LastTerminationState.Terminated; t != nil {
			terminated(t)
		} else {
			// It never ran: no exit code of its own.
			st.Status = StatusExited
			st.ExitCode = -1
		}
		st.Error = reasonText(cs.State.Waiting.Reason, cs.State.Waiting.Message)
	case cs != nil && cs.State.Running != nil:
		st.Status = StatusRunning
		st.StartedAt = cs.State.Running.StartedAt.Time
		st.Health = HealthStarting
		if cs.Ready {
			st.Health = HealthHealthy
		}
	case pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded:
		// Ended without a container status: evicted, or its node lost.
		st.Status = StatusExited
		st.ExitCode = -1
		if pod.Status.Phase == corev1.PodSucceeded {
			st.ExitCode = 0
		}
		st.Error = reasonText(pod.Status.Reason, pod.Status.Message)
	case pod.Status.Phase == corev1.PodUnknown:
		st.Status = StatusDead
		st.Error = reasonText(pod.Status.Reason, pod.Status.Message)
	default:
		// Pending: waiting for a node, pulling the image, creating the
		// container. It counts as running (it holds its share of the
		// cluster) and is starting.
		st.Status = StatusRunning
		st.Health = HealthStarting
	}
	return st
}

// reasonText joins an API reason and message as "Reason: message".
func reasonText(reason, message string) string {
	switch {
	case reason == "":
		return message
	case message == "":
		return reason
	}
	return reason + ": " + message
}

// List implements Backend: every Pod of the spawner, and every stopped
// workspace (a Service without its Pod).
func (k *kubeBackend) List(ctx context.Context) ([]State, error) {
	sel := labels.Set{LabelSpawned: "true"}.String()
	pods, err := k.client.CoreV1().Pods(k.cfg.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("listing Pods: %w", err)
	}
	svcs, err := k.client.CoreV1().Services(k.cfg.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("listing Services: %w", err)
	}
	out := make([]State, 0, len(svcs.Items))
	seen := make(map[string]bool, len(pods.Items))
	// The selector is LabelSpawned; another spawner's objects (another
	// prefix) carry it too.
	for i := range pods.Items {
		if st := podState(&pods.Items[i], k.cfg.Prefix); st.Managed {
			seen[st.Name] = true
			out = append(out, st)
		}
	}
	for _, svc := range svcs.Items {
		if managed, user := k.owner(svc.Labels, svc.Name); managed && !seen[svc.Name] {
			out = append(out, State{Name: svc.Name, Status: StatusCreated, Managed: true, User: user})
		}
	}
	return out, nil
}

func (k *kubeBackend) ownerLabels(name, user string) map[string]string {
	return map[string]string{
		LabelSpawned:                   "true",
		LabelPrefix:                    k.cfg.Prefix,
		LabelUser:                      user,
		LabelContainer:                 name,
		"app.kubernetes.io/name":       "workspace",
		"app.kubernetes.io/managed-by": "container-spawner",
	}
}

// Create implements Backend: the claim (or the user's existing one) and
// the Service. The Pod is made by Start.
func (k *kubeBackend) Create(ctx context.Context, name, user string) error {
	if claim := k.claimName(name); claim != "" {
		if err := k.ensureClaim(ctx, claim, name, user); err != nil {
			return fmt.Errorf("creating workspace %q: %w", name, err)
		}
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: k.ownerLabels(name, user)},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{LabelSpawned: "true", LabelContainer: name},
			Ports: []corev1.ServicePort{{
				Name: "http", Port: int32(k.cfg.Port), TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP,
			}},
		},
	}
	_, err := k.client.CoreV1().Services(k.cfg.Namespace).Create(ctx, svc, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return ErrExists
	}
	if err != nil {
		return fmt.Errorf("creating Service %q: %w", name, err)
	}
	return nil
}

// ensureClaim creates user's claim, or checks that the existing one is the
// user's.
func (k *kubeBackend) ensureClaim(ctx context.Context, claim, name, user string) error {
	pvcs := k.client.CoreV1().PersistentVolumeClaims(k.cfg.Namespace)
	existing, err := pvcs.Get(ctx, claim, metav1.GetOptions{})
	if err == nil {
		if managed, owner := k.owner(existing.Labels, name); !managed || owner != user {
			return fmt.Errorf("claim %q: %w: it is not %q's", claim, ErrUnmanaged, user)
		}
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading claim %q: %w", claim, err)
	}
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: claim, Labels: k.ownerLabels(name, user)},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: k.storage}},
		},
	}
	if k.cfg.StorageClass != "" {
		class := k.cfg.StorageClass
		pvc.Spec.StorageClassName = &class
	}
	_, err = pvcs.Create(ctx, pvc, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating claim %q: %w", claim, err)
	}
	return nil
}

// pod is the Pod of name for user.
func (k *kubeBackend) pod(name, user string) *corev1.Pod {
	grace := int64((k.cfg.StopTimeout + time.Second - 1) / time.Second)
	no, yes := false, true
	env := []corev1.EnvVar{{Name: "USER_NAME", Value: user}}
	for _, e := range k.cfg.Env {
		key, value, _ := strings.Cut(e, "=")
		env = append(env, corev1.EnvVar{Name: key, Value: value})
	}
	c := corev1.Container{
		Name:  kubeContainerName,
		Image: k.cfg.Image,
		Args:  append([]string(nil), k.cfg.Command...),
		Env:   env,
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(k.cfg.Port), Protocol: corev1.ProtocolTCP}},
		// Ready when it accepts connections: the Service (and so the
		// director) only sends traffic to a workspace that answers.
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("http")}},
			PeriodSeconds: 2,
		},
		// After a crash the kubelet keeps the end of the log in the
		// container's status, where the error page finds it even when the
		// log itself is gone with the node.
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		SecurityContext:          &corev1.SecurityContext{AllowPrivilegeEscalation: &no},
	}
	if len(k.limits) > 0 {
		// Requests default to the limits: the scheduler reserves them.
		c.Resources.Limits = k.limits.DeepCopy()
	}
	spec := corev1.PodSpec{
		Containers: []corev1.Container{c},
		// The spawner is the workspace's controller: a crash stays a crash,
		// with its exit code, until the user restarts it.
		RestartPolicy:                 corev1.RestartPolicyNever,
		TerminationGracePeriodSeconds: &grace,
		// The workspace has no business with the API server.
		AutomountServiceAccountToken: &no,
		EnableServiceLinks:           &no,
		Hostname:                     name,
		SecurityContext:              &corev1.PodSecurityContext{RunAsNonRoot: &yes},
	}
	if claim := k.claimName(name); claim != "" {
		spec.Volumes = []corev1.Volume{{Name: "home", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim},
		}}}
		spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "home", MountPath: k.cfg.VolumePath}}
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: k.ownerLabels(name, user)}, Spec: spec}
}

// Start implements Backend: it creates the Pod. A Pod that has ended is
// deleted and made again (a Pod never runs twice); a running or starting
// one is left alone.
func (k *kubeBackend) Start(ctx context.Context, name string) error {
	st, err := k.Inspect(ctx, name)
	if err != nil {
		return err
	}
	if !st.Managed {
		return fmt.Errorf("workspace %q: %w", name, ErrUnmanaged)
	}
	switch st.Status {
	case StatusRunning:
		return nil
	case StatusExited, StatusDead, StatusRemoving:
		if err := k.deletePod(ctx, name, true); err != nil {
			return err
		}
	}
	return k.createPod(ctx, name, st.User)
}

func (k *kubeBackend) createPod(ctx context.Context, name, user string) error {
	_, err := k.client.CoreV1().Pods(k.cfg.Namespace).Create(ctx, k.pod(name, user), metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil // another replica started it
	}
	if err != nil {
		return fmt.Errorf("creating Pod %q: %w", name, err)
	}
	return nil
}

// deletePod deletes name's Pod, if any; with wait, it returns once the Pod
// is gone (its grace period over), so that a new one may take its name.
func (k *kubeBackend) deletePod(ctx context.Context, name string, wait bool) error {
	pods := k.client.CoreV1().Pods(k.cfg.Namespace)
	err := pods.Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("deleting Pod %q: %w", name, err)
	}
	if !wait {
		return nil
	}
	deadline := time.Now().Add(k.cfg.StopTimeout + 30*time.Second)
	for {
		_, err := pods.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("waiting for Pod %q to end: %w", name, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("Pod %q still ending after %s", name, k.cfg.StopTimeout+30*time.Second)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// requireManaged refuses to act on a workspace the spawner did not create.
func (k *kubeBackend) requireManaged(ctx context.Context, name string) (State, error) {
	st, err := k.Inspect(ctx, name)
	if err != nil {
		return st, err
	}
	if !st.Managed {
		return st, fmt.Errorf("workspace %q: %w", name, ErrUnmanaged)
	}
	return st, nil
}

// Restart implements Backend: the Pod is deleted, and made again once gone.
func (k *kubeBackend) Restart(ctx context.Context, name string) error {
	st, err := k.requireManaged(ctx, name)
	if err != nil {
		return err
	}
	if err := k.deletePod(ctx, name, true); err != nil {
		return err
	}
	return k.createPod(ctx, name, st.User)
}

// Stop implements Backend: the Pod is deleted; the Service and the claim
// stay, so the next visit starts it again with the same home.
func (k *kubeBackend) Stop(ctx context.Context, name string) error {
	if _, err := k.requireManaged(ctx, name); err != nil {
		return err
	}
	return k.deletePod(ctx, name, false)
}

// Remove implements Backend: the Pod and the Service go, never the claim.
func (k *kubeBackend) Remove(ctx context.Context, name string) error {
	_, err := k.requireManaged(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := k.deletePod(ctx, name, true); err != nil {
		return err
	}
	err = k.client.CoreV1().Services(k.cfg.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting Service %q: %w", name, err)
	}
	return nil
}

// Logs implements Backend: the container's log from the API server (which
// asks the node), or else, after a crash, the end of the log that the
// kubelet kept in the container's termination message.
func (k *kubeBackend) Logs(ctx context.Context, name string, n int) ([]string, error) {
	pod, err := k.client.CoreV1().Pods(k.cfg.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading Pod %q: %w", name, err)
	}
	tail, limit := int64(n), int64(1<<20)
	rc, err := k.client.CoreV1().Pods(k.cfg.Namespace).GetLogs(name, &corev1.PodLogOptions{
		Container: kubeContainerName, TailLines: &tail, LimitBytes: &limit,
	}).Stream(ctx)
	var lines []string
	if err == nil {
		b, rerr := io.ReadAll(io.LimitReader(rc, limit))
		rc.Close()
		lines, err = lastLines(b, n), rerr
		if len(lines) > 0 {
			return lines, nil
		}
	}
	// No log from the node (gone with it, or never bound to one): the end
	// of the log the kubelet kept.
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name != kubeContainerName {
			continue
		}
		t := cs.State.Terminated
		if t == nil {
			t = cs.LastTerminationState.Terminated
		}
		if t != nil && t.Message != "" {
			return lastLines([]byte(t.Message), n), nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("reading logs of %q: %w", name, err)
	}
	return lines, nil
}

// Activity implements ActivityMeter: the bytes received and sent on the
// Pod's interfaces other than loopback, read from /proc/net/dev inside the
// workspace (pods/exec), since the API offers no network counters of a Pod
// without node-wide rights. The image needs a `cat`.
func (k *kubeBackend) Activity(ctx context.Context, name string) (uint64, error) {
	req := k.client.CoreV1().RESTClient().Post().Resource("pods").Namespace(k.cfg.Namespace).Name(name).
		SubResource("exec").VersionedParams(&corev1.PodExecOptions{
		Container: kubeContainerName, Command: []string{"cat", "/proc/net/dev"}, Stdout: true, Stderr: true,
	}, scheme.ParameterCodec)
	exec, err := remotecommand.NewWebSocketExecutor(k.rest, "GET", req.URL().String())
	if err != nil {
		return 0, fmt.Errorf("reading activity of %q: %w", name, err)
	}
	var stdout, stderr bytes.Buffer
	if err := exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr}); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, ErrNotFound
		}
		return 0, fmt.Errorf("reading activity of %q: %w: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	return parseNetDev(stdout.Bytes())
}

// parseNetDev sums the received and sent bytes of every interface but
// loopback in the text of /proc/net/dev.
func parseNetDev(b []byte) (uint64, error) {
	var total uint64
	found := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		iface, counters, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue // the two header lines
		}
		iface = strings.TrimSpace(iface)
		f := strings.Fields(counters)
		if len(f) < 16 {
			return 0, fmt.Errorf("parsing /proc/net/dev: %q has %d fields, want 16", iface, len(f))
		}
		if iface == "lo" {
			found = true
			continue
		}
		rx, err1 := strconv.ParseUint(f[0], 10, 64)
		tx, err2 := strconv.ParseUint(f[8], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("parsing /proc/net/dev: bad counters of %q", iface)
		}
		total += rx + tx
		found = true
	}
	if !found {
		return 0, errors.New("parsing /proc/net/dev: no interfaces")
	}
	return total, nil
}
