# honeyguide container image: build with the Rust toolchain, run on a small Debian with only the
# binary, the shipped configuration and CA certificates, as an unprivileged user.
#
#   docker build -t honeyguide .
#   docker run --rm -p 9898:9898 honeyguide

FROM rust:1.95-bookworm AS build
WORKDIR /src
# The whole tree (minus .dockerignore): Cargo.toml declares the test and bench targets, and
# cargo refuses a manifest whose declared targets are missing.
COPY . .
RUN cargo build --release --locked && strip target/release/honeyguide

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/honeyguide --create-home honeyguide
COPY --from=build /src/target/release/honeyguide /usr/local/bin/honeyguide
COPY probes.toml /etc/honeyguide/probes.toml
COPY alerts /etc/honeyguide/alerts
USER 10001:10001
WORKDIR /var/lib/honeyguide
# The store (alert state, the notification outbox, silences, probe history) lives here: keep it
# on a volume so a new container neither loses nor repeats notifications.
VOLUME ["/var/lib/honeyguide"]
EXPOSE 9898
ENTRYPOINT ["/usr/local/bin/honeyguide"]
CMD ["run", "--config", "/etc/honeyguide/probes.toml", "--alerts", "/etc/honeyguide/alerts"]
