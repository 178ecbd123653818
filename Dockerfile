# syntax=docker/dockerfile:1
# One image for all four services: `slammesh orchestrator|mapping|localization|merge`.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/slammesh ./cmd/slammesh && \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/slamctl ./cmd/slamctl

# distroless static: no shell, no package manager, runs as uid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/slammesh /out/slamctl /usr/local/bin/
USER nonroot:nonroot
EXPOSE 50051 50052 50053 50054 9091 9092 9093 9094
ENTRYPOINT ["/usr/local/bin/slammesh"]
CMD ["--help"]
