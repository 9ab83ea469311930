module github.com/container-director/director/e2e

go 1.22

require github.com/container-director/director v0.0.0

require github.com/traefik/yaegi v0.16.1

replace github.com/container-director/director => ../
