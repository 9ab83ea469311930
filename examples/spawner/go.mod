module github.com/container-director/director/examples/spawner

go 1.22
