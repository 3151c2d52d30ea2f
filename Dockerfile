# One image with every binary: smsd, the six services, the console, carrier-sim and smsctl.
# A service is chosen by the container's command (see docker-compose.yml and deploy/).
#
#   docker build -t sms-platform .
#
# The build needs no database (the sqlx query cache in .sqlx/ is committed) and no protoc
# (it is vendored).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
ENV SQLX_OFFLINE=true CARGO_TERM_COLOR=never
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins \
 && mkdir -p /out \
 && cd target/release \
 && cp smsd smsctl carrier-sim sms-console sms-composer sms-dispatcher sms-inbound sms-optout sms-scheduler sms-feed /out/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /usr/local/bin/
# Logs as JSON lines. Every address defaults to 127.0.0.1: a container sets SMS_*_ADDR to 0.0.0.0.
ENV SMS_LOG_FORMAT=json
USER 65532:65532
CMD ["smsd"]
