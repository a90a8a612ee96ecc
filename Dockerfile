# huiying in a container: one image, every service (`huiying ingest`, `huiying store`, ...).
# Templates, the web page and the built-in nats.conf are embedded in the binary.
# Not built in huiying's CI (its machines run no container engine); see docs/cluster.md.
FROM rust:1.89-bookworm AS build
# cmake and nasm build the bundled libjpeg-turbo (scripts/install-build-deps.sh).
RUN apt-get update && apt-get install -y --no-install-recommends cmake nasm && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /var/lib/huiying huiying \
 && install -d -o huiying -g huiying /var/lib/huiying/images
COPY --from=build /src/target/release/huiying /src/target/release/huiying-ingest \
     /src/target/release/huiying-generator /src/target/release/huiying-store \
     /src/target/release/huiying-mailer /src/target/release/huiying-webhook /usr/local/bin/
USER huiying
WORKDIR /var/lib/huiying
# ingest's HTTP port (set SERVER_HOST=0.0.0.0 to listen beyond the container, with
# SERVER_API_KEYS; without keys ingest refuses unless SERVER_ALLOW_OPEN=true).
EXPOSE 8000
ENTRYPOINT ["huiying"]
CMD ["ingest"]
