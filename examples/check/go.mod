module github.com/container-director/director/examples/check

go 1.22

require (
	github.com/container-director/director v0.0.0
	gopkg.in/yaml.v3 v3.0.1
)

replace github.com/container-director/director => ../..
