# Builds the outboxd binary (used by docker-compose.yml).
FROM rust:1.88-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential pkg-config libssl-dev zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY crates crates
COPY tests tests
RUN cargo build --release --locked -p outboxd

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 outboxd
COPY --from=build /src/target/release/outboxd /usr/local/bin/outboxd
COPY config /etc/outboxd
USER outboxd
EXPOSE 9464
ENTRYPOINT ["outboxd"]
CMD ["run", "--config", "/etc/outboxd/outboxd.toml"]
