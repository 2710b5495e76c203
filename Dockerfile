# kprox container image: built with the project's own release script (the same steps a test
# runs outside Docker), run on a minimal distroless base as UID 65532 with a read-only root
# filesystem in mind (kprox writes nothing to disk).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN scripts/build-release > /tmp/binary-path && cp "$(cat /tmp/binary-path)" /kprox

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /kprox /usr/local/bin/kprox
USER 65532:65532
EXPOSE 8001 8002
ENTRYPOINT ["kprox"]
