# syntax=docker/dockerfile:1.7
# One image runs every chainwatch binary: `chainwatch operator | ingester | worker | ...`.
# The operator passes the image it runs to the ingesters and workers it creates.

FROM rust:1.95-bookworm AS build
# rdkafka builds librdkafka with cmake, and with OpenSSL (TLS, SASL SCRAM)
RUN apt-get update && apt-get install -y --no-install-recommends cmake libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# `chainwatch --version` names the commit (.git is not in the build context)
ARG CHAINWATCH_COMMIT=unknown
ENV CHAINWATCH_COMMIT=${CHAINWATCH_COMMIT}
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p chainwatch-cli \
 && cp target/release/chainwatch /usr/local/bin/chainwatch

FROM debian:bookworm-slim
# Script triggers and trigger conditions run bash, python3 or node; prlimit and setsid
# (util-linux) bound and reap them; tini forwards SIGTERM and reaps orphans.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 bash python3 nodejs util-linux tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 chainwatch && useradd --uid 65532 --gid 65532 --no-create-home chainwatch
COPY --from=build /usr/local/bin/chainwatch /usr/local/bin/chainwatch
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/chainwatch"]
CMD ["--help"]
