# Container Director, standalone: the director as a container of its own,
# behind OAuth2 Proxy. See docs/standalone.md.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t container-director .
#   docker run --rm -e SPAWNER_HOST=spawner:8090 -e CONTAINER_HOST_PREFIX=vscode container-director

ARG GO_VERSION=1.24

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Standard library only: there is nothing to download.
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
	-o /out/container-director ./cmd/container-director

# Static binary on distroless: CA certificates (for an https SPAWNER_HOST),
# /etc/passwd with the nonroot user, no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/container-director /usr/local/bin/container-director
# nonroot, by number so that runAsNonRoot can check it.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/container-director"]
