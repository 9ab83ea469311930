module github.com/container-director/floor

go 1.21
