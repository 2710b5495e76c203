# kprox container image: build with the Rust toolchain, run on a minimal non-root base.
# Built the same way as `cargo build --release --locked -p kprox`.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p kprox

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/kprox /usr/local/bin/kprox
USER 65532:65532
EXPOSE 8001
ENTRYPOINT ["kprox"]
