module github.com/container-director/director

go 1.21
