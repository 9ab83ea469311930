package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"

	"github.com/container-director/director/examples/spawner/kubeapitest"
)

// kubeExamples is the folder of the Kubernetes manifests.
var kubeExamples = filepath.Join("..", "kubernetes")

// startKubeCluster starts a real API server with examples/kubernetes'
// namespaces and spawner.yaml applied, or skips (fails under CI=true)
// when kube-apiserver cannot be built here.
func startKubeCluster(t *testing.T) *kubeapitest.Cluster {
	t.Helper()
	bin, err := kubeapitest.Binaries()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("building kube-apiserver and etcd: %v", err)
		}
		t.Skipf("no kube-apiserver: %v", err)
	}
	c, err := kubeapitest.Start(bin, kubeapitest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("API server logs:\n%s", c.Logs(30))
		}
		c.Stop()
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, f := range []string{"namespaces.yaml", "spawner.yaml"} {
		data, err := os.ReadFile(filepath.Join(kubeExamples, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := kubeapitest.Apply(ctx, c.AdminConfig(), data); err != nil {
			t.Fatalf("applying %s: %v", f, err)
		}
	}
	// The controller manager would create these; Pods need them.
	if err := c.EnsureDefaultServiceAccounts(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// deploymentEnv returns the environment of the spawner's container in
// examples/kubernetes/spawner.yaml.
func deploymentEnv(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(kubeExamples, "spawner.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var doc struct {
			Kind string
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct {
							Name string
							Env  []struct{ Name, Value string }
						}
					}
				}
			}
		}
		if err := dec.Decode(&doc); err != nil {
			t.Fatalf("spawner.yaml: no Deployment: %v", err)
		}
		if doc.Kind != "Deployment" {
			continue
		}
		env := map[string]string{}
		for _, c := range doc.Spec.Template.Spec.Containers {
			for _, e := range c.Env {
				env[e.Name] = e.Value
			}
		}
		return env
	}
}

// nodeSetsRunning plays the kubelet: it marks the Pod's container running
// and, with ready, the Pod ready.
func nodeSetsRunning(ctx context.Context, t *testing.T, cs kubernetes.Interface, name string, ready bool) {
	t.Helper()
	pod, err := cs.CoreV1().Pods("workspaces").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	cond := corev1.ConditionFalse
	if ready {
		cond = corev1.ConditionTrue
	}
	pod.Status = corev1.PodStatus{
		Phase:     corev1.PodRunning,
		StartTime: &now,
		PodIP:     "10.244.0.2",
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: cond, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: cond, LastTransitionTime: now},
		},
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: kubeContainerName, Image: pod.Spec.Containers[0].Image, ImageID: "sha256:test", Ready: ready,
			Started: &ready, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		}},
	}
	if _, err := cs.CoreV1().Pods("workspaces").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("the node marking %s running: %v", name, err)
	}
}

// nodeSetsCrashed plays the kubelet after the container exited with code:
// with terminationMessagePolicy FallbackToLogsOnError, the kubelet puts the
// end of the log in the termination message.
func nodeSetsCrashed(ctx context.Context, t *testing.T, cs kubernetes.Interface, name string, code int32, logTail string) {
	t.Helper()
	pod, err := cs.CoreV1().Pods("workspaces").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pod.Spec.Containers[0].TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError {
		t.Errorf("terminationMessagePolicy: %q, want FallbackToLogsOnError (the log tail the error page shows)", pod.Spec.Containers[0].TerminationMessagePolicy)
	}
	started := metav1.NewTime(time.Now().Add(-time.Minute))
	now := metav1.Now()
	pod.Status.Phase = corev1.PodFailed
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse, LastTransitionTime: now}}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: kubeContainerName, Image: pod.Spec.Containers[0].Image, ImageID: "sha256:test",
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: code, Reason: "Error", Message: logTail, StartedAt: started, FinishedAt: now,
		}},
	}}
	if _, err := cs.CoreV1().Pods("workspaces").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("the node marking %s crashed: %v", name, err)
	}
}

// fixedMeter reports the same traffic forever: an idle workspace. Reading
// real counters needs pods/exec, which needs a kubelet.
type fixedMeter uint64

func (m fixedMeter) Activity(context.Context, string) (uint64, error) { return uint64(m), nil }

// TestKubernetesBackend runs the spawner's Kubernetes backend, configured
// as examples/kubernetes/spawner.yaml configures it and with a token of its
// ServiceAccount (the example Role's rights, not an admin's), against a real
// API server. There is no kubelet: the test plays the node, setting the
// Pods' status as a kubelet would.
func TestKubernetesBackend(t *testing.T) {
	cluster := startKubeCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	admin, err := kubernetes.NewForConfig(cluster.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	token, err := cluster.ServiceAccountToken(ctx, "container-director", "container-spawner")
	if err != nil {
		t.Fatal(err)
	}

	// The Deployment's settings, through the spawner's own parsing.
	env := deploymentEnv(t)
	if env["SPAWNER_BACKEND"] != "kubernetes" {
		t.Fatalf("spawner.yaml: SPAWNER_BACKEND=%q, want kubernetes", env["SPAWNER_BACKEND"])
	}
	cfg, err := parseConfig(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatalf("the Deployment's environment: %v", err)
	}
	kb, err := NewKubernetesBackend(KubernetesConfig{
		REST: cluster.TokenConfig(token), Namespace: cfg.kubeNamespace, Image: cfg.image, Prefix: cfg.prefix, Port: cfg.containerPort,
		Volume: cfg.volume, VolumePath: cfg.volumePath, StorageSize: cfg.kubeStorageSize, StorageClass: cfg.kubeStorageClass,
		Memory: cfg.memory, NanoCPUs: cfg.nanoCPUs, Env: cfg.env, Command: cfg.command, StopTimeout: cfg.stopTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := kb.CheckAccess(ctx); err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	h, err := NewHandler(kb, HandlerConfig{
		Prefix: cfg.prefix, UsernameHeader: cfg.usernameHeader, StartGrace: cfg.startGrace,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
		// Nothing listens at the Services' addresses here.
		Ready: func(context.Context, string) error { return errors.New("not answering") },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	srv := httptest.NewServer(h)
	defer srv.Close()

	visit := func(user string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
		req.Header.Set("X-Container-Name", cfg.prefix+"-"+user)
		// The first of the Deployment's identity headers, as OAuth2 Proxy
		// fills it for a provider that sends preferred_username.
		req.Header.Set(strings.TrimSpace(strings.Split(cfg.usernameHeader, ",")[0]), user)
		req.Header.Set("Accept", "text/html")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	waitPod := func(name string, want func(*corev1.Pod, error) bool, what string) *corev1.Pod {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			pod, err := admin.CoreV1().Pods("workspaces").Get(ctx, name, metav1.GetOptions{})
			if want(pod, err) {
				return pod
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v; spawner log:\n%s", what, err, logs)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	exists := func(p *corev1.Pod, err error) bool { return err == nil && p.DeletionTimestamp == nil }
	gone := func(_ *corev1.Pod, err error) bool { return apierrors.IsNotFound(err) }

	// 1. The first visit: the loading page, and the Pod, Service and claim.
	code, body := visit("alice")
	if code != http.StatusServiceUnavailable || !strings.Contains(strings.ToLower(body), "starting") && !strings.Contains(strings.ToLower(body), "creating") {
		t.Fatalf("first visit: %d %.300q, want the loading page", code, body)
	}
	pod := waitPod("vscode-alice", exists, "the Pod vscode-alice was not created")
	checkWorkspacePod(t, pod, "alice", cfg)
	svc, err := admin.CoreV1().Services("workspaces").Get(ctx, "vscode-alice", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Selector[LabelContainer] != "vscode-alice" || svc.Labels[LabelUser] != "alice" || svc.Spec.Ports[0].Port != int32(cfg.containerPort) {
		t.Errorf("Service vscode-alice: selector %v, labels %v, ports %v", svc.Spec.Selector, svc.Labels, svc.Spec.Ports)
	}
	pvc, err := admin.CoreV1().PersistentVolumeClaims("workspaces").Get(ctx, "vscode-alice-home", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; got.Cmp(resource.MustParse(cfg.kubeStorageSize)) != 0 || pvc.Labels[LabelUser] != "alice" {
		t.Errorf("claim vscode-alice-home: %s, labels %v; want %s of alice's", got.String(), pvc.Labels, cfg.kubeStorageSize)
	}

	// 2. The node starts the container; until it is ready, and while the
	// director does not reach it yet, a visit gets the loading page again.
	nodeSetsRunning(ctx, t, admin, "vscode-alice", false)
	if st, err := kb.Inspect(ctx, "vscode-alice"); err != nil || st.Status != StatusRunning || st.Health != HealthStarting {
		t.Errorf("Inspect of a running, unready Pod: %+v %v, want running/starting", st, err)
	}
	nodeSetsRunning(ctx, t, admin, "vscode-alice", true)
	st, err := kb.Inspect(ctx, "vscode-alice")
	if err != nil || st.Status != StatusRunning || st.Health != HealthHealthy || st.User != "alice" || !st.Managed {
		t.Errorf("Inspect of a ready Pod: %+v %v, want running/healthy, alice's", st, err)
	}
	if code, body := visit("alice"); code != http.StatusServiceUnavailable || strings.Contains(body, "has stopped") {
		t.Errorf("visit while running: %d %.300q, want the loading page", code, body)
	}

	// 3. The idle stop deletes the Pod and keeps the Service and the claim.
	t0 := time.Now()
	clock := t0
	idle := &idleStopper{backend: kb, meter: fixedMeter(42), timeout: time.Minute, every: time.Second,
		metrics: newMetrics(kb), log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: func() time.Time { return clock }}
	idle.check(ctx)
	if _, err := admin.CoreV1().Pods("workspaces").Get(ctx, "vscode-alice", metav1.GetOptions{}); err != nil {
		t.Fatalf("the idle stop stopped a workspace at first sight: %v", err)
	}
	clock = t0.Add(time.Minute)
	idle.check(ctx)
	waitPod("vscode-alice", gone, "the idle stop did not delete the Pod")
	if _, err := admin.CoreV1().PersistentVolumeClaims("workspaces").Get(ctx, "vscode-alice-home", metav1.GetOptions{}); err != nil {
		t.Errorf("the claim after the idle stop: %v, want kept", err)
	}
	if st, err := kb.Inspect(ctx, "vscode-alice"); err != nil || st.Status != StatusCreated || st.User != "alice" {
		t.Errorf("Inspect after the idle stop: %+v %v, want created (stopped), alice's", st, err)
	}

	// 4. The next visit starts it again, with the same claim.
	if code, body := visit("alice"); code != http.StatusServiceUnavailable {
		t.Errorf("visit after the idle stop: %d %.300q, want the loading page", code, body)
	}
	pod = waitPod("vscode-alice", exists, "the visit after the idle stop did not start the Pod again")
	checkWorkspacePod(t, pod, "alice", cfg)

	// 5. A crash: the error page with the state, the exit code and the end
	// of the log.
	nodeSetsRunning(ctx, t, admin, "vscode-alice", true)
	nodeSetsCrashed(ctx, t, admin, "vscode-alice", 3, "loading extensions\npanic: settings.json: unexpected end of JSON input")
	code, body = visit("alice")
	if code != http.StatusBadGateway {
		t.Errorf("visit after a crash: %d, want the error page (502)", code)
	}
	for _, want := range []string{"exited", "3", "panic: settings.json: unexpected end of JSON input", "Restart"} {
		if !strings.Contains(body, want) {
			t.Errorf("the error page lacks %q:\n%.2000s", want, body)
		}
	}
	if _, err := admin.CoreV1().Pods("workspaces").Get(ctx, "vscode-alice", metav1.GetOptions{}); err != nil {
		t.Errorf("the crashed Pod was not kept for its error page: %v", err)
	}

	// 6. The restart button: the crashed Pod is replaced by a new one.
	if err := kb.Restart(ctx, "vscode-alice"); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	pod = waitPod("vscode-alice", exists, "Restart did not create the Pod again")
	if len(pod.Status.ContainerStatuses) != 0 {
		t.Errorf("after Restart the Pod still has the old status %+v", pod.Status.ContainerStatuses)
	}

	// 7. A second user gets objects of her own; alice's stay as they are.
	if code, _ := visit("bob"); code != http.StatusServiceUnavailable {
		t.Errorf("bob's first visit: %d, want the loading page", code)
	}
	bobPod := waitPod("vscode-bob", exists, "the Pod vscode-bob was not created")
	checkWorkspacePod(t, bobPod, "bob", cfg)
	if _, err := admin.CoreV1().PersistentVolumeClaims("workspaces").Get(ctx, "vscode-bob-home", metav1.GetOptions{}); err != nil {
		t.Errorf("bob's claim: %v", err)
	}
	list, err := kb.List(ctx)
	if err != nil || len(list) != 2 {
		t.Errorf("List: %+v %v, want alice's and bob's", list, err)
	}

	// 8. The ServiceAccount's rights end at the workspaces' namespace and
	// at what the backend needs.
	sa, err := kubernetes.NewForConfig(cluster.TokenConfig(token))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sa.CoreV1().Secrets("workspaces").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the spawner listing Secrets: %v, want forbidden", err)
	}
	if _, err := sa.CoreV1().Pods("container-director").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the spawner listing Pods of its own namespace: %v, want forbidden", err)
	}
	// The idle stop's exec is allowed; without a node it cannot go further.
	_, err = kb.Activity(ctx, "vscode-bob")
	if err == nil || strings.Contains(strings.ToLower(err.Error()), "forbidden") {
		t.Errorf("reading bob's activity as the spawner: %v, want allowed (and failing for want of a node)", err)
	}
	t.Logf("reading activity without a node: %v", err)
	if err := sa.CoreV1().PersistentVolumeClaims("workspaces").Delete(ctx, "vscode-alice-home", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the spawner deleting a claim: %v, want forbidden", err)
	}

	// 9. A second spawner (prefix jupyter) in the same namespace: each
	// lists, counts and acts on its own workspaces alone; a Service of the
	// previous version (LabelSpawned without LabelPrefix) stays vscode's.
	jb, err := NewKubernetesBackend(KubernetesConfig{
		REST: cluster.TokenConfig(token), Namespace: cfg.kubeNamespace, Image: cfg.image, Prefix: "jupyter",
		Volume: cfg.volume, StorageSize: cfg.kubeStorageSize,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := jb.Create(ctx, "jupyter-alice", "alice"); err != nil {
		t.Fatalf("jupyter's Create: %v", err)
	}
	if err := jb.Start(ctx, "jupyter-alice"); err != nil {
		t.Fatalf("jupyter's Start: %v", err)
	}
	if pod := waitPod("jupyter-alice", exists, "the Pod jupyter-alice was not created"); pod.Labels[LabelPrefix] != "jupyter" {
		t.Errorf("jupyter-alice's labels: %v, want %s=jupyter", pod.Labels, LabelPrefix)
	}
	old := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "vscode-old", Labels: map[string]string{LabelSpawned: "true", LabelUser: "old"}},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}},
	}
	if _, err := admin.CoreV1().Services("workspaces").Create(ctx, old, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	names := func(b *kubeBackend) string {
		list, err := b.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, st := range list {
			out = append(out, st.Name)
		}
		sort.Strings(out)
		return strings.Join(out, " ")
	}
	if got := names(kb); got != "vscode-alice vscode-bob vscode-old" {
		t.Errorf("vscode's List: %q, want its own and the previous version's", got)
	}
	if got := names(jb); got != "jupyter-alice" {
		t.Errorf("jupyter's List: %q, want jupyter-alice alone", got)
	}
	if err := kb.Stop(ctx, "jupyter-alice"); !errors.Is(err, ErrUnmanaged) {
		t.Errorf("vscode's spawner stopping jupyter-alice: %v, want ErrUnmanaged", err)
	}
	if err := jb.Stop(ctx, "vscode-bob"); !errors.Is(err, ErrUnmanaged) {
		t.Errorf("jupyter's spawner stopping vscode-bob: %v, want ErrUnmanaged", err)
	}
	if st, err := kb.Inspect(ctx, "vscode-old"); err != nil || !st.Managed || st.User != "old" {
		t.Errorf("the previous version's vscode-old: %+v %v, want managed, old's", st, err)
	}
}

// checkWorkspacePod checks the Pod the backend made for user against the
// Deployment's settings.
func checkWorkspacePod(t *testing.T, pod *corev1.Pod, user string, cfg config) {
	t.Helper()
	if pod.Labels[LabelSpawned] != "true" || pod.Labels[LabelUser] != user || pod.Labels[LabelContainer] != pod.Name {
		t.Errorf("Pod %s labels: %v", pod.Name, pod.Labels)
	}
	if pod.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("Pod %s restartPolicy %q, want Never", pod.Name, pod.Spec.RestartPolicy)
	}
	c := pod.Spec.Containers[0]
	if c.Image != cfg.image || strings.Join(c.Args, " ") != strings.Join(cfg.command, " ") {
		t.Errorf("Pod %s: image %q args %q, want %q %q", pod.Name, c.Image, c.Args, cfg.image, cfg.command)
	}
	envs := map[string]string{}
	for _, e := range c.Env {
		envs[e.Name] = e.Value
	}
	if envs["USER_NAME"] != user {
		t.Errorf("Pod %s: USER_NAME=%q, want %q", pod.Name, envs["USER_NAME"], user)
	}
	for _, e := range cfg.env {
		k, v, _ := strings.Cut(e, "=")
		if envs[k] != v {
			t.Errorf("Pod %s: %s=%q, want %q", pod.Name, k, envs[k], v)
		}
	}
	if got := c.Resources.Limits[corev1.ResourceMemory]; got.Value() != cfg.memory {
		t.Errorf("Pod %s: memory limit %s, want %d bytes", pod.Name, got.String(), cfg.memory)
	}
	if got := c.Resources.Limits[corev1.ResourceCPU]; got.MilliValue() != cfg.nanoCPUs/1_000_000 {
		t.Errorf("Pod %s: CPU limit %s, want %d nano", pod.Name, got.String(), cfg.nanoCPUs)
	}
	// The API server defaults requests to the limits: what the scheduler
	// reserves.
	if got := c.Resources.Requests[corev1.ResourceMemory]; got.Value() != cfg.memory {
		t.Errorf("Pod %s: memory request %s, want the limit", pod.Name, got.String())
	}
	if len(pod.Spec.Volumes) != 1 || pod.Spec.Volumes[0].PersistentVolumeClaim == nil ||
		pod.Spec.Volumes[0].PersistentVolumeClaim.ClaimName != pod.Name+"-home" ||
		len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != cfg.volumePath {
		t.Errorf("Pod %s: volumes %+v mounts %+v, want the claim %s-home at %s", pod.Name, pod.Spec.Volumes, c.VolumeMounts, pod.Name, cfg.volumePath)
	}
	if pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
		t.Errorf("Pod %s mounts a ServiceAccount token", pod.Name)
	}
}

func TestPodState(t *testing.T) {
	now := metav1.Now()
	cases := []struct {
		desc           string
		pod            corev1.Pod
		expectedStatus string
		expectedHealth string
		expectedCode   int
		expectedError  string
		expectedOOM    bool
	}{
		{desc: "pending", pod: corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending}},
			expectedStatus: StatusRunning, expectedHealth: HealthStarting},
		{desc: "image pull failing", pod: corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
			Name: kubeContainerName, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "back-off pulling x"}}}}}},
			expectedStatus: StatusExited, expectedCode: -1, expectedError: "ImagePullBackOff: back-off pulling x"},
		{desc: "OOM killed", pod: corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{
			Name: kubeContainerName, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled", FinishedAt: now}}}}}},
			expectedStatus: StatusExited, expectedCode: 137, expectedError: "OOMKilled", expectedOOM: true},
		{desc: "evicted", pod: corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: "low on disk"}},
			expectedStatus: StatusExited, expectedCode: -1, expectedError: "Evicted: low on disk"},
		{desc: "node lost", pod: corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodUnknown}}, expectedStatus: StatusDead},
		{desc: "terminating", pod: corev1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}}, expectedStatus: StatusRemoving},
	}
	for _, c := range cases {
		st := podState(&c.pod, "vscode")
		if st.Status != c.expectedStatus || st.Health != c.expectedHealth || st.ExitCode != c.expectedCode || st.Error != c.expectedError || st.OOMKilled != c.expectedOOM {
			t.Errorf("%s: got %+v", c.desc, st)
		}
	}
}

func TestParseNetDev(t *testing.T) {
	text := `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    5000      50    0    0    0     0          0         0     5000      50    0    0    0     0       0          0
  eth0:  123456     100    0    0    0     0          0         0    65432      90    0    0    0     0       0          0
`
	got, err := parseNetDev([]byte(text))
	if err != nil || got != 123456+65432 {
		t.Errorf("parseNetDev: %d %v, want %d (eth0 only)", got, err, 123456+65432)
	}
	if _, err := parseNetDev([]byte("garbage")); err == nil {
		t.Error("parseNetDev(garbage): no error")
	}
	if _, err := parseNetDev([]byte("eth0: 1 2 3")); err == nil {
		t.Error("parseNetDev(short line): no error")
	}
}

func TestNewKubernetesBackendRejectsBadSettings(t *testing.T) {
	cases := []struct {
		desc     string
		cfg      KubernetesConfig
		expected string
	}{
		{desc: "namespace", cfg: KubernetesConfig{Namespace: "Work_spaces"}, expected: "SPAWNER_KUBERNETES_NAMESPACE"},
		{desc: "volume without {name}", cfg: KubernetesConfig{Volume: "home"}, expected: "SPAWNER_VOLUME"},
		{desc: "volume name", cfg: KubernetesConfig{Volume: "{name}_Home"}, expected: "SPAWNER_VOLUME"},
		{desc: "size", cfg: KubernetesConfig{StorageSize: "ten gigs"}, expected: "SPAWNER_KUBERNETES_STORAGE_SIZE"},
		{desc: "env", cfg: KubernetesConfig{Env: []string{"NOEQUALS"}}, expected: "SPAWNER_ENV"},
	}
	for _, c := range cases {
		c.cfg.Kubeconfig = "/nonexistent"
		_, err := NewKubernetesBackend(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.expected) {
			t.Errorf("%s: %v, want an error naming %s", c.desc, err, c.expected)
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for the handler's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
