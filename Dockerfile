# hubwatch container image.
#
#   docker build -t hubwatch:dev .
#   docker run --rm --read-only -v hubwatch-state:/var/lib/hubwatch -p 9393:9393 \
#     -e EVENTHUB_CONNECTION_STRING=... hubwatch:dev run --config /etc/hubwatch/eventhubs.toml
#
# Two stages: Debian 12's Rust image builds the release binary; distroless cc-debian12 (glibc,
# libgcc, libssl3 and CA certificates, no shell, no package manager) runs it as the numeric
# user 65532. zlib is linked statically (LIBZ_SYS_STATIC in .cargo/config.toml), so the binary needs nothing the
# runtime image lacks. The root filesystem can be read-only: hubwatch writes only where its
# configuration says, which in the shipped configurations is under /var/lib/hubwatch.
#
# scripts/check-image.sh repeats these build steps outside a container (no engine runs on
# the build machines) and runs the result as this user in a read-only root with only
# /var/lib/hubwatch and /tmp writable.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc g++ make perl pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The command scripts/check-image.sh repeats.
RUN cargo build --release --locked --bin hubwatch \
 && install -D -s -m 0755 target/release/hubwatch /out/usr/local/bin/hubwatch \
 && install -d -m 0755 /out/etc/hubwatch \
 && install -m 0644 deploy/config/*.toml /out/etc/hubwatch/ \
 && install -d -m 0750 /out/var/lib/hubwatch

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="hubwatch" \
      org.opencontainers.image.description="Azure Monitor exports on Event Hubs -> Log Analytics rows -> continuous KQL -> Prometheus metrics and SIEM records" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/hubwatch/hubwatch" \
      org.opencontainers.image.documentation="https://github.com/hubwatch/hubwatch/blob/main/README.md" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"
COPY --from=build /out/usr/local/bin/hubwatch /usr/local/bin/hubwatch
COPY --from=build /out/etc/hubwatch/ /etc/hubwatch/
COPY --from=build --chown=65532:65532 /out/var/lib/hubwatch/ /var/lib/hubwatch/
USER 65532:65532
WORKDIR /var/lib/hubwatch
VOLUME ["/var/lib/hubwatch"]
EXPOSE 9393
ENV HUBWATCH_STATE_DIR=/var/lib/hubwatch
ENTRYPOINT ["/usr/local/bin/hubwatch"]
CMD ["run", "--config", "/etc/hubwatch/hubwatch.toml"]
