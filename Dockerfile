# syntax=docker/dockerfile:1
#
# Multi-stage build of the loadspec image for users: `docker build -t loadspec .` or
# `docker compose up --build`. One image serves both roles of docker-compose.yml: the daemon
# (`loadspec run --config ...`) and the demo target (`loadspec demo-target ...`).

FROM rust:1-bookworm AS build
WORKDIR /src
# Manifests first, so the dependency build is cached while only src/ changes.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --bin loadspec \
    && rm -rf src
COPY . .
# cargo decides by mtime; make sure the real sources are newer than the dummy build.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin loadspec \
    && cp target/release/loadspec /loadspec

# glibc and libgcc, nothing else: no shell, no package manager. The default (root) user is
# needed to talk to the mounted Docker socket; the demo target does not need it.
FROM gcr.io/distroless/cc-debian12
COPY --from=build /loadspec /usr/local/bin/loadspec
# 9464: /metrics, /healthz, /report of the daemon. 8080: the demo target.
EXPOSE 9464 8080
ENTRYPOINT ["/usr/local/bin/loadspec"]
CMD ["demo"]
