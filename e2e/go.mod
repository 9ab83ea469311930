module github.com/container-director/director/e2e

go 1.22

require github.com/container-director/director v0.0.0

replace github.com/container-director/director => ../
