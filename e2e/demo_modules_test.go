package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
)

// downloadDemoModules fills the module cache with what scripts/demo.sh needs
// to build the spawner: the demo tests run it inside the namespaces, without
// the network (GOPROXY=off), and the spawner has modules of its own.
func downloadDemoModules() error {
	cmd := exec.Command("go", "mod", "download")
	cmd.Dir = filepath.Join(repoRoot(), "examples", "spawner")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go mod download in examples/spawner: %v\n%s", err, out)
	}
	return nil
}
