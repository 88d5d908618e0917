# Multi-stage build of the Sluice manager: a static binary on a distroless,
# nonroot base. (No Docker engine runs on the development machines; keep
# this file correct by reading it.)
#
#   docker build --build-arg BASE_IMAGE=<mirror>/distroless/static:nonroot -t sluice/manager:dev .
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

RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags="-s -w" -o manager ./cmd/manager

FROM ${BASE_IMAGE}
WORKDIR /
COPY --from=builder /workspace/manager /manager
USER 65532:65532
ENTRYPOINT ["/manager"]
