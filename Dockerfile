# Multi-stage build of the Sluice manager and node agent: static binaries on
# distroless bases. (No Docker engine runs on the development machines; keep
# this file correct by reading it.)
#
#   docker build --build-arg BASE_IMAGE=<mirror>/distroless/static:nonroot -t sluice/manager:dev .
#   docker build --build-arg BASE_IMAGE=<mirror>/distroless/static --target agent -t sluice/agent:dev .
#
# BASE_IMAGE is the distroless static:nonroot image from the registry or
# mirror you trust; it is not defaulted here so a build never pulls a base
# image nobody chose.
ARG BASE_IMAGE
FROM golang:1.26 AS builder
ARG TARGETOS=linux
ARG TARGETARCH=amd64
WORKDIR /workspace

# Dependencies first, so source edits don't re-download modules.
COPY go.mod go.sum ./
RUN go mod download

COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/

RUN for cmd in manager agent cni; do \
      CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
        go build -trimpath -ldflags="-s -w" -o /out/$cmd ./cmd/$cmd || exit 1; \
    done

# The node agent (docker build --target agent): it loads BPF programs and
# writes the node's CNI files, so it runs as root with the capabilities the
# DaemonSet grants; the CNI plugin binary ships with it for installation.
FROM ${BASE_IMAGE} AS agent
WORKDIR /
COPY --from=builder /out/agent /sluice-agent
COPY --from=builder /out/cni /sluice-cni
USER 0:0
ENTRYPOINT ["/sluice-agent"]

# The operator (the default target).
FROM ${BASE_IMAGE} AS manager
WORKDIR /
COPY --from=builder /out/manager /manager
USER 65532:65532
ENTRYPOINT ["/manager"]
