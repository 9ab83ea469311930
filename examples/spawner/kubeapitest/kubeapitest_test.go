package kubeapitest

import (
	"context"
	"os"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestCluster starts the API server, applies a manifest with the admin token
// and checks that a ServiceAccount's token is held to RBAC.
func TestCluster(t *testing.T) {
	bin, err := Binaries()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("building kube-apiserver and etcd: %v", err)
		}
		t.Skipf("no kube-apiserver: %v", err)
	}
	c, err := Start(bin, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	manifest := []byte(`apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: reader
  namespace: demo
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: read-configmaps
  namespace: demo
rules:
  - apiGroups: [""]
    resources: [configmaps]
    verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: reader
  namespace: demo
subjects:
  - kind: ServiceAccount
    name: reader
    namespace: demo
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: read-configmaps
`)
	if err := Apply(ctx, c.AdminConfig(), manifest); err != nil {
		t.Fatal(err)
	}
	token, err := c.ServiceAccountToken(ctx, "demo", "reader")
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(c.TokenConfig(token))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps("demo").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("listing ConfigMaps as demo/reader: %v, want allowed", err)
	}
	_, err = cs.CoreV1().Secrets("demo").List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("listing Secrets as demo/reader: %v, want forbidden", err)
	}
	_, err = cs.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Errorf("listing ConfigMaps in default as demo/reader: %v, want forbidden", err)
	}
}
